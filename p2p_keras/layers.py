"""Building blocks of the generator and the discriminator.

The paper (Isola et al., 2017, §6.1) builds both networks from ``Ck`` blocks
(Convolution-Norm-ReLU with k filters) and ``CDk`` blocks (the same with 50% dropout). Every
convolution is 4x4, with weights drawn from N(0, 0.02) as in the official code.
"""

import keras
from keras import layers

NORMS = ("batch", "sync_batch", "instance", None)


def conv_init():
    """The paper's weight initializer: N(0, 0.02)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def check_norm(norm):
    """Raises a ValueError unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def uses_bias(norm):
    """Whether the convolutions of a network normalised with `norm` have a bias.

    As in the official code, batch norm's shift replaces the bias (in every block, even those
    without a norm), while instance norm, which has no shift, keeps it. Without any norm the
    convolutions keep their bias too.
    """
    check_norm(norm)
    return norm not in ("batch", "sync_batch")


def normalize(x, norm, prefix):
    """Applies the norm layer named by `norm` to `x` (nothing for None).

    "batch" is BatchNormalization with gamma ~ N(1, 0.02), as in the official code; "sync_batch"
    is the same layer with statistics over the global batch of a `tf.distribute` strategy (same
    weights and names, so checkpoints move between the two). "instance" is GroupNormalization
    with one group per channel and no affine parameters: PyTorch's
    `InstanceNorm2d(affine=False)`, used by the official code.
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


def conv_block(x, filters, *, name, use_bias, strides=2, norm="batch", padding="same"):
    """Conv2D(4x4) -> optional norm -> LeakyReLU(0.2): the discriminator's ``Ck`` block."""
    x = layers.Conv2D(
        filters, 4, strides, padding, use_bias=use_bias, kernel_initializer=conv_init(),
        name=f"{name}_conv",
    )(x)  # fmt: skip
    x = normalize(x, norm, name)
    return layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu")(x)
