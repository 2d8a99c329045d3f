"""`Pix2Pix`: one training step, the reported losses, saving and loading."""

import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.losses import discriminator_loss, generator_gan_loss, l1_loss
from p2p_keras.model import GANOptimizer, Pix2Pix
from p2p_keras.optimizers import FusedAdam

SHAPE = (32, 32, 3)


def small_model(conditional=True, seed=0):
    from p2p_keras.generator import build_unet_generator

    keras.utils.set_random_seed(seed)
    return Pix2Pix(
        build_unet_generator(SHAPE, filters=8),
        build_patchgan_discriminator(SHAPE, filters=8, conditional=conditional),
    )


def batch(n=2, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, (n, *SHAPE)).astype("float32")
    return x, np.flip(x, axis=2).copy()


def snapshot(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True)]


def test_compile_refuses_optimizer_loss_and_metrics_instead_of_ignoring_them():
    """`optimizer=Adam(1e-5)` used to train at 2e-4 without a word."""
    model = small_model()
    for name, value in (("optimizer", keras.optimizers.Adam(1e-5)), ("loss", "mae")):
        with pytest.raises(ValueError, match=f"no {name}=.*generator_optimizer="):
            model.compile(**{name: value})


def test_compile_defaults_are_the_papers():
    model = small_model()
    model.compile()
    for optimizer in (model.generator_optimizer, model.discriminator_optimizer):
        assert isinstance(optimizer, FusedAdam)  # keras.optimizers.Adam, fused update
        assert float(optimizer.learning_rate) == pytest.approx(2e-4)
        assert optimizer.beta_1 == 0.5 and optimizer.beta_2 == 0.999
    assert model.generator_optimizer is not model.discriminator_optimizer
    assert model.l1_weight == 100.0 and model.gan_loss == "vanilla"
    assert isinstance(model.optimizer, GANOptimizer)


def test_train_step_updates_both_networks_once():
    model = small_model()
    model.compile()
    g_before = snapshot(model.generator)
    d_before = snapshot(model.discriminator)
    logs = model.train_on_batch(*batch(), return_dict=True)
    assert set(logs) == {"d_loss", "g_loss", "g_gan", "g_l1"}
    assert all(changed(g_before, model.generator.trainable_variables))
    assert all(changed(d_before, model.discriminator.trainable_variables))
    assert int(model.generator_optimizer.iterations) == 1
    assert int(model.discriminator_optimizer.iterations) == 1
    assert logs["g_loss"] == pytest.approx(logs["g_gan"] + 100 * logs["g_l1"], rel=1e-5)


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_each_network_moves_only_through_its_own_optimizer(frozen):
    model = small_model()
    optimizers = {
        "generator": keras.optimizers.SGD(2e-2),
        "discriminator": keras.optimizers.SGD(2e-2),
    }
    optimizers[frozen] = keras.optimizers.SGD(0.0)
    model.compile(optimizers["generator"], optimizers["discriminator"])
    other = "discriminator" if frozen == "generator" else "generator"
    frozen_before = snapshot(getattr(model, frozen))
    other_before = snapshot(getattr(model, other))
    model.train_on_batch(*batch())
    assert not any(changed(frozen_before, getattr(model, frozen).trainable_variables))
    assert all(changed(other_before, getattr(model, other).trainable_variables))


def test_l1_only_leaves_the_discriminator_alone():
    model = small_model()
    model.compile(gan_weight=0.0)
    d_before = snapshot(model.discriminator)
    logs = model.train_on_batch(*batch(), return_dict=True)
    assert not any(changed(d_before, model.discriminator.trainable_variables))
    assert int(model.discriminator_optimizer.iterations) == 0
    assert logs["d_loss"] == 0.0 and logs["g_loss"] == pytest.approx(100 * logs["g_l1"])


def test_model_optimizer_exposes_both_optimizers_variables():
    # Guards model.optimizer after compile(): the JAX trainer carries its variables.
    model = small_model()
    model.compile()
    expected = model.generator_optimizer.variables + model.discriminator_optimizer.variables
    assert [id(v) for v in model.optimizer.variables] == [id(v) for v in expected]
    assert model.optimizer.built and model.optimizer.optimizers == [
        model.generator_optimizer,
        model.discriminator_optimizer,
    ]
    model.train_on_batch(*batch())
    assert int(model.optimizer.iterations) == 1


def test_keras_learning_rate_callbacks_set_both_optimizers():
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-4), keras.optimizers.Adam(3e-4))
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate / 2)
    model.fit(*batch(), batch_size=2, epochs=1, callbacks=[schedule], verbose=0)
    assert float(model.generator_optimizer.learning_rate) == pytest.approx(5e-5)
    assert float(model.discriminator_optimizer.learning_rate) == pytest.approx(1.5e-4)


def test_use_ema_leaves_the_averaged_generator_after_fit():
    # Guards EMA: fit() finalizes both optimizers through model.optimizer.
    # With ema_momentum=1 the average stays at the weights after the first step.
    x, y = batch()
    reference = small_model()
    reference.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    reference.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model = small_model()
    ema = keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=1.0)
    model.compile(ema, keras.optimizers.Adam(1e-3))
    model.fit(x, y, batch_size=2, epochs=3, verbose=0)
    trained, expected = model.generator, reference.generator
    for a, b in zip(trained.trainable_variables, expected.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert any(changed(snapshot(reference.discriminator), model.discriminator.trainable_variables))


def test_l1_only_evaluation_reports_no_adversarial_losses():
    # Guards L1-only validation from reporting the untrained discriminator's losses.
    model = small_model()
    model.compile(gan_weight=0.0)
    x, y = batch()
    history = model.fit(x, y, batch_size=2, validation_data=(x, y), verbose=0).history
    assert history["d_loss"] == history["val_d_loss"] == [0.0]
    assert history["g_gan"] == history["val_g_gan"] == [0.0]
    assert history["val_g_loss"][0] == pytest.approx(100 * history["val_g_l1"][0])


def test_test_step_reports_the_losses_of_inference_mode():
    model = small_model()
    model.compile(l1_weight=10.0)
    x, y = batch()
    logs = model.evaluate(x, y, batch_size=2, return_dict=True, verbose=0)
    x, y = tf.constant(x), tf.constant(y)
    fake = model.generator(x, training=False)
    real_logits = model.discriminator([x, y], training=False)
    fake_logits = model.discriminator([x, fake], training=False)
    assert logs["g_l1"] == pytest.approx(float(l1_loss(y, fake)), rel=1e-5)
    assert logs["g_gan"] == pytest.approx(float(generator_gan_loss(fake_logits)), rel=1e-5)
    assert logs["d_loss"] == pytest.approx(
        float(discriminator_loss(real_logits, fake_logits)), rel=1e-5
    )
    assert logs["g_loss"] == pytest.approx(logs["g_gan"] + 10 * logs["g_l1"], rel=1e-5)


def test_unconditional_discriminator_trains():
    model = small_model(conditional=False)
    model.compile()
    assert not model.conditional
    logs = model.train_on_batch(*batch(), return_dict=True)
    assert np.isfinite(list(logs.values())).all()


def test_call_and_predict_run_the_generator():
    model = small_model()
    model.compile()
    x, _ = batch()
    np.testing.assert_allclose(model.predict(x, verbose=0), model.generator(x), atol=1e-6)


def test_save_and_load_round_trip_keeps_outputs_and_optimizer_state(tmp_path):
    model = small_model()
    model.compile(gan_loss="lsgan", l1_weight=50.0)
    x, y = batch(4)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    path = tmp_path / "run.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Pix2Pix)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded.gan_loss == "lsgan" and loaded.l1_weight == 50.0
    for name in ("generator_optimizer", "discriminator_optimizer"):
        original, restored = getattr(model, name), getattr(loaded, name)
        assert int(restored.iterations) == int(original.iterations) == 4
        for a, b in zip(original.variables, restored.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert int(loaded.generator_optimizer.iterations) == 6


def test_save_and_load_keep_jit_compile_and_steps_per_execution(tmp_path):
    # Guards jit_compile and steps_per_execution in the saved compile config.
    model = small_model()
    model.compile(jit_compile=True, steps_per_execution=3)
    model.save(tmp_path / "run.keras")
    loaded = keras.saving.load_model(tmp_path / "run.keras")
    assert loaded.jit_compile is True and loaded.steps_per_execution == 3


def test_generator_exports_alone_without_the_package(tmp_path):
    """The package's `BatchNormalization` made a saved generator need the package to load."""
    from p2p_keras.inference import generate, load_generator, save_model
    from p2p_keras.layers import BatchNormalization

    model = small_model()
    model.compile()
    save_model(model.generator, tmp_path / "generator.keras")
    with zipfile.ZipFile(tmp_path / "generator.keras") as archive:
        assert "p2p_keras" not in archive.read("config.json").decode()
    generator = keras.saving.load_model(tmp_path / "generator.keras", compile=False)
    x, _ = batch()
    np.testing.assert_array_equal(generator(x), model.generator(x))
    batch_stats = [generate(g, x, dropout=False) for g in (generator, model.generator)]
    np.testing.assert_allclose(*batch_stats, atol=1e-6)
    loaded = load_generator(tmp_path / "generator.keras")
    norms = [layer for layer in loaded.layers if "batchnorm" in layer.name]
    assert norms and all(type(layer) is BatchNormalization for layer in norms)
    np.testing.assert_array_equal(loaded(x), model.generator(x))


def test_mixed_float16_wraps_optimizers_and_keeps_float32_outputs():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_model()
        model.compile()
        assert isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
        x, y = batch()
        logs = model.train_on_batch(x, y, return_dict=True)
        assert model.generator(x).dtype == tf.float32
        assert model.discriminator([x, y]).dtype == tf.float32
        assert np.isfinite(list(logs.values())).all()
    finally:
        keras.config.set_dtype_policy(previous)


def test_mixed_bfloat16_trains_without_loss_scaling():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = small_model()
        model.compile()
        assert not isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.generator.get_layer("down2_conv").compute_dtype == "bfloat16"
        x, y = batch()
        for _ in range(2):
            logs = model.train_on_batch(x, y, return_dict=True)
        assert model.generator(x).dtype == tf.float32
        assert int(model.generator_optimizer.iterations) == 2
        assert np.isfinite(list(logs.values())).all()
    finally:
        keras.config.set_dtype_policy(previous)
