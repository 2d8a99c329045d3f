"""The benchmark: one worker process per mode, ratios against the tutorial's loop, a table."""

import argparse
import json

import pytest
import tensorflow as tf

from p2p_keras.jobs import bench
from p2p_keras.jobs.options import TrainOptions


def test_bench_command_prints_a_table_with_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = "--image-size 64 --filters 8 --steps 2 --warmup 1 --modes tutorial fit --json".split()
    parser = bench.add_arguments(argparse.ArgumentParser())
    status = bench.run_from_args(parser.parse_args([*argv, str(out)]))
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "vs tutorial" in printed and "peak RSS" in printed
    assert "CPU:" in printed and "GPU:" in printed
    report = json.loads(out.read_text())
    results = {r["mode"]: r for r in report["results"]}
    assert set(results) == {"tutorial", "fit"}
    assert results["tutorial"]["ratio"] == pytest.approx(1.0)
    fit = results["fit"]
    assert fit["ratio"] > 0 and fit["images_per_s"] > 0 and len(fit["step_times"]) == 2
    assert fit["images_per_s"] == pytest.approx(1 / fit["s_per_step"])
    assert fit["cpu_ratio"] > 0 and fit["peak_rss_mb"] > 100 and fit["backend"] == "tensorflow"
    assert (report["config"]["image_size"], report["config"]["filters"]) == (64, 8)
    if not tf.config.list_physical_devices("GPU"):
        assert fit["jit_compile"] is False  # jit_compile="auto" is off on a CPU
    assert f"{fit['ratio']:.2f}x" in printed
    assert bench.format_table(report) in printed


def test_run_benchmark_rejects_unknown_modes():
    with pytest.raises(ValueError, match="unknown mode"):
        bench.run_benchmark(TrainOptions(image_size=64), modes=["tutorial", "warp-speed"])


def test_a_failing_worker_is_reported_not_raised():
    result = bench.run_worker({"mode": "fit", "image_size": 64})  # no batch_size: KeyError
    assert result["mode"] == "fit" and "KeyError" in result["error"]


def test_backends_that_are_not_installed_are_skipped_with_a_note():
    report = bench.run_benchmark(TrainOptions(image_size=64), (), ("no_such_backend",))
    assert report["results"] == [] and "no_such_backend: not installed" in report["notes"][0]
    report["results"].append({"mode": "fit", "error": "worker exited with 1:\nKeyError: 'x'"})
    table = bench.format_table(report)
    assert "fit              FAILED: KeyError: 'x'" in table
    assert "backend no_such_backend: not installed (pip install no_such_backend)" in table
