"""Building blocks of the generator and the discriminator.

The paper (§6.1) builds both from ``Ck`` (Convolution-Norm-ReLU, k filters) and ``CDk`` blocks
(the same with 50% dropout): 4x4 convolutions, weights drawn from N(0, 0.02).
"""

import keras
from keras import layers, ops

NORMS = ("batch", "sync_batch", "instance", None)


@keras.saving.register_keras_serializable(package="p2p_keras")
class BatchNormalization(layers.BatchNormalization):
    """Keras' `BatchNormalization` (same weights, names and inference) whose training mode is
    accurate in float32 on every backend.

    Keras normalises as ``x * inv - mean * inv`` and, on PyTorch and in TensorFlow's
    synchronized mode, takes the variance as ``E[x^2] - E[x]^2``: both cancel when a channel's
    mean is large next to its spread, as happens at the U-Net's 2x2 levels with batch 1. This
    layer centres first, takes the variance of the centred values, and corrects for the mean's
    own rounding with a second mean.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean = self._mean(x)
        centered = x - mean
        shift = self._mean(centered)  # the rounding of `mean`: small next to the spread
        variance = self._mean(ops.square(centered)) - ops.square(shift)
        for moving, value in ((self.moving_mean, mean + shift), (self.moving_variance, variance)):
            value = ops.cast(ops.reshape(value, moving.shape), moving.dtype)
            moving.assign(moving * self.momentum + value * (1.0 - self.momentum))
        scale = ops.rsqrt(variance + self.epsilon)
        scale = scale * ops.cast(self.gamma, x.dtype) if self.scale else scale
        offset = ops.cast(self.beta, x.dtype) - shift * scale if self.center else -shift * scale
        return ops.cast(centered * scale + offset, self.compute_dtype)

    def _mean(self, x):
        """The mean over the reduction axes; with ``synchronized``, over a `tf.distribute`
        strategy's global batch."""
        axes = self._reduction_axes
        if not self.synchronized:
            return ops.mean(x, axes, keepdims=True)
        import tensorflow as tf  # synchronized is TensorFlow's alone

        sums = [tf.reduce_sum(x, axes, True), tf.reduce_sum(tf.ones_like(x), axes, True)]
        context = tf.distribute.get_replica_context()
        total, count = context.all_reduce("sum", sums) if context else sums
        return total / count


def conv_init():
    """The paper's weight initializer: N(0, 0.02)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def check_norm(norm):
    """Raises a ValueError unless `norm` is one of `NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def uses_bias(norm):
    """Whether the convolutions of a network normalised with `norm` have a bias.

    As in the official code, batch norm's shift replaces it (in every block, even those without
    a norm); instance norm (which has no shift) and no norm keep it.
    """
    check_norm(norm)
    return norm not in ("batch", "sync_batch")


def normalize(x, norm, prefix):
    """Applies the norm layer named by `norm` to `x` (nothing for None).

    "batch" has gamma ~ N(1, 0.02), as the official code; "sync_batch" is the same layer (same
    weights) over a `tf.distribute` strategy's global batch. "instance" is the official code's
    `InstanceNorm2d(affine=False)`: a GroupNormalization with one group per channel.
    """
    check_norm(norm)
    if norm in ("batch", "sync_batch"):
        return BatchNormalization(
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
