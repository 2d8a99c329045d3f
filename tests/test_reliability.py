"""Faults injected into training: determinism, SIGKILL and resume, damaged backups, names."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from p2p_keras.callbacks import BackupError, StepBackup
from p2p_keras.data import check_paired, load_paired
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.generator import build_unet_generator
from p2p_keras.inference import load_generator
from p2p_keras.jobs.synthetic import make_synthetic_facades
from p2p_keras.model import Pix2Pix

STEPS, EPOCHS = 4, 3
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic_facades(root, train=12, val=2, test=2, size=64, seed=0)


def train_command(data, out, *extra):
    return [
        sys.executable, "-m", "p2p_keras", "train", "--data", str(data), "--out", str(out),
        "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS), "--image-size", "64",
        "--filters", "8", "--seed", "7", "--deterministic", "--verbose", "2", *extra,
    ]  # fmt: skip


def run(command, env=ENV):
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(path):
    return [w.numpy() for w in keras.saving.load_model(path, compile=False).weights]


def assert_same_run(expected, got):
    """Bit-identical weights, batch-norm statistics and optimizer state; the same step count."""
    for name in ("generator.keras", "pix2pix.keras"):
        for a, b in zip(weights(expected / name), weights(got / name), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    resumed = keras.saving.load_model(got / "pix2pix.keras")
    for name in ("generator_optimizer", "discriminator_optimizer"):
        assert int(getattr(resumed, name).iterations.numpy()) == EPOCHS * STEPS
    rows = (got / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch") and len(rows) >= 3


@pytest.fixture(scope="module")
def uninterrupted(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run(train_command(synthetic, out))
    return out


def test_seeded_deterministic_runs_are_bit_identical(synthetic, uninterrupted, tmp_path):
    run(train_command(synthetic, tmp_path / "again", "--backup-every", "1"))
    assert_same_run(uninterrupted, tmp_path / "again")


def kill_when(command, ready, timeout=1800, env=ENV):
    """Starts `command`, SIGKILLs it once `ready(output so far)` holds; returns that output."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(process.stdout.fileno(), False)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        output += process.stdout.read() or b""
        if ready(output.decode(errors="replace")):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return output.decode(errors="replace")


def read_state(out):
    try:
        return json.loads((out / "backup" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(
    synthetic, uninterrupted, tmp_path
):
    # The resumed run calls fit() twice (the rest of the epoch, then whole epochs); a second
    # iterator over one tf.data pipeline reshuffled and re-jittered, so batches differed.
    out = tmp_path / "killed"
    command = train_command(synthetic, out, "--backup-every", "1")
    kill_when(command, lambda _: read_state(out).get("global_step", 0) >= STEPS + 2)
    assert not (out / "pix2pix.keras").exists()
    state = read_state(out)  # the backup survived the kill intact
    assert state["epoch"] == 1 and 2 <= state["step_in_epoch"] < STEPS
    run(train_command(synthetic, out, "--backup-every", "1", "--resume"))
    assert_same_run(uninterrupted, out)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_resume_mid_epoch_at_the_exact_step(synthetic, backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed: pip install -r requirements-backends.txt")
    env = {**ENV, "KERAS_BACKEND": backend}
    run(train_command(synthetic, tmp_path / "full"), env)
    out = tmp_path / "killed"
    command = train_command(synthetic, out, "--backup-every", "1")
    kill_when(command, lambda _: read_state(out).get("global_step", 0) >= STEPS + 2, env=env)
    assert read_state(out)["epoch"] == 1 and not (out / "pix2pix.keras").exists()
    run(train_command(synthetic, out, "--backup-every", "1", "--resume"), env)
    assert json.loads((out / "config.json").read_text())["resume"] is True
    assert_same_run(tmp_path / "full", out)


def test_sigkill_after_an_epoch_end_backup_then_resume_matches_an_uninterrupted_run(
    synthetic, uninterrupted, tmp_path
):
    # Guards the resumed run's dropout noise: the sample grid after the backup leaves it alone.
    out = tmp_path / "killed"
    kill_when(train_command(synthetic, out), lambda output: "Epoch 2/" in output)
    assert read_state(out) | {"seeds": None, "weights": None} == {
        "epoch": 1, "step_in_epoch": 0, "global_step": STEPS, "seeds": None, "weights": None,
    }  # fmt: skip
    assert (out / "samples" / "epoch_001.png").exists()
    run(train_command(synthetic, out, "--resume"))
    assert_same_run(uninterrupted, out)


def tiny_model(**compile_options):
    keras.utils.set_random_seed(0)
    generator = build_unet_generator((64, 64, 3), filters=4)
    model = Pix2Pix(generator, build_patchgan_discriminator((64, 64, 3), filters=4, patch_size=16))
    model.compile(**compile_options)
    return model


@pytest.fixture(scope="module")
def pairs():
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, -x)).batch(1).repeat()


def recording(backup, model):
    """Makes `backup` record (epoch, step_in_epoch, global_step, optimizer steps) per save."""
    saves, save = [], backup.save

    def record(epoch, step_in_epoch):
        iterations = int(model.generator_optimizer.iterations.numpy())
        saves.append((epoch, step_in_epoch, backup.global_step, iterations))
        save(epoch, step_in_epoch)

    backup.save = record
    return saves


def test_step_backup_counts_steps_with_steps_per_execution(pairs, tmp_path):
    # Guards the step count when Keras calls on_train_batch_end once per steps_per_execution.
    # Backups every 2 steps, 2 epochs of 4 steps, crash at 6.
    model = tiny_model(steps_per_execution=2)
    backup = StepBackup(tmp_path, every=2)
    saves = recording(backup, model)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if backup.global_step == 6:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(pairs, epochs=2, steps_per_epoch=4, callbacks=[backup, Crash()], verbose=0)
    # No backup at an epoch's last step: the epoch end's follows (a kill in between resumed
    # into a zero-step epoch, which Keras reads as "no limit").
    assert saves == [(0, 2, 2, 2), (1, 0, 4, 4), (1, 2, 6, 6)]
    # Resume the rest of epoch 2 (2 steps) as the train job does: the steps continue at 6.
    model = tiny_model(steps_per_execution=2)
    state = StepBackup.restore(model, tmp_path)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 6)
    backup = StepBackup(tmp_path, every=2, initial_step=6)
    saves = recording(backup, model)
    model.fit(pairs, initial_epoch=1, epochs=2, steps_per_epoch=2, callbacks=[backup], verbose=0)
    assert saves == [(2, 0, 8, 8)]


def test_damaged_backups_fall_back_to_the_previous_one_or_say_what_to_do(pairs, tmp_path):
    # Guards --resume against a damaged backup file: the previous one, or a message saying why.
    model = tiny_model()
    model.fit(
        pairs, epochs=1, steps_per_epoch=3, callbacks=[StepBackup(tmp_path / "b", 2)], verbose=0
    )
    final = [v.numpy() for v in model.variables]
    copies = {name: tmp_path / name for name in ("json", "h5", "both", "alone")}
    for copy in copies.values():
        shutil.copytree(tmp_path / "b", copy)
    assert StepBackup.restore(fresh := tiny_model(), copies["json"])["global_step"] == 3
    for a, b in zip(final, [v.numpy() for v in fresh.variables], strict=True):
        np.testing.assert_array_equal(a, b)  # the whole state, dropout's random state included

    (copies["json"] / "state.json").write_text('{"epoch": 1, "weights"')
    newest = "step_000000003.weights.h5"
    for name in ("h5", "both", "alone"):
        with open(copies[name] / newest, "r+b") as file:
            file.truncate(1000)
    (copies["both"] / "state.prev.json").write_text("{broken")
    (copies["alone"] / "state.prev.json").unlink()
    for name, damaged in (("json", "state.json"), ("h5", newest)):
        with pytest.warns(UserWarning, match=f"{damaged} is damaged.*previous backup"):
            state = StepBackup.restore(tiny_model(), copies[name])
        assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 2, 2)
    for name, files in (("both", [newest, "state.prev.json"]), ("alone", [newest])):
        with pytest.raises(BackupError) as error:
            StepBackup.restore(tiny_model(), copies[name])
        message = str(error.value)
        assert isinstance(error.value, ValueError)
        assert all(str(copies[name] / file) in message for file in files), message
        assert message.endswith(f"delete the backup folder {copies[name]} to restart the run")
    assert StepBackup.restore(tiny_model(), tmp_path / "missing") is None


def test_unicode_and_spaced_file_names(tmp_path):
    split = tmp_path / "données" / "train"
    split.mkdir(parents=True)
    pair = np.zeros((16, 32, 3), np.uint8)
    pair[:, 16:] = 200
    Image.fromarray(pair).save(split / "façade n°1 é.png")
    assert check_paired(tmp_path / "données") == []
    (x, y), *_ = load_paired(tmp_path / "données", "train", image_size=16, training=False)
    assert float(x.numpy().max()) == -1.0 and float(y.numpy().min()) > 0.5


def test_translate_refuses_a_file_that_is_not_a_generator(tmp_path, uninterrupted):
    run([sys.executable, "-m", "p2p_keras", "--help"])
    bogus = tmp_path / "model.keras"
    bogus.write_text("hello")
    result = subprocess.run(
        [sys.executable, "-m", "p2p_keras", "translate", "--model", str(bogus), "--out",
         str(tmp_path / "o"), str(bogus)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bogus}: not a Keras model (.keras files are zip archives)"
    )
    assert load_generator(uninterrupted / "generator.keras").output_shape == (None, 64, 64, 3)
