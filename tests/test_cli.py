"""The command line: help before TensorFlow, one-line errors, options once."""

import dataclasses
import json
import subprocess
import sys

import pytest
from PIL import Image

from p2p_keras.jobs import cli
from p2p_keras.jobs.options import TrainOptions, add_arguments

COMMANDS = ("train", "translate", "evaluate", "ablate", "bench", "make-synthetic", "check-data",
            "combine", "download", "export")  # fmt: skip


def run_python(code, *args, timeout=600):  # generous: a loaded machine imports slowly
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- help before TensorFlow


def test_help_and_argument_errors_answer_before_tensorflow():
    script = f"""
import contextlib, io, json, sys
from p2p_keras.jobs import cli
codes = {{}}
for argv in [["--help"], *([c, "--help"] for c in {COMMANDS!r}), ["train", "--epochs", "x"],
             ["ablate", "--study", "lr"], []]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit as exit:
            codes[" ".join(argv)] = exit.code
print(json.dumps({{"codes": codes, "tensorflow": "tensorflow" in sys.modules,
                  "keras": "keras" in sys.modules}}))
"""
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tensorflow"] is False and report["keras"] is False
    codes = report["codes"]
    assert codes["--help"] == 0 and all(codes[f"{c} --help"] == 0 for c in COMMANDS)
    assert codes["train --epochs x"] == 2 and codes["ablate --study lr"] == 2 and codes[""] == 2


def test_python_m_help_prints_no_tensorflow_start_up_lines():
    result = run_python(None, "-m", "p2p_keras", "--help")
    assert result.returncode == 0 and "COMMAND" in result.stdout
    for line in (result.stdout + result.stderr).lower().splitlines():
        assert not any(word in line for word in ("tensorflow", "onednn", "cuda")), line


# --------------------------------------------------------------------------- options, once


def _other_value(field):
    """A value for `field` that is not its default, and its command-line spelling."""
    choices = field.metadata["choices"]
    if isinstance(field.default, bool):
        return not field.default, []
    if choices:
        value = next(c for c in choices if c != field.default and c is not None)
        return value, [str(value).lower() if isinstance(value, bool) else str(value)]
    if field.name in ("image_size", "load_size"):
        return (32, 64), ["32x64"]
    if isinstance(field.default, float):
        return 0.5, ["0.5"]
    if isinstance(field.default, int) or field.metadata["parse"] is int:
        return 7, ["7"]
    return "somewhere", ["somewhere"]  # data, out, data_dir


def test_every_train_option_is_one_flag_that_round_trips():
    parser = add_arguments(cli.argparse.ArgumentParser())
    flags = {action.dest: action.option_strings for action in parser._actions}
    argv, expected = [], {}
    for field in dataclasses.fields(TrainOptions):
        assert field.metadata["help"], field.name
        value, words = _other_value(field)
        flag = flags[field.name][0]
        argv += [f"--no-{flag[2:]}" if value is False else flag, *words]
        expected[field.name] = value
    assert flags["learning_rate"] == ["--lr"]
    options = TrainOptions.from_args(parser.parse_args(argv))
    assert options == TrainOptions(**expected)
    assert TrainOptions.from_args(parser.parse_args([])) == TrainOptions()
    assert TrainOptions.from_args(parser.parse_args(["--norm", "none"])).norm is None


def test_train_options_check_their_choices():
    with pytest.raises(ValueError, match="norm must be one of"):
        TrainOptions(norm="group")
    with pytest.raises(ValueError, match="patch_size must be one of"):
        TrainOptions(patch_size=71)
    assert dataclasses.replace(TrainOptions(), patch_size=16).patch_size == 16


# --------------------------------------------------------------------------- one-line errors


def _main(capsys, argv):
    status = cli.main(argv)
    err = capsys.readouterr().err
    return status, err


def test_missing_files_are_one_line(tmp_path, capsys):
    status, err = _main(capsys, ["check-data", str(tmp_path / "nothing")])
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: ")
    assert str(tmp_path / "nothing") in err


def test_refused_download_is_one_line(tmp_path, capsys, monkeypatch):
    from p2p_keras.jobs import datasets

    def tampered(name, data_dir, manual_dir=None):
        raise datasets.IntegrityError(f"{manual_dir}/facades.tar.gz: sha256 mismatch train/1.jpg")

    monkeypatch.setattr(datasets, "download", tampered)
    status, err = _main(capsys, ["download", "facades", "--manual-dir", str(tmp_path)])
    assert (status, err) == (1, f"error: {tmp_path}/facades.tar.gz: sha256 mismatch train/1.jpg\n")


def test_a_bug_still_shows_its_trace(monkeypatch):
    from p2p_keras.jobs import datasets

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(datasets, "download", broken)
    with pytest.raises(KeyError):
        cli.main(["download", "facades"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from p2p_keras.jobs.synthetic import make_synthetic_facades

    root = tmp_path_factory.mktemp("cli") / "data"
    return make_synthetic_facades(root, train=2, val=1, test=1, size=32, seed=0)


def _train_argv(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--image-size", "32",
            "--filters", "8", "--epochs", "1", "--steps-per-epoch", "1", "--verbose", "0",
            *extra]  # fmt: skip


def test_damaged_backup_is_one_line_naming_the_file(tiny, tmp_path, capsys):
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    (backup / "state.json").write_text('{"epoch": 1, ')  # cut off mid-write
    status, err = _main(capsys, _train_argv(tiny, tmp_path / "run", "--resume"))
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: ")
    assert str(backup / "state.json") in err
    status, err = _main(capsys, _train_argv(tiny, tmp_path / "run"))  # without --resume
    assert status == 1 and "--resume" in err and err.count("\n") == 1


def test_bad_image_is_reported_without_a_trace(tiny, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    broken = sorted((data / "train").iterdir())[0]
    broken.write_bytes(b"not an image")
    status, err = _main(capsys, _train_argv(data, tmp_path / "run"))
    assert status == 1 and err.startswith("error: ") and broken.name in err
    assert "Traceback" not in err


def test_errors_end_in_one_line_from_a_real_process(tmp_path):
    missing = tmp_path / "none.keras"
    result = run_python(
        None, "-m", "p2p_keras", "translate", "--model", str(missing), "--out", "x", "a.png"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {missing}: no such model file"


# --------------------------------------------------------------------------- data commands


def test_data_commands_write_check_and_combine(tmp_path, capsys):
    out = tmp_path / "synthetic"
    argv = ["--train", "2", "--val", "1", "--test", "1", "--size", "32"]
    assert cli.main(["make-synthetic", "--out", str(out), *argv]) == 0
    assert len(list((out / "train").iterdir())) == 2
    assert cli.main(["check-data", str(out)]) == 0
    for side in ("A", "B"):
        (tmp_path / side / "train").mkdir(parents=True)
    for path in sorted((out / "train").iterdir()):
        for side, box in (("A", (0, 0, 32, 32)), ("B", (32, 0, 64, 32))):
            with Image.open(path) as pair:
                pair.crop(box).save(tmp_path / side / "train" / path.name)
    capsys.readouterr()
    status = cli.main(["combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    assert status == 0 and capsys.readouterr().out.strip() == "train: 2"
    (tmp_path / "AB" / "train" / "extra.jpg").write_bytes(b"not an image")
    assert cli.main(["check-data", str(tmp_path / "AB")]) == 1
    assert "extra.jpg" in capsys.readouterr().out
