"""The fast paths train correctly: mixed precision, XLA and MirroredStrategy.

These tests check correctness, not speed (timings on a shared CI machine mean little); the
speed itself is what ``python -m p2p_keras bench`` measures.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from p2p_keras import precision
from p2p_keras.jobs.train import build_pix2pix
from p2p_keras.optimizers import FusedAdam
from p2p_keras.precision import resolve_precision

SIZE = 32  # a 5-level U-Net


def tiny_model(seed=0, **options):
    keras.utils.set_random_seed(seed)
    return build_pix2pix(SIZE, filters=8, **options)


def data(n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32")
    return x, np.flip(x, axis=2).copy()  # a learnable target: the mirrored input


def dataset(batch_size=2, n=4):
    return tf.data.Dataset.from_tensor_slices(data(n)).batch(batch_size)


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test and always restores the previous one."""
    previous = keras.config.dtype_policy()

    def set_policy(name):
        keras.config.set_dtype_policy(name)

    yield set_policy
    keras.config.set_dtype_policy(previous)


def test_mixed_bfloat16_fit_trains_and_keeps_float32_outputs(policy):
    policy("mixed_bfloat16")
    model = tiny_model()
    model.compile()
    assert not isinstance(model.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    conv = model.generator.get_layer("down2_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    before = [v.numpy().copy() for v in model.generator.trainable_variables]
    history = model.fit(dataset().repeat(), epochs=2, steps_per_epoch=3, verbose=0, shuffle=False)
    x, y = data(2)
    assert model.generator(x).dtype == tf.float32  # tanh output layer stays float32
    assert model.discriminator([x, y]).dtype == tf.float32  # so do the logits
    for key in ("d_loss", "g_loss", "g_l1"):
        assert np.isfinite(history.history[key]).all(), history.history
    assert history.history["g_l1"][-1] < history.history["g_l1"][0]
    assert int(model.generator_optimizer.iterations.numpy()) == 6
    moved = [
        not np.array_equal(b, v.numpy())
        for b, v in zip(before, model.generator.trainable_variables, strict=True)
    ]
    assert all(moved)
    assert all(v.dtype == "float32" for v in model.trainable_variables)


def test_mixed_float16_fit_uses_loss_scaling_and_trains(policy):
    policy("mixed_float16")
    model = tiny_model()
    model.compile()
    for optimizer in (model.generator_optimizer, model.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(optimizer.inner_optimizer, FusedAdam)
    history = model.fit(dataset().repeat(), epochs=2, steps_per_epoch=3, verbose=0, shuffle=False)
    for key in ("d_loss", "g_loss", "g_gan", "g_l1"):
        assert np.isfinite(history.history[key]).all(), history.history
    x, _ = data(2)
    assert model.generator(x).dtype == tf.float32
    # Dynamic loss scaling may skip a step whose scaled gradients overflowed, never more.
    assert 5 <= int(model.generator_optimizer.iterations.numpy()) <= 6
    assert np.isfinite(float(model.generator_optimizer.dynamic_scale.numpy()))


def test_xla_fit_gives_the_same_losses_and_weights_as_plain_fit():
    runs = []
    for jit_compile in (False, True):
        model = tiny_model(dropout=0.0)  # no random ops: XLA's RNG may differ from TF's
        model.compile(jit_compile=jit_compile)
        history = model.fit(dataset(), epochs=3, verbose=0, shuffle=False)
        assert model.jit_compile is jit_compile
        runs.append((history.history, [v.numpy() for v in model.trainable_variables]))
    (plain, plain_weights), (xla, xla_weights) = runs
    for key in ("d_loss", "g_loss", "g_gan", "g_l1"):
        np.testing.assert_allclose(xla[key], plain[key], rtol=1e-3, atol=1e-5, err_msg=key)
    for a, b in zip(plain_weights, xla_weights, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)


# Runs in a fresh interpreter: the CPU must be split into logical devices before TensorFlow
# initialises, which pytest's process has long done.
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from p2p_keras.optimizers import default_optimizer
    from p2p_keras.jobs.train import build_pix2pix

    SIZE, GLOBAL_BATCH = 32, 4
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype("float32")
    y = np.flip(x, axis=2).copy()

    def run(strategy, norm, optimizer):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = build_pix2pix(SIZE, filters=8, norm=norm, dropout=0.0)
            model.compile(optimizer(), optimizer())
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
        history = model.fit(ds, epochs=2, verbose=0, shuffle=False)
        weights = [v.numpy() for v in model.trainable_variables]
        return history.history, weights, int(model.generator_optimizer.iterations.numpy())

    def compare(single_run, mirrored_run):
        (single, single_w, single_it), (multi, multi_w, multi_it) = single_run, mirrored_run
        return {
            "single": single, "mirrored": multi,
            "iterations": [single_it, multi_it],
            "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(single_w, multi_w)),
        }

    # SGD, not Adam: Adam's step hardly depends on the gradient's scale, so it would hide
    # gradients summed over replicas without the 1 / replicas scaling.
    sgd = lambda: keras.optimizers.SGD(0.01)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = tf.distribute.get_strategy()
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        # Instance norm: per-replica statistics equal global ones.
        "instance_sgd": compare(run(default, "instance", sgd), run(mirrored, "instance", sgd)),
        # Synchronized batch norm on 2 replicas x 2 images = batch norm on 4 images, with the
        # package's fused Adam (measured 4e-7; plain "batch" on the replicas: 2e-3).
        "sync_batch_adam": compare(
            run(default, "batch", default_optimizer), run(mirrored, "sync_batch", default_optimizer)
        ),
    }))
    """
)


def run_script(script, *args):
    """Runs `script` in a fresh interpreter and returns the JSON of its last output line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_on_two_cpus_matches_single_device_fit():
    result = run_script(MIRRORED_SCRIPT)
    assert result["replicas"] == 2
    for case, tolerance in (("instance_sgd", 1e-6), ("sync_batch_adam", 1e-5)):
        run = result[case]
        assert run["iterations"] == [4, 4], case  # 2 epochs x 2 global batches, one update each
        for key in ("d_loss", "g_loss", "g_gan", "g_l1"):
            np.testing.assert_allclose(
                run["mirrored"][key], run["single"][key], rtol=1e-4, err_msg=f"{case} {key}"
            )
        assert run["max_weight_diff"] < tolerance, (case, run["max_weight_diff"])


def test_resolve_precision_picks_bfloat16_only_on_cpus_that_have_it(monkeypatch):
    model, flags = precision.cpu_info()
    assert isinstance(model, str) and model and isinstance(flags, set)
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", {"avx2", "avx512_bf16"}))
    assert resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_info", lambda: ("cpu", {"avx2", "avx512f"}))
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(precision, "has_gpu", lambda: True)
    assert resolve_precision("auto") == "mixed_float16"
    assert resolve_precision("float32") == "float32"
    assert resolve_precision(None) == "float32"  # the global policy
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("float8")


def test_build_pix2pix_precision_leaves_the_global_policy_alone():
    model = tiny_model(precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    conv = model.generator.get_layer("down2_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    x, y = data(2)
    assert model.generator(x).dtype == tf.float32
    assert model.discriminator([x, y]).dtype == tf.float32
    model.compile()
    assert isinstance(model.generator_optimizer, FusedAdam)  # bfloat16 needs no loss scaling

    half = tiny_model(precision="mixed_float16")
    half.compile()  # float16 networks get loss scaling even under a float32 global policy
    assert isinstance(half.generator_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(half.discriminator_optimizer, keras.optimizers.LossScaleOptimizer)

    with pytest.raises(ValueError, match="patch_size"):  # a failed build restores it too
        tiny_model(precision="mixed_float16", patch_size=3)
    assert keras.config.dtype_policy().name == "float32"


TRAIN_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from p2p_keras.jobs.synthetic import make_synthetic_facades
    from p2p_keras.jobs.train import train

    root = make_synthetic_facades(sys.argv[1] + "/data", train=8, val=2, test=2, size=32, seed=0)
    out = sys.argv[1] + "/run"

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.generator_optimizer.iterations.numpy()) == 4:
                raise KeyboardInterrupt

    def run(**options):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        return train(
            root, out, strategy=strategy, epochs=2, decay_epochs=0, steps_per_epoch=3,
            batch_size=2, image_size=32, filters=8, norm="sync_batch", seed=0, backup_every=1,
            verbose=0, **options,
        )

    try:
        run(callbacks=[Crash()])
    except KeyboardInterrupt:
        pass
    model, history = run(resume=True)
    with open(out + "/config.json") as f:
        config = json.load(f)
    print(json.dumps({
        "iterations": [int(model.generator_optimizer.iterations.numpy()),
                       int(model.discriminator_optimizer.iterations.numpy())],
        "replicas": config["replicas"],
        "g_l1": history.history["g_l1"],
        "saved": os.path.isfile(out + "/generator.keras"),
    }))
    """
)


def test_train_under_mirrored_strategy_resumes_after_a_crash(tmp_path):
    result = run_script(TRAIN_MIRRORED_SCRIPT, str(tmp_path))
    assert result["replicas"] == 2
    assert result["iterations"] == [6, 6]  # 2 epochs x 3 steps, the crash lost none
    assert result["saved"] and all(np.isfinite(result["g_l1"]))
