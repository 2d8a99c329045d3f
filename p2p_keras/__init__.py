"""p2p_keras: Pix2Pix (Isola et al., CVPR 2017) in Keras 3, as a course and a library.

Names are imported on first use, so ``python -m p2p_keras --help`` answers before TensorFlow
starts. The lesson lives in the top-level modules; the jobs built on it in `p2p_keras.jobs`.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

__version__ = "0.1.0"

# The public API, by the module that defines it. Everything else is reached through its module
# (`p2p_keras.course`, `p2p_keras.jobs.datasets`, ...).
_API = {
    "data": ("load_paired", "jitter"),
    "generator": ("build_unet_generator",),
    "discriminator": ("build_patchgan_discriminator",),
    "model": ("Pix2Pix",),
    "callbacks": ("SampleGrid", "LinearDecay", "StepBackup"),
    "inference": ("generate", "translate", "load_generator", "export"),
    "segmenter": ("fcn_score",),
    "jobs.train": ("build_pix2pix", "train"),
    "jobs.options": ("TrainOptions",),
    "jobs.evaluate": ("evaluate",),
    "jobs.convert": ("convert_official",),
}
_EXPORTS = {name: f"p2p_keras.{module}" for module, names in _API.items() for name in names}
_MODULES = ("losses", "metrics")

__all__ = sorted([*_EXPORTS, "project_dir"]) + list(_MODULES)


def project_dir():
    """The folder that holds ``data/`` and ``runs/``: ``P2P_PROJECT_DIR``, else the repository
    root in a clone (a ``pyproject.toml`` beside the package), else the working directory."""
    if os.environ.get("P2P_PROJECT_DIR"):
        return Path(os.environ["P2P_PROJECT_DIR"])
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def _register():
    """Registers the package's saved classes (`Pix2Pix`, `FusedAdam`, `BatchNormalization`)."""
    for module in ("layers", "model"):
        importlib.import_module(f"p2p_keras.{module}")


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Runs `_register` right after Keras is imported, so `keras.saving.load_model` finds the
    package's classes without importing Keras (and TensorFlow) here."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _register()

            spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _AfterKeras())


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"p2p_keras.{name}")
    else:
        raise AttributeError(f"module 'p2p_keras' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
