"""One Pix2Pix training step per Keras backend; `Pix2Pix` inherits `BackendSteps`.

Each runs the generator once, updates the discriminator, then the generator against the
*updated* discriminator; only how gradients are computed differs.
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
        d_loss, fake_logits = 0.0, None
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

    def test_step(self, data):
        return self.test_losses(data)


class JaxSteps:
    """The stateless step of the JAX backend: pure functions of the variables' values.

    ``state`` holds the values of the trainable, non-trainable, optimizer (`GANOptimizer`) and
    metrics variables, the generator's before the discriminator's; the step returns them new.
    """

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        g_weights, d_weights = _split(trainable, self.generator.trainable_variables)
        g_state, d_state = _split(non_trainable, self.generator.non_trainable_variables)
        g_slots, d_slots = _split(optimizer_variables, self.generator_optimizer.variables)

        # The generator runs once; jax.vjp keeps what its gradient needs for the end.
        def run_generator(g_weights):
            return self.generator.stateless_call(g_weights, g_state, inputs, training=True)

        generated, generator_vjp, g_state = jax.vjp(run_generator, g_weights, has_aux=True)

        d_loss = 0.0
        if self.gan_weight:  # generated is a constant here: D's loss does not reach G

            def d_loss_fn(d_weights, d_state):
                real, d_state = self._discriminate(d_weights, d_state, inputs, targets)
                fake, d_state = self._discriminate(d_weights, d_state, inputs, generated)
                d_loss = discriminator_loss(real, fake, self.gan_loss)
                return _scaled(self.discriminator_optimizer, d_slots, d_loss), (d_loss, d_state)

            d_grad_fn = jax.value_and_grad(d_loss_fn, has_aux=True)
            (_, (d_loss, d_state)), grads = d_grad_fn(d_weights, d_state)
            d_weights, d_slots = self.discriminator_optimizer.stateless_apply(
                d_slots, grads, d_weights
            )

        def g_loss_fn(generated, d_state):  # G's loss from its output, with the updated D
            fake_logits = None
            if self.gan_weight:
                fake_logits, d_state = self._discriminate(d_weights, d_state, inputs, generated)
            losses = self.generator_losses(targets, generated, fake_logits)
            return _scaled(self.generator_optimizer, g_slots, losses[0]), (losses, d_state)

        (_, (losses, d_state)), output_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(
            generated, d_state
        )
        (grads,) = generator_vjp(output_grad)  # chain rule back through the generator
        g_weights, g_slots = self.generator_optimizer.stateless_apply(g_slots, grads, g_weights)

        logs, metrics_variables = self._stateless(
            self.update_trackers, self.metrics_variables, metrics_variables, d_loss, *losses
        )
        state = (g_weights + d_weights, g_state + d_state, g_slots + d_slots, metrics_variables)
        return logs, state

    def _discriminate(self, weights, state, inputs, images):
        images = [inputs, images] if self.conditional else images
        return self.discriminator.stateless_call(weights, state, images, training=True)

    def test_step(self, state, data):
        variables = self.trainable_variables + self.non_trainable_variables + self.metrics_variables
        logs, values = self._stateless(self.test_losses, variables, sum(state, []), data)
        return logs, _split(values, self.trainable_variables, self.non_trainable_variables)

    @staticmethod
    def _stateless(function, variables, values, *args):
        """Runs stateful `function` on `values` for `variables`; its result and the new values."""
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))) as scope:
            result = function(*args)
        return result, [scope.get_current_value(v) for v in variables]


def _split(values, *variable_lists):
    """`values` cut into pieces as long as each of `variable_lists`, and the rest."""
    pieces, start = [], 0
    for variables in variable_lists:
        pieces.append(values[start : start + len(variables)])
        start += len(variables)
    return (*pieces, values[start:])


def _scaled(optimizer, slots, loss):
    """``optimizer.scale_loss(loss)`` with its variables' values `slots` (the loss scale)."""
    with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, slots, strict=True))):
        return optimizer.scale_loss(loss)


class TorchSteps:
    """The step with ``backward()`` and an update under `torch.no_grad()` per network."""

    def train_step(self, data):
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        inputs, targets = ops.convert_to_tensor(inputs), ops.convert_to_tensor(targets)
        generated = self.generator(inputs, training=True)
        d_loss, fake_logits = 0.0, None
        if self.gan_weight:
            real_logits = self.discriminate(inputs, targets, training=True)
            fake = self.discriminate(inputs, ops.stop_gradient(generated), training=True)
            d_loss = discriminator_loss(real_logits, fake, self.gan_loss)
            self._update(self.discriminator, self.discriminator_optimizer, d_loss)
            fake_logits = self.discriminate(inputs, generated, training=True)
        losses = self.generator_losses(targets, generated, fake_logits)
        self._update(self.generator, self.generator_optimizer, losses[0])
        return self.update_trackers(d_loss, *losses)

    def _update(self, network, optimizer, loss):
        import torch

        self.zero_grad()
        optimizer.scale_loss(loss).backward()
        variables = network.trainable_weights
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in variables], variables)

    def test_step(self, data):
        return self.test_losses(data)


def for_backend():
    """The steps class of the backend Keras runs on."""
    backend = keras.backend.backend()
    steps = {"tensorflow": TensorFlowSteps, "jax": JaxSteps, "torch": TorchSteps}
    if backend not in steps:
        raise ValueError(f"Pix2Pix trains on {sorted(steps)}, not on the {backend!r} backend")
    return steps[backend]


BackendSteps = for_backend()
