"""A trained generator, exported for inference runtimes: ONNX, LiteRT or a TF SavedModel."""

import pathlib

import numpy as np

from p2p_keras.data import atomic_path
from p2p_keras.optimizers import as_float32

# Our names for the formats of Keras' `Model.export`.
FORMATS = {"onnx": "onnx", "litert": "litert", "saved_model": "tf_saved_model"}


def export(generator, path, format="onnx"):
    """Writes `generator` to `path` through Keras' own `Model.export`.

    The exported function takes float32 images in [-1, 1] of the generator's input size (any
    batch size) and returns the generator's output in inference mode: batch-norm moving
    statistics, no dropout. A mixed-precision generator is exported in float32. The file (or
    SavedModel folder) is written atomically. ONNX needs `tf2onnx` and `onnx` on the
    TensorFlow backend; LiteRT needs the TensorFlow or PyTorch backend (and `ai-edge-litert`
    to run the file); `pip install -r requirements-backends.txt` installs them.

    Args:
        generator: a `keras.Model` from images to images, e.g. from `load_generator`.
        path: the ``.onnx`` or ``.tflite`` file, or the SavedModel folder.
        format: "onnx" (onnxruntime), "litert" (the LiteRT interpreter, formerly TFLite) or
            "saved_model" (TensorFlow Serving, `tf.saved_model.load`).

    Returns:
        `path`, as a `pathlib.Path`.

    Example:
    >>> export(load_generator("runs/facades/generator.keras"), "facades.onnx")
    >>> session = onnxruntime.InferenceSession("facades.onnx")
    >>> fake = session.run(None, {session.get_inputs()[0].name: images})[0]
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    path, model = pathlib.Path(path), as_float32(generator)
    model(np.zeros((1, *model.input_shape[1:]), "float32"))  # Keras exports called models only
    with atomic_path(path) as temporary:
        model.export(str(temporary), format=FORMATS[format], verbose=False)
    return path
