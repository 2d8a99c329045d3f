"""The pix2pix generator: a U-Net (Ronneberger et al., 2015) of 4x4 stride-2 convolutions.

Paper, §6.1.1: encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder
CD512-CD512-CD512-C512-C256-C128-C64 (the paper counts the decoder channels after the skip
concatenation: CD512-CD1024-CD1024-C1024-...), then a convolution to the output channels and tanh.
"""

import math

import keras
from keras import layers

from p2p_keras.layers import check_norm, conv_block, conv_init, upsample_block


def unet_depth(height, width):
    """Number of stride-2 downsamplings for an image: enough to reach 1 pixel on the short side.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        The depth: 8 for 256, 7 for 128, 9 for 512.

    Raises:
        ValueError: if a side does not divide by ``2**depth``; the message names the nearest
            size that does.
    """
    depth = int(math.floor(math.log2(min(height, width))))
    unit = 2**depth
    if depth < 2 or height % unit or width % unit:
        nearest_height, nearest_width = _nearest_valid_size(height, width)
        raise ValueError(
            f"A U-Net needs image sides that divide by 2**depth, where the depth is set by the "
            f"short side; {height}x{width} does not (depth {depth}, unit {unit}). "
            f"The nearest valid size is {nearest_height}x{nearest_width}."
        )
    return depth


def _nearest_valid_size(height, width):
    """The valid size closest to (height, width): a power-of-two short side (at least 4) and a
    long side that is a multiple of it."""
    short, long = sorted((height, width))
    low = 2 ** max(2, int(math.floor(math.log2(short))))
    unit = low if short - low <= 2 * low - short else 2 * low
    long = max(unit, round(long / unit) * unit)
    return (unit, long) if height <= width else (long, unit)


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

    The encoder halves the resolution until the short side is 1 pixel (8 levels at 256x256). The
    first encoder layer and the innermost 1x1 layer have no normalisation, as in the official
    code: with batch norm at batch size 1, a normalised 1x1 map is constant, so the TF tutorial's
    bottleneck BatchNorm erases the bottleneck. Encoder activations are LeakyReLU(0.2), decoder
    activations ReLU, the output tanh in float32 (so losses stay float32 under mixed precision).
    Dropout (the generator's only noise) sits on the first ``depth - 5`` decoder blocks: three at
    256x256, as in the paper's CD512 blocks.

    Args:
        input_shape: (height, width, channels). Both sides must divide by ``2**depth``.
        output_channels: channels of the generated image.
        filters: filters of the first encoder layer (the paper's ngf, 64); they double per level.
        max_filters: cap on the filters per layer (512).
        dropout: dropout rate of the decoder's first blocks; 0 disables them.
        norm: "batch" (paper), "sync_batch" (batch norm over all replicas), "instance",
            or None.
        skip_connections: False gives the paper's encoder-decoder ablation (no U-Net skips).
        name: model name; defaults to "unet_generator" or "encoder_decoder_generator".

    Returns:
        A `keras.Model` mapping images in [-1, 1] to images in [-1, 1].

    Example:
    >>> generator = build_unet_generator((256, 256, 3))
    >>> generator.count_params()
    54423811
    """
    check_norm(norm)
    height, width, _ = input_shape
    depth = unet_depth(height, width)
    use_bias = norm is None
    level_filters = [min(filters * 2**level, max_filters) for level in range(depth)]

    inputs = layers.Input(shape=input_shape, name="input_image")
    x = inputs
    skips = []
    for level, level_filter in enumerate(level_filters):
        outermost_or_innermost = level in (0, depth - 1)
        x = conv_block(
            x,
            level_filter,
            name=f"down{level + 1}",
            use_bias=use_bias,
            norm=None if outermost_or_innermost else norm,
        )
        skips.append(x)

    n_dropout = max(depth - 5, 0) if dropout else 0
    for block, level in enumerate(reversed(range(depth - 1))):
        x = upsample_block(
            x,
            level_filters[level],
            name=f"up{block + 1}",
            use_bias=use_bias,
            norm=norm,
            dropout=dropout if block < n_dropout else 0.0,
        )
        if skip_connections:
            x = layers.Concatenate(name=f"up{block + 1}_skip")([x, skips[level]])

    x = layers.Conv2DTranspose(
        output_channels,
        4,
        strides=2,
        padding="same",
        kernel_initializer=conv_init(),
        name="output_convT",
    )(x)
    outputs = layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
    default_name = "unet_generator" if skip_connections else "encoder_decoder_generator"
    return keras.Model(inputs, outputs, name=name or default_name)
