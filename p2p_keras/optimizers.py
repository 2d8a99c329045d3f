"""The paper's optimizer, Adam(2e-4, beta_1=0.5), with TensorFlow's fused update."""

import importlib

import keras

ADAM_INTERNALS = ("_get_variable_index", "_momentums", "_velocities")


@keras.saving.register_keras_serializable(package="p2p_keras")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose dense update is TensorFlow's fused `ResourceApplyAdam`.

    One kernel does Adam's arithmetic in one pass over memory instead of about ten; variables,
    config and checkpoints are Adam's. AMSGrad and sparse gradients take Keras' update. It reads
    Adam's private `ADAM_INTERNALS` and raises a RuntimeError when a Keras release renames them.
    """

    def __init__(self, *args, **kwargs):
        if keras.config.backend() != "tensorflow":
            raise RuntimeError("FusedAdam needs the TensorFlow backend; use keras.optimizers.Adam")
        super().__init__(*args, **kwargs)

    def build(self, var_list):
        super().build(var_list)
        if missing := [name for name in ADAM_INTERNALS if not hasattr(self, name)]:
            raise RuntimeError(
                f"FusedAdam relies on keras.optimizers.Adam's private {missing}, which Keras "
                f"{keras.__version__} no longer has; use keras.optimizers.Adam instead"
            )

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A model saved on TensorFlow loads on the other backends, with Keras' Adam.
        if keras.config.backend() != "tensorflow":
            return keras.optimizers.Adam.from_config(config, custom_objects)
        return super().from_config(config, custom_objects)

    def update_step(self, gradient, variable, learning_rate):
        tf = importlib.import_module("tensorflow")  # not imported on other backends
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        index, dtype = self._get_variable_index(variable), variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        slots = (variable, self._momentums[index], self._velocities[index])
        var, m, v = (x.value if isinstance(x, keras.Variable) else x for x in slots)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        )  # fmt: skip


def default_optimizer(learning_rate=2e-4):
    """The paper's Adam(2e-4, beta_1=0.5): a `FusedAdam` on TensorFlow, else Keras' Adam."""
    fused = keras.config.backend() == "tensorflow"
    return (FusedAdam if fused else keras.optimizers.Adam)(learning_rate, beta_1=0.5)
