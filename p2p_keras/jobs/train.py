"""The job behind ``python -m p2p_keras train``. It writes, atomically, ``generator.keras`` (each
epoch), ``pix2pix.keras`` (with optimizers), ``samples/``, ``history.csv``, TensorBoard ``logs/``,
``config.json`` (the resolved `TrainOptions`) and ``backup/`` (for ``resume``)."""

import contextlib
import dataclasses
import functools
import json
import pathlib
import warnings

import keras
import tensorflow as tf

from p2p_keras import callbacks as cbs
from p2p_keras import project_dir
from p2p_keras.data import atomic_path, load_paired
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import load_generator, save_model
from p2p_keras.jobs.options import TrainOptions
from p2p_keras.model import Pix2Pix
from p2p_keras.optimizers import default_optimizer
from p2p_keras.precision import resolve_precision


class RunExistsError(FileExistsError):
    """The run folder holds a run that `resume` was not asked to continue."""


def default_load_size(image_size):
    """The jitter's resize before the random crop: 286 for 256, the same ratio otherwise."""
    if isinstance(image_size, int):
        return round(image_size * 286 / 256)
    return tuple(round(side * 286 / 256) for side in image_size)


def build_pix2pix(image_size=256, channels=3, *, filters=64, precision=None, **options):
    """Builds an uncompiled `Pix2Pix` with the paper's networks, or an ablation of them.

    `image_size` is an int or `(height, width)`; `precision` as in `TrainOptions`; `**options`:
    `norm`, `skip_connections`, `dropout`, `patch_size`, `conditional`.

    >>> model = build_pix2pix(64, filters=16, skip_connections=False)
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    shape, norm = (*size, channels), options.pop("norm", "batch")
    d_options = {k: options.pop(k) for k in ("patch_size", "conditional") if k in options}
    previous = keras.config.dtype_policy()  # the layers built here take the global policy
    keras.config.set_dtype_policy(resolve_precision(precision))
    try:
        generator = build_unet_generator(shape, channels, filters=filters, norm=norm, **options)
        discriminator = build_patchgan_discriminator(
            shape, channels, filters=filters, norm=norm, **d_options
        )
    finally:
        keras.config.set_dtype_policy(previous)
    return Pix2Pix(generator, discriminator, name="pix2pix")


def train(data=None, out=None, *, strategy=None, callbacks=(), **fields):
    """Trains pix2pix, writes the run folder (see the module); returns ``(model, history)``.

    `data` is a `TrainOptions` or its ``data`` field, `**fields` override its fields. `strategy`:
    a `tf.distribute.Strategy`; with ``mirrored``, by default `MirroredStrategy` on TensorFlow,
    `keras.distribution.DataParallel` on JAX. `history` covers the epochs this call ran.
    Raises `RunExistsError` if the run folder holds a backup and ``resume`` is False, and
    `NonFiniteLossError` (keeping the last good backup) if a loss becomes NaN or infinite.
    """
    options = data if isinstance(data, TrainOptions) else TrainOptions(data=data)
    options = dataclasses.replace(options, **fields, **({} if out is None else {"out": out}))
    out = pathlib.Path(options.out or project_dir() / "runs" / "pix2pix")
    backup_dir = out / "backup"
    if (backup_dir / cbs.StepBackup.STATE).exists() and not options.resume:
        raise RunExistsError(f"{out} holds a run: pass --resume to continue it, or another --out")
    _check_writable(out)
    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    if options.deterministic:  # deterministic ops, and one inter-op thread: parallel ops on a
        tf.config.experimental.enable_op_determinism()  # CPU sum in varying orders
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # possible only before TensorFlow's first op
            warnings.warn("TensorFlow ran: deterministic up to float rounding", stacklevel=2)
    from p2p_keras.jobs.datasets import resolve_dataset  # here: it imports TFDS

    root, natural_direction = resolve_dataset(options.data, options.data_dir)
    options = dataclasses.replace(
        options,
        data=str(root),
        out=str(out),
        direction=options.direction or natural_direction or "AtoB",
        load_size=options.load_size or default_load_size(options.image_size),
        decay_epochs=options.epochs // 2 if options.decay_epochs is None else options.decay_epochs,
        precision=resolve_precision(options.precision),
    )
    common = _pick(options, ("direction", "image_size", "batch_size"))
    load_train = functools.partial(
        load_paired, root, "train", load_size=options.load_size, seed=options.seed, **common
    )
    train_ds = load_train()
    steps = options.steps_per_epoch or int(train_ds.cardinality())
    options = dataclasses.replace(options, steps_per_epoch=steps)
    val_ds = _validation_split(root, common)

    scope, replicas = _distribute(options, strategy)
    with scope:  # built, restored and trained inside it
        return _train(options, out, train_ds, load_train, val_ds, replicas, callbacks)


def _train(options, out, train_ds, load_train, val_ds, replicas, callbacks):
    backup_dir, steps = out / "backup", options.steps_per_epoch
    model = build_pix2pix(options.image_size, **_pick(options, _BUILD_OPTIONS))
    rate = options.learning_rate
    model.compile(
        default_optimizer(rate), default_optimizer(rate), **_pick(options, _COMPILE_OPTIONS)
    )
    if options.init_generator:
        _init_generator(model.generator, options.init_generator)
    state = cbs.StepBackup.restore(model, backup_dir) if options.resume else None
    state = state or {"epoch": 0, "step_in_epoch": 0, "global_step": 0}
    sample_source = val_ds if val_ds is not None else load_train()
    inputs, targets = next(iter(sample_source.unbatch().batch(options.samples).take(1)))
    backup = cbs.StepBackup(backup_dir, options.backup_every, state["global_step"])
    guard = cbs.StopOnNonFinite(f"The last good backup: {backup_dir}. --resume with a lower --lr")
    # The base rate is the option's: a resumed optimizer holds an already decayed rate.
    decay = cbs.LinearDecay(options.epochs - options.decay_epochs, options.decay_epochs, rate)
    samples = cbs.SampleGrid(inputs, targets, out / "samples", log_dir=out / "logs")
    checkpoint = cbs.GeneratorCheckpoint(out / "generator.keras")
    csv_log = keras.callbacks.CSVLogger(str(out / "history.csv"), append=True)
    tensorboard = keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False)
    run_callbacks = [guard, backup, decay, samples, checkpoint, csv_log, tensorboard, *callbacks]
    with atomic_path(out / "config.json") as temporary:
        config = {**dataclasses.asdict(options), "replicas": replicas}
        temporary.write_text(json.dumps(config, indent=2) + "\n")

    def fit_epochs(dataset, first, last, steps_per_epoch):
        # Each fit() reads its pipeline as one endless stream: with a seed, batch k of the run
        # is the same whether or not it was interrupted, so a resume can skip to it.
        return model.fit(
            dataset.repeat().skip(backup.global_step), initial_epoch=first, epochs=last,
            steps_per_epoch=steps_per_epoch, validation_data=val_ds,
            validation_steps=options.validation_steps, callbacks=run_callbacks, shuffle=False,
            verbose=options.verbose,
        )  # fmt: skip

    epoch, done, history = state["epoch"], state["step_in_epoch"], None
    if done >= steps:  # the epoch's steps are done (or --steps-per-epoch shrank): go on
        epoch, done = epoch + 1, 0
    if done:  # the rest of the interrupted epoch first
        history = fit_epochs(train_ds, epoch, epoch + 1, steps - done)
        train_ds = load_train()  # a second iterator over one pipeline reshuffles and re-jitters
        epoch += 1
    if epoch < options.epochs and guard.error is None:
        rest = fit_epochs(train_ds, epoch, options.epochs, steps)
        if history is not None:  # one history: the interrupted epoch's rest, then the others
            rest.epoch = history.epoch + rest.epoch
            rest.history = {key: history.history.get(key, []) + values
                            for key, values in rest.history.items()}  # fmt: skip
        history = rest
    if guard.error is not None:
        raise guard.error
    save_model(model.generator, out / "generator.keras")
    save_model(model, out / "pix2pix.keras")
    return model, history


_BUILD_OPTIONS = ("norm", "skip_connections", "patch_size", "conditional", "filters", "precision")
_COMPILE_OPTIONS = ("gan_loss", "l1_weight", "gan_weight", "jit_compile")


def _distribute(options, strategy):
    """The scope a run trains in, and its number of replicas."""
    if strategy is None and options.mirrored:
        backend = keras.backend.backend()
        if backend == "torch":
            raise ValueError("--mirrored trains on TensorFlow or JAX, not on PyTorch")
        # Both split each batch over all devices; JAX uses Keras' own distribution API.
        jax = backend == "jax"
        strategy = keras.distribution.DataParallel() if jax else tf.distribute.MirroredStrategy()
    if strategy is None:
        return contextlib.nullcontext(), 1
    replicas = getattr(strategy, "num_replicas_in_sync", None) or strategy.device_mesh.devices.size
    if options.batch_size % replicas:
        message = f"--batch-size {options.batch_size} does not split over {replicas} devices"
        raise ValueError(message)
    return strategy.scope(), replicas


def _init_generator(generator, path):
    """Copies the weights of the generator in `path` into `generator` (the same network)."""
    source = load_generator(path)
    shapes = [tuple(w.shape) for w in generator.weights]
    if [tuple(w.shape) for w in source.weights] != shapes:
        raise ValueError(
            f"{path}: its generator (input {source.input_shape}, {source.count_params():,} "
            f"parameters) is not this run's ({generator.input_shape}, "
            f"{generator.count_params():,}): match --image-size, --filters and --norm"
        )
    generator.set_weights(source.get_weights())


def _pick(options, names):
    return {name: getattr(options, name) for name in names}


def _check_writable(out):
    """Proves `out` can be written before any time is spent training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write_test").write_bytes(b"")
        (out / ".write_test").unlink()
    except OSError as error:
        raise PermissionError(f"cannot write to the output folder {out}: {error}") from error


def _validation_split(root, common):
    """The "val" split, else "test", read without jitter; None when there is neither."""
    for split in ("val", "test"):
        with contextlib.suppress(FileNotFoundError):
            return load_paired(root, split, training=False, **common)
    return None
