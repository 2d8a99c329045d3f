"""The main job: train pix2pix on a folder or a named dataset, with every output a run needs.

`train` is what ``python -m p2p_keras train`` runs. It writes, under ``out``:
``generator.keras`` (after every epoch, atomically), ``pix2pix.keras`` (generator,
discriminator and both optimizers, to continue or fine-tune), ``samples/epoch_NNN.png``,
``history.csv``, TensorBoard ``logs/``, ``config.json``, and ``backup/`` for ``resume=True``.
"""

import contextlib
import json
import pathlib
import warnings

import keras
import tensorflow as tf

from p2p_keras.callbacks import (
    GeneratorCheckpoint,
    LinearDecay,
    SampleGrid,
    StepBackup,
    StopOnNonFinite,
)
from p2p_keras.data import load_paired
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import atomic_path, save_atomic
from p2p_keras.model import Pix2Pix
from p2p_keras.optimizers import default_optimizer
from p2p_keras.precision import dtype_policy, resolve_precision

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
        from p2p_keras.jobs.synthetic import make_synthetic_facades

        return make_synthetic_facades(pathlib.Path(data_dir) / SYNTHETIC_DIR), "BtoA"
    from p2p_keras.jobs.datasets import resolve_dataset

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
    filters=64,
    precision=None,
):
    """Builds an uncompiled `Pix2Pix` with the paper's networks (or an ablation of them).

    Args:
        image_size: int or (height, width).
        channels: image channels (input and output).
        norm: "batch", "sync_batch", "instance" or None, for both networks.
        skip_connections: U-Net (True) or the encoder-decoder ablation.
        patch_size: the discriminator's receptive field: 1, 16, 70 or 286.
        conditional: whether the discriminator sees the input image.
        dropout: the generator's dropout rate.
        filters: width of the first layer of both networks (the paper's ngf = ndf = 64);
            smaller values give quick experiments with the same architecture.
        precision: "float32" (paper), "mixed_bfloat16", "mixed_float16" or "auto" (see
            `resolve_precision`): the dtype policy the networks compute in; None (default):
            Keras' global policy, float32 unless set. Weights stay float32 and so do the
            generator's output and the discriminator's logits.

    Returns:
        A `Pix2Pix` model.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    shape = (height, width, channels)
    with dtype_policy(resolve_precision(precision)):
        generator = build_unet_generator(
            shape,
            channels,
            filters=filters,
            max_filters=8 * filters,  # 512 at the paper's width; narrower networks scale down
            norm=norm,
            skip_connections=skip_connections,
            dropout=dropout,
        )
        discriminator = build_patchgan_discriminator(
            shape,
            channels,
            filters=filters,
            patch_size=patch_size,
            conditional=conditional,
            norm=norm,
        )
        return Pix2Pix(generator, discriminator, name="pix2pix")


def enable_determinism():
    """Makes TensorFlow repeat a seeded run bit for bit on the same machine.

    Op determinism alone is not enough on a CPU: ops running in parallel still sum in varying
    orders (measured: weights differing by 1e-5 after 8 steps), so inter-op parallelism is cut
    to one thread. That must happen before TensorFlow runs its first op; when it is too late,
    a warning says so and results may differ in the last digits.
    """
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        warnings.warn(
            "TensorFlow was already running, so inter-op parallelism stays on: the run is "
            "deterministic only up to float rounding. Start a fresh process for bit-identical "
            "runs.",
            stacklevel=2,
        )


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
    filters=64,
    precision=None,
    seed=None,
    deterministic=False,
    resume=False,
    backup_every=None,
    data_dir="data",
    samples=4,
    jit_compile="auto",
    strategy=None,
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
        norm: "batch", "sync_batch", "instance" or None.
        skip_connections: U-Net (True) or encoder-decoder.
        patch_size: discriminator receptive field (1, 16, 70, 286).
        conditional: conditional (cGAN) or unconditional (GAN) discriminator.
        filters: first-layer width of both networks (64 in the paper).
        precision: "float32" (paper), "mixed_bfloat16", "mixed_float16", or "auto": mixed
            float16 on a GPU, mixed bfloat16 on a CPU with AVX512-BF16/AMX, else float32;
            None (default): Keras' global dtype policy, float32 unless set.
        seed: seed for weights, data order, jitter and dropout.
        deterministic: also make TensorFlow's ops deterministic, so that a seeded run gives
            bit-identical weights on the same machine (slower on GPUs).
        resume: continue the run in `out` from its last backup, at the exact step.
        backup_every: steps between backups; default at the end of each epoch only.
        data_dir: where datasets are generated or downloaded.
        samples: number of validation pairs in the sample grids.
        jit_compile: passed to `compile` ("auto": XLA on GPU, not on CPU, where it is slower).
        strategy: a `tf.distribute.Strategy`, e.g. `tf.distribute.MirroredStrategy()` for every
            visible GPU: the networks, optimizers and backup are created in its scope, and
            `batch_size` is the global batch, split between the replicas (the paper's batch 1
            per GPU is ``batch_size`` = the number of GPUs). Batch norm then normalises each
            replica's share; ``norm="sync_batch"`` normalises the global batch. None: one device.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity ("auto" shows the progress bar).

    Returns:
        ``(model, history)``; after a resume, `history` covers the resumed part.

    Raises:
        RunExistsError: `out` holds a backup and `resume` is False.
        NonFiniteLossError: a loss became NaN or infinite; the last good backup is kept.
    """
    out = check_writable(out)
    backup_dir = out / "backup"
    if (backup_dir / StepBackup.STATE).exists() and not resume:
        raise RunExistsError(
            f"{out} already holds a run (its backup is {backup_dir}); pass --resume to continue "
            "it, or choose another --out"
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if deterministic:
        enable_determinism()
    root, natural_direction = resolve_data(data, data_dir)
    direction = direction or natural_direction or "AtoB"
    load_size = load_size or default_load_size(image_size)
    common = {"direction": direction, "image_size": image_size, "batch_size": batch_size}
    train_ds = load_paired(root, "train", load_size=load_size, seed=seed, **common)
    steps_per_epoch = steps_per_epoch or int(train_ds.cardinality())
    # One endless stream, read by a single iterator across epochs: with a seed, batch k of the
    # run is the same whether or not the run was interrupted, so a resume can skip to it.
    stream = train_ds.repeat()
    val_ds = _validation_split(root, common)

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_pix2pix(
            image_size,
            norm=norm,
            skip_connections=skip_connections,
            patch_size=patch_size,
            conditional=conditional,
            filters=filters,
            precision=precision,
        )
        model.compile(
            default_optimizer(learning_rate),
            default_optimizer(learning_rate),
            gan_loss=gan_loss,
            l1_weight=l1_weight,
            gan_weight=gan_weight,
            jit_compile=jit_compile,
        )
        state = StepBackup.restore(model, backup_dir) if resume else None
    epoch, step_in_epoch, global_step = (
        (state["epoch"], state["step_in_epoch"], state["global_step"]) if state else (0, 0, 0)
    )
    decay_epochs = epochs // 2 if decay_epochs is None else decay_epochs
    sample_source = val_ds if val_ds is not None else train_ds
    inputs, targets = next(iter(sample_source.unbatch().batch(samples).take(1)))
    backup = StepBackup(backup_dir, every=backup_every, initial_step=global_step)
    guard = StopOnNonFinite(
        f"The last good backup is in {backup_dir}: continue from it with --resume and a lower "
        "--lr (or check the data for broken images)."
    )
    run_callbacks = [
        guard,
        backup,
        LinearDecay(epochs - decay_epochs, decay_epochs, learning_rate),
        SampleGrid(inputs, targets, out / "samples", log_dir=out / "logs"),
        GeneratorCheckpoint(out / "generator.keras"),
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
        "filters": filters,
        "precision": resolve_precision(precision),
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        "seed": seed,
        "deterministic": deterministic,
        "backup_every": backup_every,
    }
    with atomic_path(out / "config.json") as temporary:
        temporary.write_text(json.dumps(config, indent=2) + "\n")

    def fit(first_epoch, last_epoch, steps):
        return model.fit(
            stream.skip(backup.global_step),
            validation_data=val_ds,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=steps,
            validation_steps=validation_steps,
            callbacks=run_callbacks,
            shuffle=False,
            verbose=verbose,
        )

    history = None
    if step_in_epoch:  # finish the interrupted epoch first, then run whole epochs
        history = fit(epoch, epoch + 1, steps_per_epoch - step_in_epoch)
        epoch += 1
    if epoch < epochs and guard.error is None:
        history = fit(epoch, epochs, steps_per_epoch)
    if guard.error is not None:
        raise guard.error
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
