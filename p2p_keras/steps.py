"""One Pix2Pix training step, written for each Keras backend.

The three steps do the same thing: run the generator once; update the discriminator on real
and generated pairs (its loss halved); then update the generator on its adversarial loss
against the *updated* discriminator plus lambda times L1. They differ only in how each
framework computes gradients: a `tf.GradientTape` per network on TensorFlow, `backward()` on
PyTorch, and on JAX pure functions of the variables' values, because JAX's `fit()` calls
``train_step(state, data)`` with every variable's value passed in and expects the new values
back. `Pix2Pix` inherits the class for the backend Keras runs on (`BackendSteps`).
"""

import keras
from keras import ops

from p2p_keras.losses import discriminator_loss


class TensorFlowSteps:
    """The step with one `tf.GradientTape` per network (the TensorFlow backend)."""

    def train_step(self, data):
        import tensorflow as tf

        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        # Gradients are summed over replicas, so per-replica mean losses are divided by the
        # replica count; the trackers get the unscaled values.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        d_loss = fake_logits = 0.0
        with tf.GradientTape() as tape:
            generated = self.generator(inputs, training=True)
            if self.gan_weight:
                with tape.stop_recording():
                    d_loss = self._discriminator_step(inputs, targets, generated, replicas)
                fake_logits = self.discriminate(inputs, generated, training=True)
            losses = self.generator_losses(targets, generated, fake_logits)
            scaled = self.generator_optimizer.scale_loss(losses[0] / replicas)
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply(tape.gradient(scaled, variables), variables)
        return self.update_trackers(d_loss, *losses)

    def _discriminator_step(self, inputs, targets, generated, replicas):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            real_logits = self.discriminate(inputs, targets, training=True)
            fake_logits = self.discriminate(inputs, ops.stop_gradient(generated), training=True)
            d_loss = discriminator_loss(real_logits, fake_logits, self.gan_loss)
            scaled = self.discriminator_optimizer.scale_loss(d_loss / replicas)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(scaled, variables), variables)
        return d_loss


def for_backend(backend=None):
    """The steps class for `backend` (default: the one Keras runs on)."""
    backend = backend or keras.backend.backend()
    steps = {"tensorflow": TensorFlowSteps, "jax": JaxSteps, "torch": TorchSteps}
    if backend not in steps:
        raise ValueError(f"Pix2Pix trains on {sorted(steps)}, not on the {backend!r} backend")
    return steps[backend]


class JaxSteps:
    pass


class TorchSteps:
    pass


BackendSteps = for_backend()
