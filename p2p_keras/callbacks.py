"""Callbacks for `fit`: sample grids, the official LR schedule, exact-step backups, a NaN guard."""

import contextlib
import json
import pathlib
import warnings

import keras
import numpy as np
import tensorflow as tf

from p2p_keras.data import atomic_path, denormalize
from p2p_keras.inference import generate, save_image, save_model, seed_states


def all_finite(logs):
    """Whether every value in a Keras `logs` dict is finite."""
    return all(bool(keras.ops.all(keras.ops.isfinite(v))) for v in (logs or {}).values())


def sample_grid(*columns):
    """A uint8 grid of (N, H, W, C) batches in [-1, 1]: one column per batch, one row per image."""
    return denormalize(np.concatenate(np.concatenate(columns, axis=2)))


class SampleGrid(keras.callbacks.Callback):
    """Translates fixed pairs every `every` epochs (and the last) into a `sample_grid`.

    Grids go to ``out_dir/epoch_NNN.png``, TensorBoard (`log_dir`) and ``last_grid``. Their
    dropout is drawn from seed 0, not the training noise, so training is left as it was.

    >>> model.fit(train_ds, epochs=10, callbacks=[SampleGrid(x[:4], y[:4], out_dir="samples")])
    """

    def __init__(self, inputs, targets, out_dir=None, log_dir=None, every=1):
        super().__init__()
        self.inputs, self.targets = np.asarray(inputs), np.asarray(targets)
        self.out_dir, self.log_dir, self.every = out_dir, log_dir, every
        self.last_grid, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last or not all_finite(logs):
            return
        generated = generate(self.model.generator, self.inputs, seed=0)
        self.last_grid = sample_grid(self.inputs, generated, self.targets)
        if self.out_dir is not None:
            save_image(self.last_grid, pathlib.Path(self.out_dir) / f"epoch_{epoch + 1:03d}.png")
        if self.log_dir is not None:
            self._writer = self._writer or tf.summary.create_file_writer(str(self.log_dir))
            with self._writer.as_default():
                tf.summary.image("samples", self.last_grid[None], step=epoch + 1)


class LinearDecay(keras.callbacks.Callback):
    """The official ``--lr_policy linear``: a constant learning rate, then a decay towards 0.

    `learning_rate`: the base rate; default: each optimizer's rate when training first begins
    (pass it to resume: restored optimizers hold a decayed rate)."""

    def __init__(self, n_epochs, n_epochs_decay, learning_rate=None):
        super().__init__()
        self.n_epochs, self.n_epochs_decay = n_epochs, n_epochs_decay
        self.learning_rate, self.base_rates = learning_rate, None

    def multiplier(self, epoch):  # `epoch` counts from 0, as in Keras
        return 1.0 - max(0, epoch + 1 - self.n_epochs) / (self.n_epochs_decay + 1)

    def on_train_begin(self, logs=None):
        self.optimizers = (self.model.generator_optimizer, self.model.discriminator_optimizer)
        rates = [self.learning_rate or o.learning_rate for o in self.optimizers]
        self.base_rates = self.base_rates or [float(keras.ops.convert_to_numpy(r)) for r in rates]

    def on_epoch_begin(self, epoch, logs=None):
        for optimizer, base in zip(self.optimizers, self.base_rates, strict=True):
            optimizer.learning_rate = base * self.multiplier(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self.base_rates[0] * self.multiplier(epoch)


class GeneratorCheckpoint(keras.callbacks.Callback):
    """Saves the generator to `path` (``.keras``) atomically after every finite epoch."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            save_model(self.model.generator, self.path)


class BackupError(ValueError):
    """A backup that cannot be restored; the message names the file and what to do."""


class StepBackup(keras.callbacks.Callback):
    """Backs up the training state in `backup_dir` every `every` steps and at epoch ends.

    Unlike `keras.callbacks.BackupAndRestore`, which restarts the epoch, training resumes at the
    exact step (dropout's random state included). The previous backup is kept too.
    `initial_step`: the global step at which `fit` starts."""

    STATE, PREVIOUS = "state.json", "state.prev.json"

    def __init__(self, backup_dir, every=None, initial_step=0):
        super().__init__()
        self.backup_dir, self.every = pathlib.Path(backup_dir), every
        self.global_step, self._epoch, self._epoch_start, self._offset = initial_step, 0, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        # Resumed mid-epoch (the backup is at this epoch and step): the epoch starts part done.
        state = _read_state(self.backup_dir / self.STATE)
        resumed = state.get("epoch") == epoch and state.get("global_step") == self.global_step
        self._offset = state["step_in_epoch"] if resumed else 0
        self._epoch, self._epoch_start = epoch, self.global_step

    def on_train_batch_end(self, batch, logs=None):
        previous, self.global_step = self.global_step, self._epoch_start + batch + 1
        crossed = self.every and previous // self.every < self.global_step // self.every
        last = batch + 1 == self.params.get("steps")  # on_epoch_end backs up the epoch's end
        if crossed and not last and all_finite(logs):
            self.save(self._epoch, self._offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            self.save(epoch + 1, 0)

    def save(self, epoch, step_in_epoch):
        """Writes the backup for `epoch` (counted from 0) after `step_in_epoch` of its steps."""
        weights = self.backup_dir / f"step_{self.global_step:09d}.weights.h5"
        with atomic_path(weights) as temporary:
            self.model.save_weights(temporary)
        seeds = [keras.ops.convert_to_numpy(v.value).tolist() for v in seed_states(self.model)]
        state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.global_step}
        state.update(weights=weights.name, seeds=seeds)  # save_weights() leaves out the seeds
        newest = self.backup_dir / self.STATE
        if newest.exists():
            with atomic_path(self.backup_dir / self.PREVIOUS) as temporary:
                temporary.write_bytes(newest.read_bytes())
        with atomic_path(newest) as temporary:
            temporary.write_text(json.dumps(state) + "\n")
        keep = {weights.name, _read_state(self.backup_dir / self.PREVIOUS).get("weights")}
        for old in self.backup_dir.glob("step_*.weights.h5"):
            if old.name not in keep:
                old.unlink()

    @classmethod
    def restore(cls, model, backup_dir):
        """Loads the newest intact backup into a built, compiled `model`; returns its state or None.

        Warns when that is the previous backup; raises a `BackupError` if none is intact."""
        errors, paths = [], [pathlib.Path(backup_dir) / name for name in (cls.STATE, cls.PREVIOUS)]
        for path in filter(pathlib.Path.exists, paths):
            state = _read_state(path)
            if not {"weights", "seeds", "epoch", "step_in_epoch", "global_step"} <= state.keys():
                errors.append(f"backup file {path} is damaged (unreadable or incomplete JSON)")
                continue
            weights = path.parent / state["weights"]
            try:
                model.load_weights(weights)
                for variable, value in zip(seed_states(model), state["seeds"], strict=True):
                    variable.assign(value)
            except Exception as error:  # noqa: BLE001 - h5py and Keras raise many kinds
                errors.append(f"backup file {weights} is damaged ({error})")
                continue
            if errors:
                warnings.warn(f"{errors[0]}; resuming from the previous backup", stacklevel=2)
            return state
        if errors:
            way_out = f"delete the backup folder {backup_dir} to restart the run"
            raise BackupError(f"{'; '.join(errors)}: {way_out}")


def _read_state(path):  # the JSON dict in `path`, or {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(pathlib.Path(path).read_text())
        return state if isinstance(state, dict) else {}
    return {}


class NonFiniteLossError(ArithmeticError):
    """Training stopped because a loss became NaN or infinite."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops `fit` at the first step with non-finite losses; `error` then says where, + `advice`.

    Keras' `TerminateOnNaN` only watches a ``loss`` entry, which a GAN's logs lack."""

    def __init__(self, advice=""):
        super().__init__()
        self.advice, self.error, self._epoch = advice, None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not all_finite(logs):
            names = ", ".join(key for key, value in logs.items() if not all_finite({key: value}))
            where = f"epoch {self._epoch + 1}, step {batch + 1}"
            self.error = NonFiniteLossError(f"{names} became non-finite at {where}. {self.advice}")
            self.model.stop_training = True
