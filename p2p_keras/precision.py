"""Mixed precision: which dtype policy to train in, and building networks under one.

Under a mixed policy the convolutions compute in 16 bits while the weights stay float32, so the
optimizer still adds tiny updates to full-precision weights. "mixed_float16" is the GPU's fast
type and needs loss scaling (`Pix2Pix.compile` adds it); "mixed_bfloat16" keeps float32's range
and is fast on CPUs with native bfloat16 instructions (AVX512-BF16 or AMX) and on TPUs. On a CPU
without them it is much slower than float32, which is why "auto" checks.
"""

import contextlib
import pathlib
import platform

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_info():
    """The CPU's model name and its feature flags, from /proc/cpuinfo (empty off Linux).

    Returns:
        ``(model, flags)``: a string and a set of strings such as "avx512_bf16".
    """
    model, flags = None, set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and model is None:
                model = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    return model or platform.processor() or platform.machine(), flags


def resolve_precision(precision="auto"):
    """The dtype policy name for `precision`, with "auto" decided for this machine.

    "auto" is "mixed_float16" when TensorFlow sees a GPU, "mixed_bfloat16" on a CPU with
    AVX512-BF16 or AMX, else "float32". None is Keras' global dtype policy.

    Args:
        precision: one of `PRECISIONS`, or None.

    Returns:
        A dtype policy name: "float32", "mixed_bfloat16" or "mixed_float16" (or, for None,
        whatever the global policy is).

    Raises:
        ValueError: `precision` is not one of `PRECISIONS` or None.
    """
    if precision is None:
        return keras.config.dtype_policy().name
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    _, flags = cpu_info()
    if any(flag in flags for flag in BFLOAT16_CPU_FLAGS):
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy inside the ``with`` block, and restores it after.

    Layers take the global policy when they are created, so networks built inside the block
    keep it; nothing else in the process is affected.

    Args:
        name: a dtype policy name, e.g. "mixed_bfloat16".

    Example:
    >>> with dtype_policy("mixed_bfloat16"):
    ...     generator = build_unet_generator()
    >>> generator.get_layer("down2_conv").compute_dtype
    'bfloat16'
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def as_float32(model):
    """`model` computing in float32: the model itself if it already does, else a copy.

    A network trained under a mixed policy is saved with it, and computes in 16 bits wherever
    it is loaded, slowly on a CPU without native bfloat16 or float16 arithmetic. This rebuilds
    it layer by layer in float32 and copies the weights (float32 under every policy).

    Args:
        model: a functional or sequential `keras.Model`.

    Returns:
        A `keras.Model` whose layers all compute in float32.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def rebuild(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())
    return copy
