"""The pix2pix generator: a U-Net (Ronneberger et al., 2015) of 4x4 stride-2 convolutions.

Paper, §6.1.1: encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder
CD512-CD512-CD512-C512-C256-C128-C64 (the paper counts decoder channels after the skip
concatenation: CD512-CD1024-CD1024-C1024-...), then a convolution to the output channels and tanh.
"""

import math

import keras
from keras import layers

from p2p_keras.layers import conv_block, conv_init, upsample_block, uses_bias


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
    max_filters=512,
    dropout=0.5,
    norm="batch",
    skip_connections=True,
    name=None,
):
    """Builds the pix2pix U-Net generator as a functional `keras.Model`.

    The encoder halves the resolution until the short side is 1 pixel. Its first and innermost
    layers have no norm, as in the official code (the TF tutorial's BatchNorm on the 1x1
    bottleneck makes it constant at batch size 1). The output is tanh, in float32.

    Where this follows the paper and the TF tutorial rather than the official PyTorch code:
    dropout sits on decoder blocks 1-3 (the official code: 2-4, after the innermost one), and
    the skips carry the encoder's LeakyReLU outputs.

    Args:
        input_shape: (height, width, channels); both sides must divide by ``2**depth``.
        output_channels: channels of the generated image.
        filters: filters of the first encoder layer (the paper's ngf, 64), doubled per level.
        max_filters: cap on the filters per layer (512).
        dropout: rate of the first ``depth - 5`` decoder blocks (3 at 256x256); 0 for none.
        norm: "batch" (paper), "sync_batch", "instance" or None.
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
    level_filters = [min(filters * 2**level, max_filters) for level in range(depth)]
    inputs = layers.Input(shape=input_shape, name="input_image")
    x, skips = inputs, []
    for level, level_filter in enumerate(level_filters):
        block_norm = None if level in (0, depth - 1) else norm
        x = conv_block(x, level_filter, name=f"down{level + 1}", use_bias=use_bias, norm=block_norm)
        skips.append(x)
    n_dropout = max(depth - 5, 0) if dropout else 0
    for block, level in enumerate(reversed(range(depth - 1))):
        rate = dropout if block < n_dropout else 0.0
        x = upsample_block(
            x, level_filters[level], name=f"up{block + 1}", use_bias=use_bias, norm=norm,
            dropout=rate,
        )  # fmt: skip
        if skip_connections:
            x = layers.Concatenate(name=f"up{block + 1}_skip")([x, skips[level]])
    x = layers.Conv2DTranspose(
        output_channels, 4, 2, "same", kernel_initializer=conv_init(), name="output_convT"
    )(x)
    outputs = layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
    default_name = "unet_generator" if skip_connections else "encoder_decoder_generator"
    return keras.Model(inputs, outputs, name=name or default_name)
