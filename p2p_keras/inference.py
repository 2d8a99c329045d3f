"""Using a trained generator: test-time modes, translating photos of any size, safe files.

The paper runs the generator at test time "in exactly the same manner as during training":
dropout stays on as the model's noise, and batch normalisation uses the statistics of the test
batch (at batch size 1 this is instance normalisation). The official code does the same unless
``--eval`` is given, and the TF tutorial calls the generator with ``training=True`` for this
reason. Users who expect Keras' usual inference mode get blurred or different pictures, so here
both switches are explicit arguments of `generate`.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile
import zipfile

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from PIL import Image

from p2p_keras.data import denormalize, read_rgb, split_pair
from p2p_keras.precision import as_float32


def generate(generator, images, *, dropout=True, batch_stats=True):
    """Runs the generator with the test-time behaviour chosen explicitly.

    Args:
        generator: a generator `keras.Model`.
        images: a batch of input images in [-1, 1].
        dropout: keep dropout on, as the paper does (outputs vary from call to call).
        batch_stats: normalise with the statistics of `images` rather than the moving averages
            learned in training (the paper's choice). The moving averages are left untouched.

    Returns:
        A numpy array of generated images in [-1, 1]. With ``dropout=False, batch_stats=False``
        this is Keras' ordinary inference, ``generator(images, training=False)``.
    """
    if not dropout and not batch_stats:
        return keras.ops.convert_to_numpy(generator(images, training=False))
    norms = [layer for layer in generator.layers if isinstance(layer, layers.BatchNormalization)]
    dropouts = [layer for layer in generator.layers if isinstance(layer, layers.Dropout)]
    moving = [v for layer in norms for v in layer.non_trainable_variables]
    saved_stats = [v.numpy() for v in moving]
    trainable = [layer.trainable for layer in norms]
    rates = [layer.rate for layer in dropouts]
    try:
        for layer in norms:
            layer.trainable = batch_stats  # a frozen BatchNormalization uses its moving averages
        if not dropout:
            for layer in dropouts:
                layer.rate = 0.0
        outputs = keras.ops.convert_to_numpy(generator(images, training=True))
    finally:
        for layer, value in zip(norms, trainable, strict=True):
            layer.trainable = value
        for layer, value in zip(dropouts, rates, strict=True):
            layer.rate = value
        for variable, value in zip(moving, saved_stats, strict=True):
            variable.assign(value)  # training=True updated the moving averages; undo that
    return outputs


class ModelFileError(ValueError):
    """A model file that is missing, not a Keras model, or not a generator."""


def load_generator(path, float32=True):
    """Loads a generator saved as ``.keras``, with Keras' safe mode on.

    Accepts a generator file (``generator.keras``) or a whole `Pix2Pix` model file, whose
    generator is returned.

    Args:
        path: path to a ``.keras`` file.
        float32: compute in float32 even if the generator was trained in mixed precision (see
            `as_float32`); False keeps the saved dtype policy.

    Returns:
        The generator `keras.Model`.

    Raises:
        ModelFileError: the file is missing, not a Keras model, or a model that is not an
            image-to-image generator; the message names the file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a Keras model (.keras files are zip archives)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any failure means the file is unusable
        raise ModelFileError(f"{path}: could not be loaded as a Keras model ({error})") from error
    model = getattr(model, "generator", model)
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 4 or tuple(model.output_shape)[:3] != shape[:3]:
        raise ModelFileError(
            f"{path}: holds a model {model.name!r} with input {model.input_shape} and output "
            f"{model.output_shape}; expected an image-to-image generator"
        )
    return as_float32(model) if float32 else model


def translate_array(generator, image, *, dropout=True, batch_stats=True):
    """Translates one uint8 image of any size and returns it at its own size.

    The image is resized (bicubic) to the generator's input size, translated, and the result
    resized back to the original size. Channels are matched to the generator: an RGB image for a
    1-channel generator is converted to gray, a gray one is repeated to 3 channels.

    Args:
        generator: a generator `keras.Model` with a fixed input size.
        image: uint8 array (H, W) or (H, W, C).
        dropout: see `generate`.
        batch_stats: see `generate`.

    Returns:
        A uint8 array (H, W, output channels).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    _, height, width, channels = generator.input_shape
    if image.shape[-1] != channels:
        image = _match_channels(image, channels)
    original = image.shape[:2]
    x = tf.image.resize(tf.cast(image, tf.float32) / 127.5 - 1.0, (height, width), "bicubic")
    x = tf.clip_by_value(x, -1.0, 1.0)[None]
    y = generate(generator, x, dropout=dropout, batch_stats=batch_stats)
    y = tf.clip_by_value(tf.image.resize(y, original, "bicubic"), -1.0, 1.0)
    return denormalize(y[0])


def _match_channels(image, channels):
    if channels == 1:
        return np.asarray(Image.fromarray(image[..., :3].squeeze()).convert("L"))[..., None]
    gray_or_rgba = image[..., :1] if image.shape[-1] < 3 else image[..., :3]
    return np.broadcast_to(gray_or_rgba, (*image.shape[:2], channels)).copy()


def translate_files(
    generator, paths, out_dir, *, paired=False, direction="AtoB", dropout=True, batch_stats=True
):
    """Translates image files and writes ``out_dir/<stem>.png`` for each.

    Args:
        generator: a generator `keras.Model`.
        paths: input image files.
        out_dir: output folder (created).
        paired: the inputs are aligned A|B pairs; translate their input half.
        direction: with `paired`, "AtoB" takes the left half as input, "BtoA" the right half.
        dropout: see `generate`.
        batch_stats: see `generate`.

    Returns:
        The list of written paths.
    """
    out_dir = pathlib.Path(out_dir)
    written = []
    for path in map(pathlib.Path, paths):
        image = read_rgb(path)
        if paired:
            image = split_pair(image, direction)[0]
        result = translate_array(generator, image, dropout=dropout, batch_stats=batch_stats)
        written.append(write_png_atomic(result, out_dir / f"{path.stem}.png"))
    return written


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` that replaces `path` only if the block succeeds.

    The temporary name keeps the suffix (Keras insists on ``.keras`` / ``.weights.h5``). On an
    exception the temporary file is removed and any previous `path` is left as it was.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix="".join(path.suffixes) or ".tmp"
    )
    os.close(handle)
    os.unlink(temporary)
    temporary = pathlib.Path(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_atomic(model, path):
    """`model.save(path)` through a temporary file, so a crash never leaves half a model."""
    with atomic_path(path) as temporary:
        model.save(temporary)
    return pathlib.Path(path)


def write_png_atomic(image, path):
    """Writes a uint8 (H, W, C) array as PNG through a temporary file."""
    array = np.asarray(image)
    with atomic_path(path) as temporary:
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(
            temporary, format="PNG"
        )
    return pathlib.Path(path)


def export_saved_model(generator, path):
    """Exports the generator as a TensorFlow SavedModel (TF Serving, TFLite converter).

    The serving signature takes float32 images in [-1, 1] of the generator's input shape and
    runs in inference mode. Written to a temporary folder and renamed when complete.

    Args:
        generator: a generator `keras.Model`.
        path: destination folder.

    Returns:
        The folder path.
    """
    path = pathlib.Path(path)
    temporary = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        generator.export(str(temporary), format="tf_saved_model", verbose=False)
        if path.exists():
            raise FileExistsError(f"{path} already exists; remove it or choose another path")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return path
