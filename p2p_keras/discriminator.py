"""The pix2pix discriminator: a PatchGAN that scores overlapping patches as real or fake.

Paper, §3.2.2 and §6.1.2: the 70x70 discriminator is C64-C128-C256-C512 followed by a
convolution to one channel; each output logit sees a 70x70 patch of the input. Fewer or more
stride-2 layers give the paper's 16x16 and 286x286 ("ImageGAN") variants, and 1x1 convolutions
give the 1x1 "PixelGAN".
"""

import keras
from keras import layers

from p2p_keras.layers import check_norm, conv_block, conv_init, normalize

# patch size -> number of stride-2 layers, as in the official NLayerDiscriminator(n_layers).
_STRIDED_LAYERS = {16: 1, 34: 2, 70: 3, 142: 4, 286: 5}
PATCH_SIZES = (1, *_STRIDED_LAYERS)


def build_patchgan_discriminator(
    input_shape=(256, 256, 3),
    target_channels=3,
    *,
    patch_size=70,
    conditional=True,
    filters=64,
    norm="batch",
    name=None,
):
    """Builds a PatchGAN discriminator as a functional `keras.Model` that outputs logits.

    A conditional discriminator sees the input image and a (real or generated) target,
    concatenated on channels, as in the paper's cGAN; an unconditional one (the paper's "GAN"
    ablation) sees the target alone.

    Args:
        input_shape: (height, width, channels) of the generator's input image.
        target_channels: channels of the target image.
        patch_size: receptive field of one output logit: 70 (paper default), 1 (PixelGAN),
            16, 286 (ImageGAN at 256x256), or 34 / 142.
        conditional: whether the input image is shown to the discriminator.
        filters: filters of the first layer (the paper's ndf, 64); doubled per layer up to 8x.
        norm: "batch" (paper), "sync_batch" (batch norm over all replicas), "instance",
            or None.
        name: model name; defaults to "patchgan_{patch_size}".

    Returns:
        A `keras.Model`. Conditional: inputs ``[input_image, target_image]``; unconditional:
        ``target_image``. Output: float32 logits of shape (batch, rows, cols, 1), 30x30 for the
        70x70 PatchGAN at 256x256.

    Example:
    >>> discriminator = build_patchgan_discriminator((256, 256, 3))
    >>> discriminator.count_params(), discriminator.output_shape
    (2770433, (None, 30, 30, 1))
    """
    check_norm(norm)
    if patch_size not in PATCH_SIZES:
        raise ValueError(f"patch_size must be one of {PATCH_SIZES}, got {patch_size!r}")
    height, width, _ = input_shape
    target = layers.Input(shape=(height, width, target_channels), name="target_image")
    if conditional:
        condition = layers.Input(shape=input_shape, name="input_image")
        inputs = [condition, target]
        x = layers.Concatenate(name="pair")([condition, target])
    else:
        inputs = target
        x = target

    use_bias = norm is None
    if patch_size == 1:
        x = _pixel_layers(x, filters, norm, use_bias)
    else:
        x = _patch_layers(x, filters, norm, use_bias, _STRIDED_LAYERS[patch_size])
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"patchgan_{patch_size}")


def _patch_layers(x, filters, norm, use_bias, strided_layers):
    """Strided 4x4 blocks, one stride-1 block, then a 4x4 convolution to one logit per patch."""
    for layer in range(strided_layers):
        x = conv_block(
            x,
            filters * min(2**layer, 8),
            name=f"block{layer + 1}",
            use_bias=use_bias,
            norm=None if layer == 0 else norm,
        )
    # The last two convolutions keep the resolution; like the official code (padding=1), they
    # pad by one pixel and convolve "valid", which shrinks the map by one: 32 -> 31 -> 30.
    x = layers.ZeroPadding2D(1, name="pad1")(x)
    x = conv_block(
        x,
        filters * min(2**strided_layers, 8),
        name=f"block{strided_layers + 1}",
        use_bias=use_bias,
        strides=1,
        norm=norm,
        padding="valid",
    )
    x = layers.ZeroPadding2D(1, name="pad2")(x)
    return layers.Conv2D(1, 4, padding="valid", kernel_initializer=conv_init(), name="patch_conv")(
        x
    )


def _pixel_layers(x, filters, norm, use_bias):
    """The 1x1 PixelGAN: per-pixel 1x1 convolutions, as the official PixelDiscriminator."""
    x = layers.Conv2D(filters, 1, kernel_initializer=conv_init(), name="pixel1_conv")(x)
    x = layers.LeakyReLU(negative_slope=0.2, name="pixel1_lrelu")(x)
    x = layers.Conv2D(
        filters * 2, 1, use_bias=use_bias, kernel_initializer=conv_init(), name="pixel2_conv"
    )(x)
    x = normalize(x, norm, "pixel2")
    x = layers.LeakyReLU(negative_slope=0.2, name="pixel2_lrelu")(x)
    return layers.Conv2D(1, 1, kernel_initializer=conv_init(), name="patch_conv")(x)


def receptive_field(model):
    """Receptive field of one output unit of a chain of convolutions, from the layers themselves.

    Walks the model's layers in order and, for every convolution or pooling layer, grows the
    field by ``(kernel - 1) * jump`` and multiplies the jump (the distance in input pixels
    between neighbouring units) by the stride. Padding shifts the field but does not widen it.

    Args:
        model: a `keras.Model` whose spatial layers form a single chain, such as a PatchGAN.

    Returns:
        The receptive field as an int when it is square, else a (rows, cols) tuple: 70 for the
        default PatchGAN, 1, 16 and 286 for the paper's other discriminators.
    """
    field, jump = [1, 1], [1, 1]
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D | layers.MaxPooling2D | layers.AveragePooling2D):
            kernel = getattr(layer, "kernel_size", None) or layer.pool_size
            for axis in (0, 1):
                field[axis] += (kernel[axis] - 1) * jump[axis]
                jump[axis] *= layer.strides[axis]
    return field[0] if field[0] == field[1] else tuple(field)
