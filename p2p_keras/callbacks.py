"""Callbacks for training pix2pix with `fit`: sample grids, the official LR schedule, checkpoints.

Resuming and logs use Keras' own `keras.callbacks.BackupAndRestore` and `CSVLogger`.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from p2p_keras.inference import generate, save_atomic, to_uint8, write_png_atomic


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
        np.concatenate([to_uint8(a), to_uint8(b), to_uint8(c)], axis=1)
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
        if (epoch + 1) % self.every and not last_epoch:
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


class GeneratorCheckpoint(keras.callbacks.Callback):
    """Saves the generator after every epoch, atomically: a crash leaves the previous file.

    Args:
        path: destination ``.keras`` file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def on_epoch_end(self, epoch, logs=None):
        save_atomic(self.model.generator, self.path)
