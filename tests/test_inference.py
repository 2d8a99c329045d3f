"""Test-time modes, translation at any size, safe loading and atomic files."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from p2p_keras.callbacks import LinearDecay, SampleGrid, sample_grid
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import (
    ModelFileError,
    generate,
    load_generator,
    save_model,
    translate,
    translate_files,
)
from p2p_keras.model import Pix2Pix


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    model = build_unet_generator((64, 64, 3), filters=8)
    # Give the moving averages values unlike the batch statistics, as after training (small
    # variances, since the N(0, 0.02) weights shrink activations layer after layer).
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.01, "float32"))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1e-4, "float32"))
    return model


@pytest.fixture
def images():
    return np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")


def test_eval_mode_is_keras_inference_and_deterministic(generator, images):
    a = generate(generator, images, dropout=False, batch_stats=False)
    np.testing.assert_array_equal(a, generator(images, training=False))
    np.testing.assert_array_equal(a, generate(generator, images, dropout=False, batch_stats=False))


def test_paper_mode_has_dropout_noise_and_leaves_moving_averages_alone(generator, images):
    moving = [v for v in generator.non_trainable_variables if "moving" in v.path]
    before = [v.numpy().copy() for v in moving]
    a = generate(generator, images)
    b = generate(generator, images)
    assert np.abs(a - b).max() > 1e-4  # dropout noise
    for old, new in zip(before, moving, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert all(layer.trainable for layer in generator.layers)


def test_seeded_noise_repeats_and_differs_between_seeds(generator, images):
    a, b = generate(generator, images, seed=3), generate(generator, images, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - generate(generator, images, seed=4)).max() > 1e-4


def model_state(model):
    """Every variable's value (weights, moving averages, dropout's random state) and flag."""
    flags = [(layer.name, layer.trainable, getattr(layer, "rate", None)) for layer in model.layers]
    return [v.numpy().copy() for v in model.variables], flags


def test_generate_changes_nothing_in_the_model(generator, images):
    # Guards the model's flags, dropout rates, moving averages and random state from generate().
    (values, flags), seeds = model_state(generator), generator.get_layer("up2_dropout")
    assert any("seed" in v.path for v in generator.non_trainable_variables), "no dropout state"
    for dropout, batch_stats in [(True, True), (False, True), (True, False), (False, False)]:
        generate(generator, images, dropout=dropout, batch_stats=batch_stats)
    after_values, after_flags = model_state(generator)
    assert after_flags == flags and seeds.rate == 0.5
    for before, after in zip(values, after_values, strict=True):
        np.testing.assert_array_equal(before, after)


def tiny_pix2pix():
    keras.utils.set_random_seed(0)
    generator = build_unet_generator((64, 64, 3), filters=4)
    model = Pix2Pix(generator, build_patchgan_discriminator((64, 64, 3), filters=4, patch_size=16))
    model.compile()
    return model


def test_generate_during_fit_leaves_the_training_unchanged(images):
    pairs = tf.data.Dataset.from_tensor_slices((images, -images)).batch(1).repeat()

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            generate(self.model.generator, images[:1])
            generate(self.model.generator, images[:1], dropout=False)

    runs = []
    for callbacks in ([], [Probe(), SampleGrid(images, images, every=1)]):
        model = tiny_pix2pix()
        model.fit(pairs, epochs=2, steps_per_epoch=2, callbacks=callbacks, verbose=0)
        runs.append(model_state(model)[0])
    seeds = [i for i, v in enumerate(model.variables) if "seed" in v.path]
    assert seeds
    for index in seeds:  # the training noise's random state: exactly as without the calls
        np.testing.assert_array_equal(runs[0][index], runs[1][index])
    for plain, probed in zip(*runs, strict=True):
        np.testing.assert_allclose(plain, probed, atol=1e-5)


def test_batch_statistics_without_dropout_are_deterministic_and_differ_from_eval(generator, images):
    a = generate(generator, images, dropout=False, batch_stats=True)
    b = generate(generator, images, dropout=False, batch_stats=True)
    np.testing.assert_allclose(a, b, atol=1e-6)
    eval_mode = generate(generator, images, dropout=False, batch_stats=False)
    assert np.abs(a - eval_mode).max() > 1e-3
    assert generator.get_layer("up2_dropout").rate == 0.5


def test_dropout_with_moving_averages(generator, images):
    """Dropout alone varies the output but, on the moving averages, stays nearer Keras'
    inference than the test batch's statistics do."""
    a = generate(generator, images, dropout=True, batch_stats=False, seed=0)
    b = generate(generator, images, dropout=True, batch_stats=False, seed=1)
    assert np.abs(a - b).max() > 1e-4
    eval_mode = generate(generator, images, dropout=False, batch_stats=False)
    batch_stats = generate(generator, images, dropout=False, batch_stats=True)
    assert np.abs(a - eval_mode).mean() < np.abs(batch_stats - eval_mode).mean()


@pytest.mark.parametrize("shape", [(50, 70, 3), (17, 9), (40, 40, 4)])
def test_translate_returns_the_original_size(generator, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    result = translate(generator, image, dropout=False, batch_stats=False)
    assert result.shape == (*shape[:2], 3) and result.dtype == np.uint8


def test_translate_downscales_with_antialiasing_as_training_does():
    """Guards test-time resizing against aliasing: 1-pixel stripes at 1024 px, shrunk to the
    generator's 48 px as `load_paired` shrinks them, are mean gray, not coarse stripes."""
    inputs = keras.Input((48, 48, 3))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))
    stripes = np.zeros((1024, 1024, 3), np.uint8)
    stripes[:, ::2] = 255
    result = translate(identity, stripes, dropout=False, batch_stats=False)
    assert result.shape == stripes.shape
    assert np.abs(result.astype(int) - 128).max() <= 2


def test_translate_files_paired_takes_the_chosen_half(generator, tmp_path):
    left = np.zeros((64, 64, 3), np.uint8)
    right = np.full((64, 64, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(tmp_path / "pair.jpg")
    a = translate_files(
        generator,
        [tmp_path / "pair.jpg"],
        tmp_path / "a",
        paired=True,
        dropout=False,
        batch_stats=False,
    )
    b = translate_files(
        generator,
        [tmp_path / "pair.jpg"],
        tmp_path / "b",
        paired=True,
        direction="BtoA",
        dropout=False,
        batch_stats=False,
    )
    out_a, out_b = (np.asarray(Image.open(p[0])) for p in (a, b))
    assert out_a.shape == (64, 64, 3) and a[0].name == "pair.png"
    expected_a = translate(generator, left, dropout=False, batch_stats=False)
    np.testing.assert_array_equal(out_a, expected_a)
    assert np.abs(out_a.astype(int) - out_b.astype(int)).max() > 0


def test_load_generator_accepts_generator_or_whole_model(generator, tmp_path):
    generator.save(tmp_path / "g.keras")
    np.testing.assert_array_equal(
        load_generator(tmp_path / "g.keras")(np.zeros((1, 64, 64, 3))),
        generator(np.zeros((1, 64, 64, 3))),
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such model file"),
        (b"not a zip", "not a Keras model"),
        (b"PK\x05\x06" + b"\x00" * 18, "could not be loaded"),
    ],
)
def test_load_generator_names_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as error:
        load_generator(path)
    assert str(path) in str(error.value)


def test_load_generator_refuses_a_model_of_another_kind(tmp_path):
    classifier = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    classifier.save(tmp_path / "classifier.keras")
    with pytest.raises(ModelFileError, match="expected an image-to-image generator"):
        load_generator(tmp_path / "classifier.keras")


def test_save_model_round_trips_and_leaves_no_temporary_file(generator, tmp_path):
    save_model(generator, tmp_path / "sub" / "generator.keras")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["generator.keras"]
    loaded = keras.saving.load_model(tmp_path / "sub" / "generator.keras")
    assert loaded.count_params() == generator.count_params()


def test_sample_grid_rows_are_input_generated_target():
    a, b, c = (np.full((2, 4, 4, 3), v, "float32") for v in (-1.0, 0.0, 1.0))
    grid = sample_grid(a, b, c)
    assert grid.shape == (8, 12, 3)
    assert (grid[:, :4] == 0).all() and (grid[:, 4:8] == 128).all() and (grid[:, 8:] == 255).all()


def test_linear_decay_matches_the_official_rule():
    decay = LinearDecay(n_epochs=100, n_epochs_decay=100)
    factors = [decay.multiplier(epoch) for epoch in range(200)]
    assert factors[:100] == [1.0] * 100
    assert factors[100] == pytest.approx(1 - 1 / 101)
    assert factors[199] == pytest.approx(1 / 101)
    assert all(a > b for a, b in zip(factors[99:-1], factors[100:], strict=True))


def test_linear_decay_starts_from_the_compiled_learning_rates():
    # Guards the compiled rates (1e-4, 3e-4) as the decay's start, not the paper's 2e-4.
    optimizers = [keras.optimizers.Adam(1e-4), keras.optimizers.Adam(3e-4)]
    model = types.SimpleNamespace(
        generator_optimizer=optimizers[0], discriminator_optimizer=optimizers[1]
    )
    decay = LinearDecay(100, 100)
    decay.set_model(model)
    decay.on_train_begin()
    for epoch, factor in [(0, 1.0), (150, 1 - 51 / 101)]:
        decay.on_epoch_begin(epoch)
        rates = [float(optimizer.learning_rate) for optimizer in optimizers]
        assert rates == pytest.approx([1e-4 * factor, 3e-4 * factor])
    decay.on_train_begin()  # a second fit() keeps the base rates, not the decayed ones
    decay.on_epoch_begin(0)
    assert float(optimizers[0].learning_rate) == pytest.approx(1e-4)
    fixed = LinearDecay(100, 100, learning_rate=2e-4)  # a resumed run names its base rate
    fixed.set_model(model)
    fixed.on_train_begin()
    fixed.on_epoch_begin(199)
    assert float(optimizers[1].learning_rate) == pytest.approx(2e-4 / 101)
