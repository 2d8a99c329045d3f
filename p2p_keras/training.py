"""The main job: train pix2pix on a folder or a named dataset, with every output a run needs.

`train` is what ``python -m p2p_keras train`` runs. It writes, under ``out``:
``generator.keras`` (after every epoch, atomically), ``pix2pix.keras`` (generator,
discriminator and both optimizers, to continue or fine-tune), ``samples/epoch_NNN.png``,
``history.csv``, TensorBoard ``logs/``, ``config.json``, and ``backup/`` for ``resume=True``.
"""

import json
import pathlib

import keras

from p2p_keras import callbacks as p2p_callbacks
from p2p_keras.data import load_paired
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import save_atomic
from p2p_keras.model import Pix2Pix

SYNTHETIC_DIR = "synthetic_facades"


class RunExistsError(FileExistsError):
    """The output folder holds a run that `resume` was not asked to continue."""


def resolve_data(data=None, data_dir="data"):
    """Finds the folder to train on and its natural direction.

    Args:
        data: None for the embedded synthetic facades (generated on first use under
            ``data_dir``), a dataset name such as "facades" (downloaded on first use), or a
            folder in the aligned or two-folder layout.
        data_dir: where datasets are generated or downloaded.

    Returns:
        ``(root, direction)``; direction is None for a plain folder (the caller picks).
    """
    if data is None:
        from p2p_keras.synthetic import make_synthetic_facades

        return make_synthetic_facades(pathlib.Path(data_dir) / SYNTHETIC_DIR), "BtoA"
    from p2p_keras.datasets import resolve_dataset

    return resolve_dataset(data, data_dir=data_dir)


def default_load_size(image_size):
    """The jitter's resize before the random crop: 286 for 256, the same ratio otherwise."""
    if isinstance(image_size, int):
        return round(image_size * 286 / 256)
    return tuple(round(side * 286 / 256) for side in image_size)


def build_pix2pix(
    image_size=256,
    channels=3,
    *,
    norm="batch",
    skip_connections=True,
    patch_size=70,
    conditional=True,
    dropout=0.5,
):
    """Builds an uncompiled `Pix2Pix` with the paper's networks (or an ablation of them).

    Args:
        image_size: int or (height, width).
        channels: image channels (input and output).
        norm: "batch", "instance" or None, for both networks.
        skip_connections: U-Net (True) or the encoder-decoder ablation.
        patch_size: the discriminator's receptive field: 1, 16, 70 or 286.
        conditional: whether the discriminator sees the input image.
        dropout: the generator's dropout rate.

    Returns:
        A `Pix2Pix` model.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    shape = (height, width, channels)
    generator = build_unet_generator(
        shape, channels, norm=norm, skip_connections=skip_connections, dropout=dropout
    )
    discriminator = build_patchgan_discriminator(
        shape, channels, patch_size=patch_size, conditional=conditional, norm=norm
    )
    return Pix2Pix(generator, discriminator, name="pix2pix")


def check_writable(out):
    """Creates `out` and proves it can be written, before any time is spent training."""
    out = pathlib.Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"cannot write to the output folder {out}: {error}") from error
    return out


def train(
    data=None,
    out="runs/pix2pix",
    *,
    epochs=200,
    decay_epochs=None,
    steps_per_epoch=None,
    validation_steps=None,
    batch_size=1,
    direction=None,
    image_size=256,
    load_size=None,
    gan_loss="vanilla",
    l1_weight=100.0,
    gan_weight=1.0,
    learning_rate=2e-4,
    norm="batch",
    skip_connections=True,
    patch_size=70,
    conditional=True,
    seed=None,
    resume=False,
    data_dir="data",
    samples=4,
    jit_compile="auto",
    callbacks=(),
    verbose="auto",
):
    """Trains pix2pix and writes the run's outputs under `out`.

    Args:
        data: None (embedded synthetic facades), a dataset name, or a folder; see
            `resolve_data`.
        out: output folder of the run.
        epochs: total epochs (the paper: 200 for facades).
        decay_epochs: of those, the final epochs of linear LR decay to 0; default half of
            `epochs` (the official 100 + 100).
        steps_per_epoch: batches per epoch; default one pass over the training split.
        validation_steps: validation batches per epoch; default the whole split.
        batch_size: images per step (the paper: 1).
        direction: "AtoB" or "BtoA"; default the dataset's natural direction, else "AtoB".
        image_size: crop size, int or (height, width).
        load_size: resize before the random crop; default 286/256 of `image_size`.
        gan_loss: "vanilla" or "lsgan".
        l1_weight: lambda (100).
        gan_weight: weight of the adversarial loss (0 = L1 only).
        learning_rate: Adam's initial rate for both networks (2e-4).
        norm: "batch", "instance" or None.
        skip_connections: U-Net (True) or encoder-decoder.
        patch_size: discriminator receptive field (1, 16, 70, 286).
        conditional: conditional (cGAN) or unconditional (GAN) discriminator.
        seed: seed for weights, data order and jitter.
        resume: continue the run in `out` from its last backup.
        data_dir: where datasets are generated or downloaded.
        samples: number of validation pairs in the sample grids.
        jit_compile: passed to `compile` ("auto": XLA on GPU, not on CPU, where it is slower).
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity ("auto" shows the progress bar).

    Returns:
        ``(model, history)``.

    Raises:
        RunExistsError: `out` holds a backup and `resume` is False.
    """
    out = check_writable(out)
    backup_dir = out / "backup"
    if backup_dir.exists() and not resume:
        raise RunExistsError(
            f"{out} already holds a run (its backup is {backup_dir}); pass --resume to continue "
            "it, or choose another --out"
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    root, natural_direction = resolve_data(data, data_dir)
    direction = direction or natural_direction or "AtoB"
    load_size = load_size or default_load_size(image_size)
    common = {"direction": direction, "image_size": image_size, "batch_size": batch_size}
    train_ds = load_paired(root, "train", load_size=load_size, seed=seed, **common)
    if steps_per_epoch:
        train_ds = train_ds.repeat()
    val_ds = _validation_split(root, common)

    model = build_pix2pix(
        image_size,
        norm=norm,
        skip_connections=skip_connections,
        patch_size=patch_size,
        conditional=conditional,
    )
    model.compile(
        keras.optimizers.Adam(learning_rate, beta_1=0.5),
        keras.optimizers.Adam(learning_rate, beta_1=0.5),
        gan_loss=gan_loss,
        l1_weight=l1_weight,
        gan_weight=gan_weight,
        jit_compile=jit_compile,
    )
    decay_epochs = epochs // 2 if decay_epochs is None else decay_epochs
    sample_source = val_ds if val_ds is not None else train_ds
    inputs, targets = next(iter(sample_source.unbatch().batch(samples).take(1)))
    run_callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
        p2p_callbacks.LinearDecay(epochs - decay_epochs, decay_epochs, learning_rate),
        p2p_callbacks.SampleGrid(inputs, targets, out / "samples", log_dir=out / "logs"),
        p2p_callbacks.GeneratorCheckpoint(out / "generator.keras"),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
        *callbacks,
    ]
    config = {
        "data": str(root),
        "direction": direction,
        "image_size": image_size,
        "load_size": load_size,
        "epochs": epochs,
        "decay_epochs": decay_epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "gan_loss": gan_loss,
        "l1_weight": l1_weight,
        "gan_weight": gan_weight,
        "learning_rate": learning_rate,
        "norm": norm,
        "skip_connections": skip_connections,
        "patch_size": patch_size,
        "conditional": conditional,
        "seed": seed,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_steps=validation_steps,
        callbacks=run_callbacks,
        verbose=verbose,
    )
    save_atomic(model.generator, out / "generator.keras")
    save_atomic(model, out / "pix2pix.keras")
    return model, history


def _validation_split(root, common):
    """The "val" split, else "test", evaluated without jitter; None when there is neither."""
    for split in ("val", "test"):
        try:
            return load_paired(root, split, training=False, **common)
        except FileNotFoundError:
            continue
    return None
