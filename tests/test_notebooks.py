"""The course notebooks: every full-mode path runs (shrunk), and the stored outputs are clean.

`test_full_mode` executes each notebook with papermill, the knobs of `FULL_MODE_KNOBS` injected
after its `parameters` cell: ``MODE="full"`` plus budget knobs that shrink steps, epochs or image
size, so the code a GPU runs is exercised on a CPU in seconds (no cell is skipped). `P2P_QUICK`
is removed from the environment the kernel inherits (the test command sets it, and it would force
quick mode), and `P2P_PROJECT_DIR` points at a temporary folder whose ``data`` and ``results`` are
links to the repository's, so nothing is written into ``runs/``.

`test_stored_outputs_are_clean` reads the committed notebooks: no absolute machine paths, no
TensorFlow/absl start-up lines and no errors in what they show (`notebooks/execute.py` scrubs
them).
"""

import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# MODE="full" and the budget knobs that make each notebook's full-mode path short on a CPU.
FULL_MODE_KNOBS = {
    "00_setup": {"MODE": "full"},  # nothing trained: full mode is quick mode
    "01_data": {"MODE": "full", "PIPELINE_BATCHES": 50},  # the train split, 50 timed batches
    "02_unet": {"MODE": "full", "CALLS": 2},  # full-size networks, 2 generator calls per mode
    "03_patchgan": {"MODE": "full"},  # nothing trained: full mode is quick mode
    "04_losses": {"MODE": "full"},  # one step of a 32x32 model in both modes
    "05_training": {
        "MODE": "full",
        "FULL_EPOCHS": 1,
        "FULL_STEPS": 3,
        "FULL_SIZE": 64,
        "FULL_FILTERS": 8,
    },
    "06_evaluation": {"MODE": "full", "N_IMAGES": 4, "FULL_FCN": False},
    "07_ablations": {
        "MODE": "full",
        "STUDY": "loss",
        "VARIANT": "l1",
        "FULL_FCN": False,
        "FULL_EPOCHS": 1,
        "FULL_STEPS": 3,
        "FULL_SIZE": 64,
        "FULL_FILTERS": 8,
    },
    "08_performance": {  # the tutorial reference and fit, 32 px, one timed step, no other backends
        "MODE": "full",
        "IMAGE_SIZE": 32,
        "FILTERS": 8,
        "MODES": ["tutorial", "fit"],
        "BACKENDS": [],
        "STEPS": 1,
        "WARMUP": 1,
    },
}

CELL_TIMEOUT_S = 900
KERNEL_START_TIMEOUT_S = 600


def test_every_notebook_has_full_mode_knobs():
    names = sorted(path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert names == sorted(FULL_MODE_KNOBS)


def _parameters(path):
    notebook = nbformat.read(path, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: one cell tagged 'parameters'"
    return {
        line.split("=")[0].strip()
        for line in cells[0].source.splitlines()
        if re.match(r"^[A-Z_]+ *=", line)
    }


@pytest.mark.parametrize("name", sorted(FULL_MODE_KNOBS))
def test_full_mode(name, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")  # in requirements.txt
    source = NOTEBOOKS / f"{name}.ipynb"
    knobs = FULL_MODE_KNOBS[name]
    unknown = set(knobs) - _parameters(source)
    assert not unknown, f"{name}: knobs not in its parameters cell: {sorted(unknown)}"

    project = tmp_path / "project"
    project.mkdir()
    for folder in ("data", "results"):
        (project / folder).symlink_to(ROOT / folder, target_is_directory=True)
    monkeypatch.delenv("P2P_QUICK", raising=False)
    monkeypatch.setenv("P2P_PROJECT_DIR", str(project))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")

    executed = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters=knobs,
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        execution_timeout=CELL_TIMEOUT_S,
        start_timeout=KERNEL_START_TIMEOUT_S,  # a loaded CI machine starts kernels slowly
        progress_bar=False,
    )
    notebook = nbformat.read(executed, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    shown = "".join(_texts(notebook))
    assert "mode: quick" not in shown, f"{name} ran in quick mode"


# Absolute paths of the machine that executed a notebook (execute.py writes them relative).
MACHINE_PATH = re.compile(r"(?<![\w.<~])(/work|/tmp|/root|/home)(?=[/\s'\")\]:,]|$)|\bC:\\", re.M)
# TensorFlow's and absl's start-up messages.
STARTUP_LOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog|"
    r"oneDNN custom operations|Could not find cuda drivers|cudart_stub|computation placer|"
    r"TF-TRT|This TensorFlow binary is optimized",
    re.M,
)


def _texts(notebook):
    """Every text a notebook's stored outputs show: streams, text results and error tracebacks."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield output.text
            elif output.output_type == "error":
                yield "\n".join(output.get("traceback", []))
            else:
                for kind, value in output.get("data", {}).items():
                    if kind.startswith("text/"):
                        yield value if isinstance(value, str) else "".join(value)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_stored_outputs_are_clean(path):
    notebook = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(
                    f"cell {index}: error output {output.get('ename')}: {output.get('evalue')}"
                )
            if (
                output.output_type == "stream"
                and output.name == "stderr"
                and "Traceback" in output.text
            ):
                problems.append(f"cell {index}: a traceback on stderr")
        for text in _texts(nbformat.from_dict({"cells": [cell]})):
            for pattern, what in (
                (MACHINE_PATH, "an absolute machine path"),
                (STARTUP_LOG, "a start-up log line"),
            ):
                for match in pattern.finditer(text):
                    line = text[text.rfind("\n", 0, match.start()) + 1 :].split("\n", 1)[0]
                    problems.append(f"cell {index}: {what}: {line[:160]!r}")
    assert not problems, (
        f"{path.name} (re-execute it: P2P_QUICK=1 python notebooks/execute.py {path.name[:2]}):\n"
        + "\n".join(problems)
    )


def test_machine_path_and_log_patterns():
    """The scan's patterns catch what they are for, and leave the scrubbed forms alone."""
    for bad in (
        "/work/main/data",
        "saved in /tmp/p2p_x",
        "/root/.keras",
        "/home/me/x",
        "C:\\Users\\me",
    ):
        assert MACHINE_PATH.search(bad), bad
    for fine in (
        "data/facades",
        "<tmp>/broken/train",
        "~/.keras/models",
        "runs/example",
        "workers/tmp",
    ):
        assert not MACHINE_PATH.search(fine), fine
    for bad in (
        "I0000 00:00:1733 12345 cuda_executor.cc:1] x",
        "E0000 00:00:12.3 x",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "oneDNN custom operations are on.",
        "Could not find cuda drivers on your machine",
    ):
        assert STARTUP_LOG.search(bad), bad
    assert not STARTUP_LOG.search("I1 looked at 2 images")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_opens_with_the_colab_badge_and_the_setup_cell(path):
    from p2p_keras import course

    cells = nbformat.read(path, as_version=4).cells
    assert course.colab_badge(path.name) in cells[0].source
    assert next(c for c in cells if c.cell_type == "code").source == course.SETUP_CELL
