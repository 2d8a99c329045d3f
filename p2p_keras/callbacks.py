"""Callbacks for training pix2pix with `fit`: sample grids, the official LR schedule, backups that
resume at the exact step, and a guard against non-finite losses. Logs use Keras' `CSVLogger` and
`TensorBoard`.
"""

import json
import math
import pathlib

import keras
import numpy as np
import tensorflow as tf

from p2p_keras.data import denormalize
from p2p_keras.inference import atomic_path, generate, save_atomic, write_png_atomic


def sample_grid(inputs, generated, targets):
    """Tiles images into rows of input | generated | target.

    Args:
        inputs: (N, H, W, C) images in [-1, 1].
        generated: (N, H, W, C) images in [-1, 1].
        targets: (N, H, W, C) images in [-1, 1].

    Returns:
        A uint8 array of shape (N * H, 3 * W, C).
    """
    rows = [
        np.concatenate([denormalize(a), denormalize(b), denormalize(c)], axis=1)
        for a, b, c in zip(inputs, generated, targets, strict=True)
    ]
    return np.concatenate(rows, axis=0)


class SampleGrid(keras.callbacks.Callback):
    """Translates a fixed set of pairs after each epoch and keeps the picture.

    Each grid has one row per pair: input | generated | target. It is written as
    ``out_dir/epoch_NNN.png``, logged to TensorBoard under ``log_dir`` and, with ``show=True``,
    displayed inline in a notebook.

    Args:
        inputs: (N, H, W, C) input images in [-1, 1] (e.g. the first validation pairs).
        targets: (N, H, W, C) target images in [-1, 1].
        out_dir: folder for the PNGs, or None.
        log_dir: TensorBoard log folder, or None.
        show: display the grid inline (IPython) at each epoch.
        every: write a grid every `every` epochs (and after the last one).
        dropout: keep dropout on when generating (the paper's test-time noise).
        batch_stats: normalise with the batch's statistics, as the paper does at test time.

    Example:
    >>> x, y = next(iter(val_ds.unbatch().batch(4)))
    >>> model.fit(train_ds, epochs=10, callbacks=[SampleGrid(x, y, out_dir="samples")])
    """

    def __init__(
        self,
        inputs,
        targets,
        out_dir=None,
        *,
        log_dir=None,
        show=False,
        every=1,
        dropout=True,
        batch_stats=True,
    ):
        super().__init__()
        self.inputs = np.asarray(inputs)
        self.targets = np.asarray(targets)
        self.out_dir = pathlib.Path(out_dir) if out_dir else None
        self.log_dir = log_dir
        self.show = show
        self.every = every
        self.dropout = dropout
        self.batch_stats = batch_stats
        self.last_grid = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = self.params.get("epochs") == epoch + 1
        if ((epoch + 1) % self.every and not last_epoch) or not all_finite(logs):
            return
        generated = generate(
            self.model.generator,
            self.inputs,
            dropout=self.dropout,
            batch_stats=self.batch_stats,
        )
        self.last_grid = sample_grid(self.inputs, generated, self.targets)
        if self.out_dir is not None:
            write_png_atomic(self.last_grid, self.out_dir / f"epoch_{epoch + 1:03d}.png")
        if self.log_dir is not None:
            self._log_to_tensorboard(epoch)
        if self.show:
            from IPython.display import Image, display

            display(Image(data=tf.io.encode_png(self.last_grid).numpy()))

    def _log_to_tensorboard(self, epoch):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default():
            tf.summary.image("samples", self.last_grid[None], step=epoch + 1)
        self._writer.flush()


class LinearDecay(keras.callbacks.Callback):
    """The official schedule: a constant learning rate, then a linear decay towards 0.

    Epoch ``e`` (counting from 1) trains at ``lr * (1 - max(0, e - n_epochs) / (n_epochs_decay
    + 1))``, as `--lr_policy linear` in the official PyTorch code (100 + 100 epochs there).
    The rate is set from the epoch number alone, so a resumed run picks up the right value.

    Args:
        n_epochs: epochs at the initial rate.
        n_epochs_decay: epochs of linear decay after them.
        learning_rate: the initial rate of both optimizers (the paper's 2e-4).
    """

    def __init__(self, n_epochs, n_epochs_decay, learning_rate=2e-4):
        super().__init__()
        self.n_epochs = n_epochs
        self.n_epochs_decay = n_epochs_decay
        self.learning_rate = learning_rate

    def multiplier(self, epoch):
        """Learning-rate factor for `epoch`, counted from 0 as Keras does."""
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / (self.n_epochs_decay + 1)

    def on_epoch_begin(self, epoch, logs=None):
        rate = self.learning_rate * self.multiplier(epoch)
        for optimizer in (self.model.generator_optimizer, self.model.discriminator_optimizer):
            optimizer.learning_rate = rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.learning_rate * self.multiplier(epoch))


def all_finite(logs):
    """Whether every number in a Keras `logs` dict is finite."""
    return all(math.isfinite(float(value)) for value in (logs or {}).values())


class GeneratorCheckpoint(keras.callbacks.Callback):
    """Saves the generator after every epoch, atomically: a crash leaves the previous file.

    An epoch whose losses are not finite is not saved.

    Args:
        path: destination ``.keras`` file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            save_atomic(self.model.generator, self.path)


class StepBackup(keras.callbacks.Callback):
    """Backs up the whole training state every `every` steps and at each epoch's end.

    The state is the weights of both networks, both optimizers (moments, step counters, learning
    rates) and batch-norm statistics (one ``model.save_weights`` file), plus the dropout layers'
    random-number states and the epoch and step reached (``state.json``).
    `keras.callbacks.BackupAndRestore` resumes at the start of the interrupted epoch, so a resumed
    run would take more steps than an uninterrupted one; this backup records the step, and
    `p2p_keras.jobs.train.train` resumes exactly there.

    Writes are atomic: a new weights file is completed first, then ``state.json`` is replaced to
    point at it, then older weights files are deleted. A crash at any moment leaves a consistent
    backup. Steps whose losses are not finite are never backed up.

    Args:
        backup_dir: folder of the backup.
        every: steps between backups (None: at epoch ends only).
        initial_step: global step at which this `fit` starts (after a resume).
    """

    STATE = "state.json"

    def __init__(self, backup_dir, every=None, initial_step=0):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.every = every
        self.global_step = initial_step
        self._epoch = 0
        self._step_in_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        self._step_in_epoch += 1
        if self.every and self.global_step % self.every == 0 and all_finite(logs):
            self.save(self._epoch, self._step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            self.save(epoch + 1, 0)

    def save(self, epoch, step_in_epoch):
        """Writes the backup for `epoch` (counted from 0) after `step_in_epoch` of its steps."""
        weights = self.backup_dir / f"step_{self.global_step:09d}.weights.h5"
        with atomic_path(weights) as temporary:
            self.model.save_weights(temporary)
        state = {
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "weights": weights.name,
            # save_weights() leaves out the dropout layers' random-number states.
            "seeds": [v.numpy().tolist() for v in _seed_states(self.model)],
        }
        with atomic_path(self.backup_dir / self.STATE) as temporary:
            temporary.write_text(json.dumps(state) + "\n")
        for old in self.backup_dir.glob("step_*.weights.h5"):
            if old != weights:
                old.unlink()

    @classmethod
    def restore(cls, model, backup_dir):
        """Loads the backup into `model` (built and compiled).

        Args:
            model: the `Pix2Pix` model to restore.
            backup_dir: folder of the backup.

        Returns:
            The state dict (``epoch``, ``step_in_epoch``, ``global_step``), or None when
            `backup_dir` holds no backup.
        """
        state_path = pathlib.Path(backup_dir) / cls.STATE
        if not state_path.exists():
            return None
        state = json.loads(state_path.read_text())
        model.load_weights(pathlib.Path(backup_dir) / state["weights"])
        for variable, value in zip(_seed_states(model), state["seeds"], strict=True):
            variable.assign(value)
        return state


def _seed_states(model):
    """The state variables of the random-number generators inside `model` (dropout's)."""
    return [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]


class NonFiniteLossError(ArithmeticError):
    """Training stopped because a loss became NaN or infinite."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first step whose losses are NaN or infinite, and says where.

    Keras' `TerminateOnNaN` only watches a ``loss`` entry, which a GAN's logs do not have. After
    `fit` returns, `error` holds a `NonFiniteLossError` naming the epoch, step and loss, or None.

    Args:
        advice: sentence appended to the message (e.g. how to continue from the last backup).
    """

    def __init__(self, advice=""):
        super().__init__()
        self.advice = advice
        self.error = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.error = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if all_finite(logs):
            return
        names = [key for key, value in logs.items() if not math.isfinite(float(value))]
        self.error = NonFiniteLossError(
            f"{', '.join(names)} became non-finite at epoch {self._epoch + 1}, step {batch + 1}. "
            f"{self.advice}".strip()
        )
        self.model.stop_training = True
