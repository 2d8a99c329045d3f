"""`Pix2Pix`: the conditional GAN as a `keras.Model` that trains with plain `compile()`/`fit()`."""

import keras
from keras import ops

from p2p_keras.losses import check_gan_loss, discriminator_loss, generator_gan_loss, l1_loss
from p2p_keras.optimizers import default_optimizer
from p2p_keras.steps import BackendSteps


@keras.saving.register_keras_serializable(package="p2p_keras")
class Pix2Pix(BackendSteps, keras.Model):
    """A generator and a discriminator trained together as in Isola et al. (2017).

    Each step (`p2p_keras.steps`, per backend) updates the discriminator, then the generator
    against the updated discriminator: the paper's alternating optimisation. `fit` logs
    ``d_loss``, ``g_loss`` (total), ``g_gan`` and ``g_l1``; `evaluate` the same in inference
    mode. Calling the model runs the generator. `compile` takes one optimizer per network;
    ``model.optimizer`` is a `GANOptimizer` holding both, which is what Keras sees.

    Args:
        discriminator: returns patch logits; conditional (inputs ``[input_image,
            target_image]``) or unconditional (input ``target_image``).

    Example:
    >>> model = Pix2Pix(build_unet_generator(), build_patchgan_discriminator())
    >>> model.compile()                      # Adam(2e-4, beta_1=0.5) for both, lambda = 100
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
        # The networks are built, fit() never calls self(...): save() and BackupAndRestore need it.
        self.built = True

    def compile(
        self, generator_optimizer=None, discriminator_optimizer=None, *, gan_loss="vanilla",
        l1_weight=100.0, gan_weight=1.0, **kwargs
    ):  # fmt: skip
        """Configures training; a float16 network's optimizer gets dynamic loss scaling.

        Args:
            generator_optimizer, discriminator_optimizer: default `default_optimizer()`.
            gan_loss: "vanilla" (the paper's binary cross-entropy) or "lsgan".
            l1_weight: lambda, the L1 term's weight (100 in the paper).
            gan_weight: the adversarial term's weight; 0 trains the generator on L1 alone and
                leaves the discriminator untouched (the "L1" ablation).
            **kwargs: passed to `keras.Model.compile`, except ``optimizer``, ``loss`` and
                ``metrics`` (a ValueError).
        """
        check_gan_loss(gan_loss)
        for name in ("optimizer", "loss", "metrics"):
            if kwargs.pop(name, None) is not None:
                fix = "pass generator_optimizer= and discriminator_optimizer="
                raise ValueError(f"Pix2Pix.compile takes no {name}= ({fix}; see its docstring)")
        super().compile(**kwargs)
        self.generator_optimizer = _loss_scaled(generator_optimizer, self.generator)
        self.discriminator_optimizer = _loss_scaled(discriminator_optimizer, self.discriminator)
        self.gan_loss = gan_loss
        self.l1_weight = float(l1_weight)
        self.gan_weight = float(gan_weight)
        # Built now, not lazily on the first step: restoring a backup or a saved model needs
        # the slots to exist, and lazy creation inside a distributed step fails.
        self.optimizer = GANOptimizer(self.generator_optimizer, self.discriminator_optimizer)
        self.optimizer.build(
            self.generator.trainable_variables, self.discriminator.trainable_variables
        )

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.g_gan_tracker, self.g_l1_tracker]

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def discriminate(self, inputs, targets, training=False):
        """Patch logits for (input, target) pairs; an unconditional discriminator sees targets."""
        images = [inputs, targets] if self.conditional else targets
        return self.discriminator(images, training=training)

    def generator_losses(self, targets, generated, fake_logits):
        """``(g_loss, g_gan, g_l1)``: the generator's total, adversarial and L1 losses."""
        g_l1 = l1_loss(targets, generated)
        g_gan = generator_gan_loss(fake_logits, self.gan_loss) if self.gan_weight else 0.0
        return self.gan_weight * g_gan + self.l1_weight * g_l1, g_gan, g_l1

    def test_losses(self, data):
        """One batch's losses with both networks in inference mode (`test_step`); the logs."""
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        inputs, targets = ops.convert_to_tensor(inputs), ops.convert_to_tensor(targets)
        generated = self.generator(inputs, training=False)
        d_loss, fake_logits = 0.0, None
        if self.gan_weight:  # else D is untrained and its losses are reported as 0, as in fit
            real_logits = self.discriminate(inputs, targets)
            fake_logits = self.discriminate(inputs, generated)
            d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
        return self.update_trackers(d_loss, *self.generator_losses(targets, generated, fake_logits))

    def update_trackers(self, d_loss, g_loss, g_gan, g_l1):
        """Adds one batch's losses to the metrics; returns the logs."""
        for tracker, value in zip(self.metrics, (d_loss, g_loss, g_gan, g_l1), strict=True):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def get_config(self):
        config = super().get_config()
        for name in ("generator", "discriminator"):
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
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
        names = ("gan_loss", "l1_weight", "gan_weight", "jit_compile", "steps_per_execution")
        config = {name: getattr(self, name) for name in names}
        for name in ("generator_optimizer", "discriminator_optimizer"):
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)


class GANOptimizer(keras.optimizers.Optimizer):
    """The generator's and the discriminator's optimizers, seen by Keras as one optimizer.

    As ``model.optimizer`` it passes on what Keras does with it: ``variables`` (which the JAX
    trainer carries), the learning rate (`LearningRateScheduler`), ``iterations`` (the
    generator's steps) and finalizing (``use_ema``). It applies and saves nothing itself.
    """

    def __init__(self, generator_optimizer, discriminator_optimizer, name="gan_optimizer"):
        super().__init__(learning_rate=0.0, name=name)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.generator_variable_count = 0

    @property
    def optimizers(self):
        return [self.generator_optimizer, self.discriminator_optimizer]

    def build(self, generator_variables, discriminator_variables=()):
        self.generator_optimizer.build(generator_variables)
        self.discriminator_optimizer.build(discriminator_variables)
        self.generator_variable_count = len(generator_variables)
        self.built = True

    @property
    def variables(self):
        return self.generator_optimizer.variables + self.discriminator_optimizer.variables

    @property
    def iterations(self):
        return self.generator_optimizer.iterations

    @property
    def learning_rate(self):
        return self.generator_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        for optimizer in self.optimizers:
            optimizer.learning_rate = value

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("apply the generator's or the discriminator's optimizer")

    def finalize_variable_values(self, var_list):
        # var_list: the model's trainable variables, the generator's first
        count = self.generator_variable_count
        self.generator_optimizer.finalize_variable_values(var_list[:count])
        self.discriminator_optimizer.finalize_variable_values(var_list[count:])

    def save_own_variables(self, store):
        pass  # both optimizers are saved as the model's own attributes

    def load_own_variables(self, store):
        pass


def _loss_scaled(optimizer, network):
    """`optimizer` (None: `default_optimizer()`), with loss scaling if `network` uses float16."""
    optimizer = optimizer or default_optimizer()
    needs_scaling = any(layer.compute_dtype == "float16" for layer in network.layers)
    if needs_scaling and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
