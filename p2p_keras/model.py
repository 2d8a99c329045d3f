"""`Pix2Pix`: the conditional GAN as a `keras.Model` that trains with plain `compile()`/`fit()`."""

import keras
import tensorflow as tf

from p2p_keras.losses import (
    check_gan_loss,
    discriminator_loss,
    generator_gan_loss,
    l1_loss,
)
from p2p_keras.optimizers import default_optimizer


@keras.saving.register_keras_serializable(package="p2p_keras")
class Pix2Pix(keras.Model):
    """A generator and a discriminator trained together as in Isola et al. (2017).

    Each `train_step` runs the generator once, updates the discriminator on real and generated
    pairs, then updates the generator on its adversarial loss plus ``l1_weight`` times the L1
    distance to the target: the paper's alternating optimisation, with the discriminator's loss
    halved. `fit` logs ``d_loss``, ``g_loss`` (total), ``g_gan`` and ``g_l1``; `evaluate` and
    validation report the same losses with the networks in inference mode. Calling the model
    runs the generator.

    The two networks keep their own optimizers, so `compile` takes ``generator_optimizer`` and
    ``discriminator_optimizer`` instead of ``optimizer``. Both are built in `compile`, which is
    what `keras.callbacks.BackupAndRestore`, `tf.distribute` strategies and `load_model` need to
    restore or mirror their state.

    Args:
        generator: a `keras.Model` from images to images, e.g. `build_unet_generator()`.
        discriminator: a `keras.Model` returning patch logits: conditional (inputs
            ``[input_image, target_image]``) or unconditional (input ``target_image``), e.g.
            `build_patchgan_discriminator()`.
        **kwargs: passed to `keras.Model` (``name``...).

    Example:
    >>> model = Pix2Pix(build_unet_generator(), build_patchgan_discriminator())
    >>> model.compile()                      # fused Adam(2e-4, beta_1=0.5) for both, lambda = 100
    >>> history = model.fit(train_ds, validation_data=val_ds, epochs=200)
    >>> fake = model(inputs)                 # the generator, in inference mode
    """

    def __init__(self, generator, discriminator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.conditional = len(discriminator.inputs) == 2
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.g_gan_tracker = keras.metrics.Mean(name="g_gan")
        self.g_l1_tracker = keras.metrics.Mean(name="g_l1")
        # Both sub-models are built Functional models; fit() never calls self(...), so mark the
        # wrapper built here (BackupAndRestore and save() refuse unbuilt models).
        self.built = True

    def compile(
        self,
        generator_optimizer=None,
        discriminator_optimizer=None,
        *,
        gan_loss="vanilla",
        l1_weight=100.0,
        gan_weight=1.0,
        **kwargs,
    ):
        """Configures training.

        When a network computes in float16 (built under the "mixed_float16" dtype policy), its
        optimizer is wrapped in a `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling),
        unless it already is one.

        Args:
            generator_optimizer: optimizer for the generator; default `default_optimizer()`.
            discriminator_optimizer: optimizer for the discriminator; default
                `default_optimizer()`.
            gan_loss: "vanilla" (the paper's binary cross-entropy) or "lsgan".
            l1_weight: lambda, the weight of the L1 term (100 in the paper; 0 for the GAN-only
                ablations).
            gan_weight: weight of the adversarial term; 0 trains the generator on L1 alone and
                leaves the discriminator untouched (the "L1" ablation).
            **kwargs: passed to `keras.Model.compile` (``jit_compile``, ``steps_per_execution``,
                ``run_eagerly``...). ``optimizer``, ``loss`` and ``metrics`` are not used.
        """
        check_gan_loss(gan_loss)
        super().compile(optimizer=None, **kwargs)
        self.generator_optimizer = _with_loss_scaling(
            generator_optimizer or default_optimizer(), self.generator
        )
        self.discriminator_optimizer = _with_loss_scaling(
            discriminator_optimizer or default_optimizer(), self.discriminator
        )
        self.gan_loss = gan_loss
        self.l1_weight = float(l1_weight)
        self.gan_weight = float(gan_weight)
        # Built now, not lazily on the first step: restoring a backup or a saved model needs
        # the slots to exist, and lazy creation inside a distributed step fails.
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.g_gan_tracker, self.g_l1_tracker]

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def discriminate(self, inputs, targets, training=False):
        """Patch logits for (input, target) pairs; an unconditional discriminator sees targets."""
        if self.conditional:
            return self.discriminator([inputs, targets], training=training)
        return self.discriminator(targets, training=training)

    def train_step(self, data):
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        # Gradients are summed over replicas, so per-replica mean losses are divided by the
        # replica count; the trackers get the unscaled values.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            generated = self.generator(inputs, training=True)
            g_l1 = l1_loss(targets, generated)
            if self.gan_weight:
                with tape.stop_recording():
                    d_loss = self._discriminator_step(inputs, targets, generated, replicas)
                fake_logits = self.discriminate(inputs, generated, training=True)
                g_gan = generator_gan_loss(fake_logits, self.gan_loss)
            else:
                d_loss = g_gan = tf.constant(0.0)
            g_loss = self.gan_weight * g_gan + self.l1_weight * g_l1
            scaled = self.generator_optimizer.scale_loss(g_loss / replicas)
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._update_trackers(d_loss, g_loss, g_gan, g_l1)

    def _discriminator_step(self, inputs, targets, generated, replicas):
        with tf.GradientTape() as tape:
            real_logits = self.discriminate(inputs, targets, training=True)
            fake_logits = self.discriminate(inputs, tf.stop_gradient(generated), training=True)
            d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
            scaled = self.discriminator_optimizer.scale_loss(d_loss / replicas)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(scaled, variables), variables)
        return d_loss

    def test_step(self, data):
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        generated = self.generator(inputs, training=False)
        real_logits = self.discriminate(inputs, targets)
        fake_logits = self.discriminate(inputs, generated)
        d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
        g_gan = generator_gan_loss(fake_logits, self.gan_loss)
        g_l1 = l1_loss(targets, generated)
        g_loss = self.gan_weight * g_gan + self.l1_weight * g_l1
        return self._update_trackers(d_loss, g_loss, g_gan, g_l1)

    def _update_trackers(self, d_loss, g_loss, g_gan, g_l1):
        for tracker, value in zip(self.metrics, (d_loss, g_loss, g_gan, g_l1), strict=True):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        discriminator = keras.saving.deserialize_keras_object(config.pop("discriminator"))
        return cls(generator, discriminator, **config)

    def get_compile_config(self):
        # compile()'s own arguments are not recorded by keras.Model; without these two methods
        # load_model() would skip compile() and lose both optimizers' state.
        return {
            "generator_optimizer": keras.saving.serialize_keras_object(self.generator_optimizer),
            "discriminator_optimizer": keras.saving.serialize_keras_object(
                self.discriminator_optimizer
            ),
            "gan_loss": self.gan_loss,
            "l1_weight": self.l1_weight,
            "gan_weight": self.gan_weight,
        }

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)


def _with_loss_scaling(optimizer, network):
    """Wraps `optimizer` for dynamic loss scaling when `network` computes in float16."""
    needs_scaling = any(layer.compute_dtype == "float16" for layer in network.layers)
    if needs_scaling and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
