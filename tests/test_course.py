"""The course's shared helpers: the showcase files and the CPU budget of full mode."""

import functools
import hashlib
import http.server
import threading

import pytest

from p2p_keras import course, project_dir


def test_the_showcase_checksums_are_those_of_the_committed_files():
    for name, sha256 in course.SHOWCASE_FILES.items():
        data = (project_dir() / course.SHOWCASE / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256, name


@pytest.fixture
def server(tmp_path):
    """A web server on 127.0.0.1 whose /raw/main/ is `tmp_path`; yields its address."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path)
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()


def test_outside_a_clone_the_showcase_is_downloaded_and_checked(tmp_path, monkeypatch, server):
    served = tmp_path / "served" / "raw" / "main" / course.SHOWCASE
    served.mkdir(parents=True)
    (served / "history.csv").write_text("epoch,g_l1\n0,0.5\n")
    good = hashlib.sha256(b"epoch,g_l1\n0,0.5\n").hexdigest()
    monkeypatch.setattr(course, "REPO_URL", server + "/served")
    monkeypatch.setenv("P2P_PROJECT_DIR", str(tmp_path / "elsewhere"))  # no results/ there
    monkeypatch.setitem(course.SHOWCASE_FILES, "history.csv", good)
    path = course.showcase("history.csv")  # into the Keras cache (Keras reads KERAS_HOME at import)
    try:
        assert path.read_text() == "epoch,g_l1\n0,0.5\n"
        assert path.name == "facades_128_history.csv" and path.parent.name == "p2p_keras"
        path.unlink()
        monkeypatch.setitem(course.SHOWCASE_FILES, "history.csv", "0" * 64)
        with pytest.raises(ValueError, match="hash"):
            course.showcase("history.csv")  # a corrupted or replaced file is refused
    finally:
        path.unlink(missing_ok=True)


def test_full_mode_refuses_a_long_run_on_a_cpu(monkeypatch, capsys):
    from p2p_keras.jobs import bench
    from p2p_keras.jobs.options import TrainOptions

    monkeypatch.setattr("p2p_keras.precision.has_gpu", lambda: False)
    timed = {"results": [{"mode": "fit", "s_per_step": 0.5}]}
    monkeypatch.setattr(bench, "run_benchmark", lambda *args, **kwargs: timed)
    assert course.check_budget(TrainOptions(), 3000) == 1500.0  # 25 minutes: allowed
    assert "3,000 steps x 0.500 s = 25.0 min" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="about 33 minutes.*FORCE = True"):
        course.check_budget(TrainOptions(), 4000)
    assert course.check_budget(TrainOptions(), 4000, force=True) == 2000.0
