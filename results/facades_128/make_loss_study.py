"""Builds loss_study/ from three runs of the showcase's configuration: the paper's Figure 4.

python results/facades_128/make_loss_study.py L1_RUN CGAN_RUN L1+CGAN_GENERATOR

Each variant is scored on the 106 test pairs by `evaluate` (the paper's test-time mode, seeded);
the figure shows the same 6 test inputs for every variant.
"""

import json
import pathlib
import shutil
import sys

import numpy as np
from PIL import Image

from p2p_keras.callbacks import sample_grid
from p2p_keras.data import load_paired
from p2p_keras.inference import generate, load_generator
from p2p_keras.jobs import ablate
from p2p_keras.jobs.evaluate import evaluate

OUT = pathlib.Path(__file__).parent / "loss_study"
DATA = pathlib.Path(__file__).parents[2] / "data" / "facades"


def main(l1_run, cgan_run, both_generator):
    paths = {
        "l1": pathlib.Path(l1_run) / "generator.keras",
        "cgan": pathlib.Path(cgan_run) / "generator.keras",
        "l1+cgan": pathlib.Path(both_generator),
    }
    results, generators = [], {}
    for name, path in paths.items():
        scored = evaluate(path, DATA, "test", direction="BtoA", out=OUT / name)
        scored.update(model=f"{name}, 10 epochs", data="data/facades")  # no machine paths
        (OUT / name / "metrics.json").write_text(json.dumps(scored, indent=2) + "\n")
        variant = ablate.select_variants("loss", [name])[0]
        references = scored["rows"]  # the same mean-photo and real-photo rows for every variant
        results.append({**variant._asdict(), **references.pop("generator")})
        generators[name] = load_generator(path)
    for name, run in (("l1", l1_run), ("cgan", cgan_run)):
        shutil.copy(pathlib.Path(run) / "history.csv", OUT / name / "history.csv")
    (OUT / "results.md").write_text(ablate.compare_with_paper("loss", results, references))
    test = load_paired(DATA, "test", direction="BtoA", image_size=128, training=False)
    rows = [
        [x, *(generate(generators[name], x, seed=i) for name in paths), y]
        for i, (x, y) in enumerate(test.take(6))
    ]
    grid = sample_grid(*(np.concatenate(column) for column in zip(*rows, strict=True)))
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        OUT / "loss_study.jpg", quality=92
    )
    print((OUT / "results.md").read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
