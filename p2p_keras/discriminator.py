"""The pix2pix discriminator: a PatchGAN that scores overlapping patches as real or fake.

Paper, §3.2.2 and §6.1.2: the 70x70 discriminator is C64-C128-C256-C512 followed by a
convolution to one channel; each output logit sees a 70x70 patch of the input. Fewer or more
stride-2 layers give the 16x16 and 286x286 ("ImageGAN") variants; 1x1 convolutions give the
1x1 "PixelGAN".
"""

import keras
from keras import layers

from p2p_keras.layers import conv_block, conv_init, normalize, uses_bias

# patch size -> number of stride-2 layers, as in the official NLayerDiscriminator(n_layers).
STRIDED_LAYERS = {16: 1, 34: 2, 70: 3, 142: 4, 286: 5}
PATCH_SIZES = (1, *STRIDED_LAYERS)


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
    concatenated on channels (the paper's cGAN); an unconditional one sees the target alone
    (the paper's "GAN" ablation). Biases as in the official `NLayerDiscriminator`: the first
    and last convolutions have one, the normalised ones not (the TF tutorial's first has none).

    Args:
        input_shape: (height, width, channels) of the generator's input image.
        target_channels: channels of the target image.
        patch_size: receptive field of one logit: 70 (paper), 1 (PixelGAN), 16, 34, 142 or 286.
        conditional: whether the input image is shown to the discriminator.
        filters: filters of the first layer (the paper's ndf, 64), doubled per layer up to 8x.
        norm: "batch" (paper), "sync_batch", "instance" or None.
        name: model name; default "patchgan_{patch_size}".

    Returns:
        A `keras.Model` from ``[input_image, target_image]`` (or ``target_image``) to float32
        logits of shape (batch, rows, cols, 1).

    Example:
    >>> discriminator = build_patchgan_discriminator((256, 256, 3))
    >>> discriminator.count_params(), discriminator.output_shape
    (2770497, (None, 30, 30, 1))
    """
    use_bias = uses_bias(norm)
    if patch_size not in PATCH_SIZES:
        raise ValueError(f"patch_size must be one of {PATCH_SIZES}, got {patch_size!r}")
    target = layers.Input((*input_shape[:2], target_channels), name="target_image")
    inputs = [layers.Input(input_shape, name="input_image"), target] if conditional else target
    x = layers.Concatenate(name="pair")(inputs) if conditional else target
    if patch_size == 1:  # the official PixelDiscriminator
        x = layers.Conv2D(filters, 1, kernel_initializer=conv_init(), name="pixel1_conv")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name="pixel1_lrelu")(x)
        x = layers.Conv2D(
            filters * 2, 1, use_bias=use_bias, kernel_initializer=conv_init(), name="pixel2_conv"
        )(x)
        x = layers.LeakyReLU(negative_slope=0.2, name="pixel2_lrelu")(normalize(x, norm, "pixel2"))
        x = layers.Conv2D(
            1, 1, use_bias=use_bias, kernel_initializer=conv_init(), name="patch_conv"
        )(x)
    else:
        strided = STRIDED_LAYERS[patch_size]
        for layer in range(strided + 1):
            # The last block keeps the resolution; like the official code (padding=1) it pads
            # by one pixel and convolves "valid", which shrinks the map by one: 32 -> 31 -> 30.
            last = layer == strided
            if last:
                x = layers.ZeroPadding2D(1, name="pad1")(x)
            x = conv_block(
                x, filters * min(2**layer, 8), name=f"block{layer + 1}",
                use_bias=use_bias or layer == 0,
                strides=1 if last else 2, norm=None if layer == 0 else norm,
                padding="valid" if last else "same",
            )  # fmt: skip
        x = layers.ZeroPadding2D(1, name="pad2")(x)
        x = layers.Conv2D(1, 4, kernel_initializer=conv_init(), name="patch_conv")(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"patchgan_{patch_size}")


def receptive_field(model):
    """Receptive field of one output unit of a chain of convolutions, measured on its layers.

    Each convolution or pooling grows the field by ``(kernel - 1) * jump`` and multiplies the
    jump by its stride. Returns an int when square (70 for the PatchGAN), else (rows, cols).
    """
    field, jump = [1, 1], [1, 1]
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D | layers.MaxPooling2D | layers.AveragePooling2D):
            kernel = getattr(layer, "kernel_size", None) or layer.pool_size
            for axis in (0, 1):
                field[axis] += (kernel[axis] - 1) * jump[axis]
                jump[axis] *= layer.strides[axis]
    return field[0] if field[0] == field[1] else tuple(field)
