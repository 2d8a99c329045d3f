"""The training job end to end on the embedded data: learning, resuming, failing safely, CLI."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from PIL import Image

from p2p_keras.callbacks import NonFiniteLossError, StepBackup
from p2p_keras.data import load_paired
from p2p_keras.inference import load_generator
from p2p_keras.jobs import cli
from p2p_keras.jobs.options import TrainOptions
from p2p_keras.jobs.synthetic import make_synthetic_facades
from p2p_keras.jobs.train import RunExistsError, build_pix2pix, train

SIZE = 64


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic_facades(root, train=16, val=4, test=4, size=SIZE, seed=0)


def quick_train(root, out, **overrides):
    options = {
        "direction": "BtoA",
        "image_size": SIZE,
        "epochs": 2,
        "decay_epochs": 0,
        "steps_per_epoch": 4,
        "seed": 1,
        "verbose": 0,
    }
    options.update(overrides)
    return train(root, out, **options)


def validation_l1(generator, root):
    val = load_paired(root, "val", direction="BtoA", image_size=SIZE, training=False)
    errors = [np.abs(generator(x, training=False) - y).mean() for x, y in val]
    return float(np.mean(errors))


def test_short_fit_lowers_validation_l1(synthetic, tmp_path):
    keras.utils.set_random_seed(1)
    untrained = validation_l1(build_pix2pix(SIZE).generator, synthetic)
    model, history = quick_train(synthetic, tmp_path / "run", steps_per_epoch=40)
    trained = validation_l1(model.generator, synthetic)
    assert trained < 0.85 * untrained, (untrained, trained)
    assert history.history["val_g_l1"][-1] == pytest.approx(trained, rel=1e-4)
    assert history.history["g_l1"][1] < history.history["g_l1"][0]


def test_run_writes_every_output(synthetic, tmp_path):
    out = tmp_path / "run"
    options = TrainOptions(
        data=str(synthetic), image_size=SIZE, epochs=5, decay_epochs=0, steps_per_epoch=4, seed=1
    )
    train(options, out, epochs=2, verbose=0)  # keywords override the options' fields
    for name in ("generator.keras", "pix2pix.keras", "history.csv", "config.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    grid = np.asarray(Image.open(out / "samples" / "epoch_002.png"))
    assert grid.shape == (4 * SIZE, 3 * SIZE, 3)
    # config.json: the options as resolved (direction, load size, precision...), plus replicas
    config = json.loads((out / "config.json").read_text())
    assert config.pop("replicas") == 1
    assert TrainOptions(**config) == dataclasses.replace(
        options, out=str(out), epochs=2, verbose=0, direction="BtoA", load_size=72,
        precision="float32",
    )  # fmt: skip
    assert len((out / "history.csv").read_text().splitlines()) == 3
    state = json.loads((out / "backup" / StepBackup.STATE).read_text())
    assert state["epoch"] == 2 and state["step_in_epoch"] == 0 and state["global_step"] == 8


class Crash(keras.callbacks.Callback):
    """Simulates a crash after a given global step."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_step:
            raise KeyboardInterrupt("simulated crash")


def test_resume_continues_at_the_same_epoch_and_step(synthetic, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        quick_train(synthetic, out, epochs=3, backup_every=1, callbacks=[Crash(6)])
    state = json.loads((out / "backup" / StepBackup.STATE).read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 6)
    with pytest.raises(RunExistsError, match="--resume"):
        quick_train(synthetic, out, epochs=3)
    steps = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    resumed, history = quick_train(
        synthetic, out, epochs=3, backup_every=1, resume=True, callbacks=[counter]
    )
    assert steps == [0, 1, 0, 1, 2, 3]  # the 2 steps left of 4 in epoch 2, then epoch 3
    # The returned history had lost the interrupted epoch's rest (only the last fit's).
    assert history.epoch == [1, 2] and len(history.history["g_l1"]) == 2
    assert int(resumed.generator_optimizer.iterations) == 12
    assert int(resumed.discriminator_optimizer.iterations) == 12
    # Weights equal to an uninterrupted run: tests/test_reliability.py, in fresh processes.


def test_non_finite_loss_stops_and_keeps_the_last_good_backup(synthetic, tmp_path):
    class Poison(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2 and self.params and self.model.generator_optimizer.iterations == 6:
                kernel = self.model.generator.get_layer("down2_conv").kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3") as error:
        quick_train(synthetic, tmp_path / "run", backup_every=1, callbacks=[Poison()])
    assert "--resume" in str(error.value) and "--lr" in str(error.value)
    state = json.loads((tmp_path / "run" / "backup" / StepBackup.STATE).read_text())
    assert state["global_step"] == 6
    assert not (tmp_path / "run" / "pix2pix.keras").exists()
    generator = keras.saving.load_model(tmp_path / "run" / "generator.keras")
    assert all(np.isfinite(w.numpy()).all() for w in generator.weights)


def test_unwritable_output_is_reported_before_training(synthetic, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write to the output folder"):
        quick_train(synthetic, blocker / "run")


def test_train_then_translate_from_the_command_line(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    status = cli.main(
        ["train", "--data", str(synthetic), "--out", str(out), "--epochs", "1",
         "--steps-per-epoch", "2", "--image-size", str(SIZE), "--direction", "BtoA",
         "--filters", "16", "--precision", "mixed_bfloat16", "--mirrored"]
    )  # fmt: skip
    assert status == 0 and (out / "generator.keras").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16" and config["filters"] == 16
    assert config["mirrored"] is True and config["replicas"] == 1  # one CPU: one replica
    saved = keras.saving.load_model(out / "generator.keras")
    assert saved.get_layer("down2_conv").compute_dtype == "bfloat16"
    assert saved.get_layer("down1_conv").kernel.shape[-1] == 16
    # load_generator (translate, evaluate) computes in float32 unless told otherwise.
    loaded = load_generator(out / "generator.keras")
    assert all(layer.compute_dtype == "float32" for layer in loaded.layers)
    assert (
        load_generator(out / "generator.keras", float32=False).get_layer("down2_conv").compute_dtype
        == "bfloat16"
    )
    for a, b in zip(loaded.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype("float32")
    full, half = loaded(x, training=False).numpy(), saved(x, training=False).numpy()
    assert 0 < np.abs(full - half).max() < 0.05  # bfloat16 rounding, nothing more
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120), np.uint8)).save(photo)
    status = cli.main(
        ["translate", "--model", str(out / "generator.keras"), "--out", str(tmp_path / "t"),
         str(photo), "--dropout", "off", "--bn-stats", "moving"]
    )  # fmt: skip
    assert status == 0
    result = Image.open(tmp_path / "t" / "photo.png")
    assert result.size == (120, 90) and result.mode == "RGB"


def test_mirrored_refuses_pytorch_and_batches_that_do_not_split(synthetic, tmp_path, monkeypatch):
    class TwoReplicas:  # stands in for a tf.distribute.Strategy on two devices
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="--batch-size 3 does not split over 2 devices"):
        quick_train(synthetic, tmp_path / "odd", batch_size=3, strategy=TwoReplicas())
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="--mirrored trains on TensorFlow or JAX, not on PyTorch"):
        quick_train(synthetic, tmp_path / "torch", mirrored=True)
    assert not (tmp_path / "odd" / "config.json").exists()


def test_resume_from_a_backup_after_an_epochs_last_step_goes_on_with_the_next_epoch(
    synthetic, tmp_path
):
    quick_train(synthetic, tmp_path, epochs=1, backup_every=2)
    path = tmp_path / "backup" / StepBackup.STATE
    state = json.loads(path.read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 4)
    # A backup of the epoch's last step (as older versions wrote one) before its end.
    path.write_text(json.dumps({**state, "epoch": 0, "step_in_epoch": 4}))
    model, history = quick_train(synthetic, tmp_path, epochs=2, backup_every=2, resume=True)
    assert history.epoch == [1] and int(model.generator_optimizer.iterations.numpy()) == 8


def test_init_generator_starts_g_from_a_file_and_d_from_scratch(synthetic, tmp_path):
    """Fine-tuning: `--init-generator` loads G's weights (a converted official model, or one's
    own); a generator of another shape is refused with a line naming the file."""
    keras.utils.set_random_seed(5)
    source = build_pix2pix(SIZE).generator
    source.save(tmp_path / "init.keras")
    model, _ = quick_train(
        synthetic,
        tmp_path / "run",
        epochs=1,
        steps_per_epoch=1,
        init_generator=str(tmp_path / "init.keras"),
    )
    # One Adam step (about 2e-4 a weight) away from the loaded weights, far from a fresh draw.
    trained, loaded = model.generator.trainable_weights, source.trainable_weights
    moved = [np.abs(a.numpy() - b.numpy()).max() for a, b in zip(trained, loaded, strict=True)]
    assert max(moved) < 1e-3
    fresh = build_pix2pix(SIZE).generator.trainable_weights
    apart = [np.abs(a.numpy() - b.numpy()).max() for a, b in zip(fresh, loaded, strict=True)]
    assert max(apart) > 0.05
    build_pix2pix(SIZE, filters=8).generator.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match=r"other\.keras: its generator .* match --image-size"):
        quick_train(synthetic, tmp_path / "run2", init_generator=str(tmp_path / "other.keras"))
