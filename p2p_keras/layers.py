"""Building blocks shared by the generator and the discriminator.

The paper (Isola et al., 2017, §6.1) names its blocks ``Ck`` (Convolution-Norm-ReLU with k filters)
and ``CDk`` (the same with 50% dropout). Every convolution is 4x4, and weights start from
N(0, 0.02) as in the official code.
"""

import keras
from keras import layers

NORMS = ("batch", "sync_batch", "instance", None)


def conv_init():
    """The paper's weight initialiser: N(0, 0.02)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def check_norm(norm):
    """Raises a ValueError unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def normalize(x, norm, prefix):
    """Applies the normalisation layer for `norm` to `x` (nothing when `norm` is None).

    "batch" is BatchNormalization with gamma ~ N(1, 0.02) as in the official code. "sync_batch"
    is the same layer computing its statistics over the global batch of all replicas of a
    `tf.distribute` strategy (``synchronized=True``; PyTorch's ``SyncBatchNorm``): use it to
    train on several GPUs with batch norm and get what one device with the whole batch would
    compute. It has the same weights and layer names as "batch", so checkpoints move between
    the two. "instance" is GroupNormalization with one group per channel and no affine
    parameters, which is exactly PyTorch's `InstanceNorm2d(affine=False)` used by the official
    code; unlike batch norm it behaves the same at any batch size and on any number of devices.

    Args:
        x: input tensor.
        norm: "batch", "sync_batch", "instance" or None.
        prefix: the block's name; the layer is named ``{prefix}_batchnorm`` or
            ``{prefix}_instancenorm``.

    Returns:
        The normalised tensor, or `x` when `norm` is None.
    """
    check_norm(norm)
    if norm in ("batch", "sync_batch"):
        return layers.BatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
            synchronized=norm == "sync_batch",
            name=f"{prefix}_batchnorm",
        )(x)
    if norm == "instance":
        return layers.GroupNormalization(
            groups=-1, epsilon=1e-5, center=False, scale=False, name=f"{prefix}_instancenorm"
        )(x)
    return x


def conv_block(
    x, filters, *, name, use_bias, strides=2, norm="batch", activation="leaky_relu", padding="same"
):
    """Conv2D(4x4) -> optional norm -> activation: the encoder and discriminator ``Ck`` block.

    Args:
        x: input tensor.
        filters: number of output channels ``k``.
        name: prefix for the block's layer names.
        strides: 2 to halve the resolution, 1 to keep it.
        use_bias: whether the convolution has a bias. Networks decide this once for all their
            blocks, as the official code does: no bias when the network is normalised (the
            norm's shift replaces it), even in the blocks that skip the norm.
        norm: "batch", "sync_batch", "instance" or None for this block.
        activation: "leaky_relu" (slope 0.2, the paper's encoder) or None.
        padding: "same", or "valid" after an explicit ZeroPadding2D.

    Returns:
        The block's output tensor.
    """
    x = layers.Conv2D(
        filters,
        4,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=conv_init(),
        name=f"{name}_conv",
    )(x)
    x = normalize(x, norm, name)
    if activation == "leaky_relu":
        x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu")(x)
    return x


def upsample_block(x, filters, *, name, use_bias, norm="batch", dropout=0.0):
    """Conv2DTranspose(4x4, stride 2) -> optional norm -> optional dropout -> ReLU.

    The decoder's ``Ck`` block, or ``CDk`` with ``dropout=0.5``.

    Args:
        x: input tensor.
        filters: number of output channels ``k``.
        name: prefix for the block's layer names.
        use_bias: whether the transposed convolution has a bias (see `conv_block`).
        norm: "batch", "sync_batch", "instance" or None.
        dropout: dropout rate; 0 for none.

    Returns:
        The block's output tensor, at twice the input resolution.
    """
    x = layers.Conv2DTranspose(
        filters,
        4,
        strides=2,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=conv_init(),
        name=f"{name}_convT",
    )(x)
    x = normalize(x, norm, name)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.ReLU(name=f"{name}_relu")(x)
