"""The paper's optimizer, Adam(2e-4, beta_1=0.5), and the precision the networks compute in."""

import contextlib
import importlib
import pathlib
import platform

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
ADAM_INTERNALS = ("_get_variable_index", "_momentums", "_velocities")


@keras.saving.register_keras_serializable(package="p2p_keras")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose dense update is TensorFlow's fused `ResourceApplyAdam`.

    One kernel does Adam's arithmetic in one pass over memory instead of about ten; variables,
    config and checkpoints are Adam's. AMSGrad and sparse gradients take Keras' update. It reads
    Adam's private slots (`ADAM_INTERNALS`) and raises a RuntimeError when a Keras release
    renames them; a test compares it with `keras.optimizers.Adam` step by step.
    """

    def __init__(self, *args, **kwargs):
        if keras.config.backend() != "tensorflow":
            raise RuntimeError("FusedAdam needs the TensorFlow backend; use keras.optimizers.Adam")
        super().__init__(*args, **kwargs)
        _check_internals(self, ADAM_INTERNALS[:1])

    def build(self, var_list):
        super().build(var_list)
        _check_internals(self, ADAM_INTERNALS)

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


def _check_internals(obj, names):
    if missing := [name for name in names if not hasattr(obj, name)]:
        raise RuntimeError(
            f"FusedAdam relies on keras.optimizers.Adam's private {missing}, which Keras "
            f"{keras.__version__} no longer has; use keras.optimizers.Adam instead"
        )


def default_optimizer(learning_rate=2e-4):
    """The paper's Adam(2e-4, beta_1=0.5): a `FusedAdam` on TensorFlow, else Keras' Adam."""
    fused = keras.config.backend() == "tensorflow"
    return (FusedAdam if fused else keras.optimizers.Adam)(learning_rate, beta_1=0.5)


def cpu_info():
    """``(model name, set of feature flags)`` of the CPU, from /proc/cpuinfo on Linux."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields.get("model name") or platform.machine(), set(fields.get("flags", "").split())


def has_gpu():
    """Whether the Keras backend sees a GPU."""
    backend = keras.config.backend()
    if backend in ("jax", "torch"):
        module = importlib.import_module(backend)
        return module.default_backend() == "gpu" if backend == "jax" else module.cuda.is_available()
    return bool(importlib.import_module("tensorflow").config.list_physical_devices("GPU"))


def resolve_precision(precision="auto"):
    """The dtype policy for `precision` (one of `PRECISIONS`; None: the global policy).

    Mixed policies compute in 16 bits with float32 weights. "auto" is "mixed_float16" on a GPU,
    "mixed_bfloat16" on a CPU with AVX512-BF16 or AMX (slow on others), else "float32"."""
    if precision is None:
        return keras.config.dtype_policy().name
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if has_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & cpu_info()[1] else "float32"


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy inside the ``with`` block (for the layers built there)."""
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(name)
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(model):
    """`model` if it computes in float32, else a float32 copy with the same weights."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = keras.models.clone_model(
        model,
        clone_function=lambda x: x.__class__.from_config({**x.get_config(), "dtype": "float32"}),
    )
    copy.set_weights(model.get_weights())
    return copy
