"""`export`: each exported file, run by its own runtime, reproduces the Keras generator."""

import subprocess
import sys

import numpy as np
import pytest

from p2p_keras.inference import export

INSTALL = "pip install -r requirements-backends.txt"


@pytest.fixture(scope="module")
def generator_and_images():
    import keras

    from p2p_keras.generator import build_unet_generator

    keras.utils.set_random_seed(0)
    generator = build_unet_generator((32, 32, 3), filters=8)
    for layer in generator.layers:  # batch-norm statistics away from (0, 1), as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, "float32"))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 0.5, "float32"))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    return generator, images, np.asarray(generator(images, training=False))


def test_onnx_runs_in_onnxruntime(generator_and_images, tmp_path):
    pytest.importorskip("tf2onnx", reason=f"tf2onnx is not installed: {INSTALL}")
    onnxruntime = pytest.importorskip("onnxruntime", reason=f"no onnxruntime: {INSTALL}")
    generator, images, expected = generator_and_images
    path = export(generator, tmp_path / "generator.onnx", format="onnx")
    session = onnxruntime.InferenceSession(str(path))
    (generated,) = session.run(None, {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(generated, expected, atol=1e-4)


def test_litert_runs_in_the_litert_interpreter(generator_and_images, tmp_path):
    interpreter = pytest.importorskip(
        "ai_edge_litert.interpreter", reason=f"ai-edge-litert is not installed: {INSTALL}"
    )
    generator, images, expected = generator_and_images
    path = export(generator, tmp_path / "generator.tflite", format="litert")
    runner = interpreter.Interpreter(model_path=str(path)).get_signature_runner()
    generated = [
        next(iter(runner(**{_input_name(runner): image[None]}).values())) for image in images
    ]
    np.testing.assert_allclose(np.concatenate(generated), expected, atol=1e-4)


def _input_name(runner):
    (name,) = runner.get_input_details()
    return name


def test_saved_model_runs_in_tensorflow(generator_and_images, tmp_path):
    import tensorflow as tf

    generator, images, expected = generator_and_images
    path = export(generator, tmp_path / "generator", format="saved_model")
    loaded = tf.saved_model.load(str(path))  # kept: serve() needs its variables alive
    np.testing.assert_allclose(loaded.serve(images), expected, atol=1e-4)
    export(generator, path, format="saved_model")  # replaces the folder, leaves nothing else
    assert [p.name for p in tmp_path.iterdir()] == ["generator"]


def test_the_public_export_is_the_function_whatever_was_imported_first():
    """Guards `p2p_keras.export` (and every public name) against a submodule of the same name,
    which replaces the function once something imports it."""
    code = (
        "import importlib, types, p2p_keras as p2p\n"
        "for module in sorted(set(p2p._EXPORTS.values())):\n"
        "    importlib.import_module(module)\n"
        "modules = [n for n in p2p._EXPORTS if isinstance(getattr(p2p, n), types.ModuleType)]\n"
        "assert callable(p2p.export) and not modules, modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unknown_format_is_refused_before_writing(generator_and_images, tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        export(generator_and_images[0], tmp_path / "generator.pb", format="pb")
    assert not list(tmp_path.iterdir())


def test_export_command_writes_an_onnx_file_that_reproduces_the_saved_generator(
    generator_and_images, tmp_path, capsys
):
    pytest.importorskip("tf2onnx", reason=f"tf2onnx is not installed: {INSTALL}")
    onnxruntime = pytest.importorskip("onnxruntime", reason=f"no onnxruntime: {INSTALL}")
    from p2p_keras.jobs import cli

    generator, images, expected = generator_and_images
    generator.save(tmp_path / "generator.keras")
    out = tmp_path / "generator.onnx"
    argv = ["export", "--model", str(tmp_path / "generator.keras"), "--out", str(out)]
    assert cli.main([*argv, "--format", "onnx"]) == 0
    assert str(out) in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out))
    (generated,) = session.run(None, {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(generated, expected, atol=1e-4)
