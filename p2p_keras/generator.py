"""The pix2pix generator: a U-Net (Ronneberger et al., 2015) of 4x4 stride-2 convolutions.

The official code's `UnetGenerator`, layer for layer, so its pretrained weights load. Paper,
§6.1.1: encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder
CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 (channels after the skip concatenation).
"""

import math
import random

import keras
from keras import layers

from p2p_keras.layers import conv_init, normalize, uses_bias


def unet_depth(height, width):
    """Number of stride-2 levels: enough to bring the short side to 1 pixel (8 for 256).

    Raises:
        ValueError: a side does not divide by ``2**depth``; the message names the nearest
            valid size.
    """
    depth = int(math.log2(min(height, width)))
    unit = 2**depth
    if depth < 2 or height % unit or width % unit:
        short, long = sorted((height, width))
        low = 2 ** max(2, int(math.log2(short)))
        unit = low if short - low <= 2 * low - short else 2 * low
        long = max(unit, round(long / unit) * unit)
        nearest = (unit, long) if height <= width else (long, unit)
        raise ValueError(
            f"A U-Net needs image sides that divide by 2**depth, where the depth is set by the "
            f"short side; {height}x{width} does not (depth {depth}, unit {unit}). "
            f"The nearest valid size is {nearest[0]}x{nearest[1]}."
        )
    return depth


def build_unet_generator(
    input_shape=(256, 256, 3),
    output_channels=3,
    *,
    filters=64,
    dropout=0.5,
    norm="batch",
    skip_connections=True,
    name=None,
):
    """Builds the official pix2pix U-Net generator as a functional `keras.Model`.

    Level ``k`` is the official block ``[LeakyReLU, Conv, Norm]`` (``downk_*``; the first has
    only the convolution, the innermost no norm); going up, the decoder concatenates
    ``[skip, decoder]`` and applies ReLU before each transposed convolution (``upj_*``, ``up1``
    the innermost), so a skip reaches it as ReLU(e). Dropout sits on the ``depth - 5`` blocks
    after the innermost (4x4, 8x8 and 16x16 at 256x256). The output is tanh, in float32.

    Where the TF tutorial differs: its skips carry LeakyReLU(e), concatenated after the
    decoder's half, its bottleneck is LeakyReLU'd, and its dropout sits on the three blocks
    from 2x2 to 8x8 (the paper's "first three decoder layers").

    Args:
        input_shape: (height, width, channels); both sides must divide by ``2**depth``
            (8 levels at 256: the official unet_256; 7 at 128: unet_128).
        output_channels: channels of the generated image.
        filters: filters of the first level (the official ngf, 64), doubled per level up
            to ``8 * filters``.
        dropout: rate of the dropout blocks; 0 for none (the official ``--no_dropout``).
        norm: "batch" (official default), "sync_batch", "instance" or None.
        skip_connections: False gives the paper's encoder-decoder ablation.
        name: model name; default "unet_generator" or "encoder_decoder_generator".

    Returns:
        A `keras.Model` from images in [-1, 1] to images in [-1, 1].

    Example:
    >>> build_unet_generator((256, 256, 3)).count_params()
    54423811
    """
    use_bias = uses_bias(norm)
    depth = unet_depth(*input_shape[:2])
    level_filters = [filters * 2 ** min(level, 3) for level in range(depth)]
    inputs = layers.Input(shape=input_shape, name="input_image")
    x, skips = inputs, []
    for level, level_filter in enumerate(level_filters, start=1):
        if level > 1:
            x = layers.LeakyReLU(negative_slope=0.2, name=f"down{level}_lrelu")(x)
        x = layers.Conv2D(
            level_filter, 4, 2, "same", use_bias=use_bias, kernel_initializer=conv_init(),
            name=f"down{level}_conv",
        )(x)  # fmt: skip
        x = normalize(x, None if level in (1, depth) else norm, f"down{level}")
        skips.append(x)
    skips.pop()  # the innermost code is not a skip
    n_dropout = max(depth - 5, 0) if dropout else 0
    for block in range(1, depth):
        if block > 1 and skip_connections:
            x = layers.Concatenate(name=f"up{block}_skip")([skips.pop(), x])
        x = layers.ReLU(name=f"up{block}_relu")(x)
        x = layers.Conv2DTranspose(
            level_filters[-block - 1], 4, 2, "same", use_bias=use_bias,
            kernel_initializer=conv_init(), name=f"up{block}_convT",
        )(x)  # fmt: skip
        x = normalize(x, norm, f"up{block}")
        if 1 < block <= n_dropout + 1:
            # The seed Keras would draw, given explicitly: PyTorch otherwise draws dropout from
            # its global generator, not from the layer's seed generator that backups set.
            seed = random.randint(1, int(1e9))
            x = layers.Dropout(dropout, seed=seed, name=f"up{block}_dropout")(x)
    if skip_connections:
        x = layers.Concatenate(name="output_skip")([skips.pop(), x])
    x = layers.ReLU(name="output_relu")(x)
    x = layers.Conv2DTranspose(
        output_channels, 4, 2, "same", kernel_initializer=conv_init(), name="output_convT"
    )(x)
    outputs = layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
    default_name = "unet_generator" if skip_connections else "encoder_decoder_generator"
    return keras.Model(inputs, outputs, name=name or default_name)
