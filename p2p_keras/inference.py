"""Using a trained generator: the paper's test-time mode, images of any size, model files, export.

The paper tests "in exactly the same manner as during training" (dropout on, the test batch's
statistics), as the official code without ``--eval`` does; `generate` makes both switches explicit.
"""

import json
import pathlib
import random
import zipfile

import keras
import numpy as np
from keras import layers
from PIL import Image

from p2p_keras.data import atomic_path, denormalize, normalize, read_rgb, resize, split_pair
from p2p_keras.layers import BatchNormalization


def seed_states(model):
    """The random state of the dropout layers in `model`: their `SeedGenerator`s' variables."""
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def generate(generator, images, *, dropout=True, batch_stats=True, seed=None):
    """Runs the generator in the test-time mode chosen explicitly, without changing the model.

    The generator's own layers run with `training` set per layer, through `stateless_call`:
    the moving averages and the random state of the training noise are neither used nor
    updated, so calling this during `fit` changes nothing.

    Args:
        generator: a functional generator `keras.Model`.
        images: a batch of input images in [-1, 1].
        dropout: keep dropout on, as the paper does (the outputs vary with `seed`).
        batch_stats: normalise with the statistics of `images` (the paper's choice) rather
            than the moving averages learned in training.
        seed: int seed of the dropout noise; None draws one from Python's `random`.

    Returns:
        A numpy array in [-1, 1]. ``dropout=False, batch_stats=False`` is Keras' inference,
        ``generator(images, training=False)``.
    """

    def call(layer, *args, **kwargs):
        if isinstance(layer, layers.Dropout):
            kwargs["training"] = dropout
        elif isinstance(layer, layers.BatchNormalization):
            kwargs["training"] = batch_stats
        return layer(*args, **kwargs)

    # The generator's own layers (not copies), each called in its test-time mode.
    view = keras.models.clone_model(generator, clone_function=lambda x: x, call_function=call)
    seed = random.randrange(2**31) if seed is None else seed
    # The view holds the generator's variables; each dropout layer gets a seeded random state.
    noise = {id(v): [seed + i, 0] for i, v in enumerate(seed_states(generator))}
    state = [noise.get(id(v), v.value) for v in view.non_trainable_variables]
    outputs, _ = view.stateless_call(view.trainable_variables, state, images)
    return keras.ops.convert_to_numpy(outputs)


def translate(generator, image, **modes):
    """Translates one uint8 image (H, W) or (H, W, C) of any size; the result has its size.

    The image is resized to the generator's input as in training (`p2p_keras.data.resize`) and
    its channels matched (RGB to gray, or gray repeated). `modes`: as in `generate`.
    """
    image = np.asarray(image)
    image = image[..., None] if image.ndim == 2 else image
    _, height, width, channels = generator.input_shape
    if image.shape[-1] != channels and channels == 1:
        image = np.asarray(Image.fromarray(image[..., :3].squeeze()).convert("L"))[..., None]
    elif image.shape[-1] != channels:
        image = image[..., :1] if image.shape[-1] < 3 else image[..., :3]
        image = np.broadcast_to(image, (*image.shape[:2], channels))
    x = np.asarray(normalize(resize(image[None], (height, width))))
    y = denormalize(generate(generator, x, **modes)[0])
    return np.asarray(resize(y, image.shape[:2]))


def translate_files(generator, paths, out_dir, *, paired=False, direction="AtoB", **modes):
    """Translates files (`paired`: A|B pairs' input half); returns ``out_dir/<stem>.png``s."""
    written = []
    for path in map(pathlib.Path, paths):
        image = split_pair(read_rgb(path), direction)[0] if paired else read_rgb(path)
        result = translate(generator, image, **modes)
        written.append(save_image(result, pathlib.Path(out_dir) / f"{path.stem}.png"))
    return written


def save_image(image, path):
    """Writes a uint8 (H, W, C) array to `path` (format from the suffix) through `atomic_path`."""
    with atomic_path(path) as temporary:
        keras.utils.save_img(temporary, image, scale=False)
    return pathlib.Path(path)


INFO = "p2p_keras.json"  # what the package records inside a .keras file it writes


def save_model(model, path, info=None):
    """`model.save(path)` through `atomic_path`, with the JSON-able dict `info` inside.

    A generator is saved with Keras' own `BatchNormalization` (the same in inference), so its
    file loads with Keras alone. Keras ignores `info` (e.g. ``{"direction": "BtoA"}``);
    `model_info` reads it back.
    """
    model = with_dtype(model, batch_norm=layers.BatchNormalization)
    with atomic_path(path) as temporary:
        model.save(temporary)
        if info:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(INFO, json.dumps(info))


def model_info(path):
    """The `info` that `save_model` stored in a ``.keras`` file; {} if none or unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(INFO))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


class ModelFileError(ValueError):
    """A model file that is missing, not a Keras model, or not a generator."""


def load_generator(path, float32=True):
    """Loads a generator (or a `Pix2Pix` model's generator) from a ``.keras`` file, safe mode on.

    `float32` rebuilds a mixed-precision generator in float32; its batch norm layers become the
    package's float32-accurate ones. Raises `ModelFileError`.
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
    shape = () if isinstance(model.input_shape, list) else tuple(model.input_shape)
    if len(shape) != 4 or tuple(model.output_shape)[:3] != shape[:3]:
        raise ModelFileError(
            f"{path}: holds a model {model.name!r} with input {model.input_shape} and output "
            f"{model.output_shape}; expected an image-to-image generator"
        )
    return with_dtype(model, "float32" if float32 else None, batch_norm=BatchNormalization)


def with_dtype(model, dtype=None, batch_norm=None):
    """`model` if every layer computes in `dtype` and every batch norm layer is a `batch_norm`
    (None: any), else a copy that is, with the same weights.

    Example:
    >>> save_model(with_dtype(generator, "float16"), "generator.keras")  # half the file
    """

    def target(layer):
        swap = batch_norm is not None and isinstance(layer, layers.BatchNormalization)
        return batch_norm if swap else type(layer)

    def rebuild(layer):
        config = layer.get_config()
        return target(layer).from_config({**config, "dtype": dtype} if dtype else config)

    if all(target(x) is type(x) and dtype in (None, x.dtype_policy.name) for x in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())  # cast to the copy's variables' dtype
    return copy


FORMATS = {"onnx": "onnx", "litert": "litert", "saved_model": "tf_saved_model"}  # for Model.export


def export(generator, path, format="onnx"):
    """Writes `generator` (float32, inference mode, any batch size) atomically with `Model.export`.

    `format`: "onnx" (needs `tf2onnx` and `onnx`, TensorFlow backend), "litert" (TensorFlow or
    PyTorch backend) or "saved_model"; ``requirements-backends.txt`` lists the packages.
    Returns `path` as a `pathlib.Path`.

    >>> export(load_generator("runs/facades/generator.keras"), "facades.onnx")
    >>> session = onnxruntime.InferenceSession("facades.onnx")
    >>> fake = session.run(None, {session.get_inputs()[0].name: images})[0]
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    path, model = pathlib.Path(path), with_dtype(generator, "float32")
    model(np.zeros((1, *model.input_shape[1:]), "float32"))  # Keras exports called models only
    with atomic_path(path) as temporary:
        model.export(str(temporary), format=FORMATS[format], verbose=False)
    return path
