"""Faults injected into real training processes: determinism, SIGKILL and resume, unicode names."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from p2p_keras.data import check_paired, load_paired
from p2p_keras.inference import load_generator
from p2p_keras.jobs.synthetic import make_synthetic_facades

STEPS, EPOCHS = 10, 2


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic_facades(root, train=12, val=2, test=2, size=64, seed=0)


def train_command(data, out, *extra):
    return [
        sys.executable, "-m", "p2p_keras", "train", "--data", str(data), "--out", str(out),
        "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS), "--image-size", "64",
        "--seed", "7", "--deterministic", "--backup-every", "1", *extra,
    ]  # fmt: skip


def run(command):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(path):
    return [w.numpy() for w in keras.saving.load_model(path, compile=False).weights]


@pytest.fixture(scope="module")
def uninterrupted(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run(train_command(synthetic, out, "--verbose", "0"))
    return out


def test_seeded_deterministic_runs_are_bit_identical(synthetic, uninterrupted, tmp_path):
    run(train_command(synthetic, tmp_path / "again", "--verbose", "0"))
    first = weights(uninterrupted / "generator.keras")
    second = weights(tmp_path / "again" / "generator.keras")
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(
    synthetic, uninterrupted, tmp_path
):
    out = tmp_path / "killed"
    state_path = out / "backup" / "state.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = train_command(synthetic, out, "--verbose", "0")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            state = json.loads(state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["global_step"] >= STEPS + 3:  # inside the second epoch
            process.send_signal(signal.SIGKILL)
            killed_at = state["global_step"]
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed"
    assert process.returncode == -signal.SIGKILL
    assert not (out / "pix2pix.keras").exists()

    state = json.loads(state_path.read_text())  # the backup survived the kill intact
    assert state["epoch"] == 1 and 0 < state["step_in_epoch"] < STEPS
    lost = state["global_step"] - killed_at
    assert 0 <= lost <= 1  # at most the step in flight (backups every step)

    run(train_command(synthetic, out, "--resume", "--verbose", "0"))
    for a, b in zip(
        weights(uninterrupted / "generator.keras"), weights(out / "generator.keras"), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
    full = keras.saving.load_model(uninterrupted / "pix2pix.keras")
    resumed = keras.saving.load_model(out / "pix2pix.keras")
    for name in ("generator_optimizer", "discriminator_optimizer"):
        assert int(getattr(resumed, name).iterations) == EPOCHS * STEPS
        assert int(getattr(full, name).iterations) == EPOCHS * STEPS
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch") and len(rows) >= 3


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
