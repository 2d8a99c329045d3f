"""Writes the shared setup cell into every notebook, then executes them and stores the outputs.

The one command that makes the committed notebooks (run from the repository root):

    P2P_QUICK=1 python notebooks/execute.py            # all notebooks, in place
    P2P_QUICK=1 python notebooks/execute.py 05 06      # some of them
    python notebooks/execute.py --check                # only rewrite the setup cells

The "Open in Colab" badge and the setup cell come from `p2p_keras.course`, so the repository
URL lives in one place.
"""

import argparse
import os
import pathlib
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

import p2p_keras
from p2p_keras import course

HERE = pathlib.Path(__file__).resolve().parent
MAX_BYTES = 15 * 2**20


def normalise(notebook, name):
    """Puts the badge in the first (markdown) cell and the setup cell first among code cells."""
    cells = notebook.cells
    title = cells[0]
    lines = [line for line in title.source.splitlines() if "colab-badge.svg" not in line]
    title.source = "\n".join([lines[0], "", course.colab_badge(name), *lines[1:]]).rstrip()
    setup = next((c for c in cells if "setup" in c.metadata.get("tags", [])), None)
    if setup is None:
        setup = nbformat.v4.new_code_cell(metadata={"tags": ["setup"]})
        cells.insert(1, setup)
    setup.source = course.SETUP_CELL


# TensorFlow's and absl's start-up lines (glog: I0000 00:00:... file.cc:31] ...).
NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\).*|[IWEF]\d{4} .*)$")


def scrub(notebook):
    """Removes start-up log lines from stored outputs and writes the project's paths relative."""
    root = str(p2p_keras.project_dir().resolve())

    def clean(text):
        lines = [line for line in text.splitlines(keepends=True) if not NOISE.match(line)]
        text = "".join(lines).replace(root + "/", "").replace(root, ".")
        text = text.replace(str(pathlib.Path.home()) + "/", "~/")
        return re.sub(r"/tmp/[\w.-]+", "<tmp>", text)  # temporary folders

    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = clean(output.text)
                if not output.text:
                    continue
            elif "text/plain" in output.get("data", {}):
                output.data["text/plain"] = clean(output.data["text/plain"])
            outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = outputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook number prefixes, e.g. 05")
    parser.add_argument("--check", action="store_true", help="rewrite setup cells only")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in args.only]
    total = 0
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        normalise(notebook, path.name)
        if not args.check:
            start = time.time()
            NotebookClient(
                notebook,
                timeout=args.timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(HERE)}},
            ).execute()
            print(f"{path.name}: {time.time() - start:.0f} s", flush=True)
        scrub(notebook)
        nbformat.write(notebook, path)
        total += path.stat().st_size
    print(f"{len(paths)} notebooks, {total / 2**20:.1f} MB")
    if total > MAX_BYTES:
        sys.exit(f"the notebooks are over {MAX_BYTES / 2**20:.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
