"""The precision the networks compute in, and the hardware probes that choose it."""

import contextlib
import importlib
import pathlib
import platform

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


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
    if backend == "jax":
        return importlib.import_module("jax").default_backend() == "gpu"
    if backend == "torch":
        return importlib.import_module("torch").cuda.is_available()
    return bool(importlib.import_module("tensorflow").config.list_physical_devices("GPU"))


def resolve_precision(precision="auto"):
    """The dtype policy for `precision` (one of `PRECISIONS`; None: the global policy).

    Mixed policies compute in 16 bits with float32 weights. "auto" is "mixed_float16" on a GPU,
    "mixed_bfloat16" on a CPU with AVX512-BF16 or AMX (slow on others), else "float32".
    """
    if precision is None:
        return keras.config.dtype_policy().name
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if has_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if {"avx512_bf16", "amx_bf16"} & cpu_info()[1] else "float32"
