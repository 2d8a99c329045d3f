"""p2p_keras: Pix2Pix (Isola et al., CVPR 2017) in Keras 3, as a course and a library.

Importing the package also registers the TensorFlow Datasets builder ``pix2pix``, so
``tfds.load("pix2pix/facades")`` works after ``import p2p_keras``.
"""

from p2p_keras import datasets  # noqa: F401  (registers the "pix2pix" TFDS builder)
from p2p_keras.callbacks import GeneratorCheckpoint, LinearDecay, SampleGrid, sample_grid
from p2p_keras.data import (
    BadImageError,
    check_paired,
    denormalize,
    load_paired,
    split_pair,
    write_aligned,
)
from p2p_keras.datasets import DATASETS, download
from p2p_keras.discriminator import build_patchgan_discriminator, receptive_field
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import (
    export_saved_model,
    generate,
    load_generator,
    save_atomic,
    translate_array,
    translate_files,
)
from p2p_keras.losses import (
    LOSS_ABLATIONS,
    adversarial_loss,
    discriminator_loss,
    generator_gan_loss,
    l1_loss,
)
from p2p_keras.model import Pix2Pix
from p2p_keras.optimizers import FusedAdam
from p2p_keras.synthetic import make_synthetic_facades, render_pair
from p2p_keras.training import build_pix2pix, train

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "LOSS_ABLATIONS",
    "BadImageError",
    "FusedAdam",
    "GeneratorCheckpoint",
    "LinearDecay",
    "Pix2Pix",
    "SampleGrid",
    "adversarial_loss",
    "build_patchgan_discriminator",
    "build_pix2pix",
    "build_unet_generator",
    "check_paired",
    "denormalize",
    "discriminator_loss",
    "download",
    "export_saved_model",
    "generate",
    "generator_gan_loss",
    "l1_loss",
    "load_generator",
    "load_paired",
    "make_synthetic_facades",
    "receptive_field",
    "render_pair",
    "sample_grid",
    "save_atomic",
    "split_pair",
    "train",
    "translate_array",
    "translate_files",
    "write_aligned",
]
