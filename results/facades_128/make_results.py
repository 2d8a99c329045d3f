"""Builds this folder from the showcase run: the float16 generators, the figure, the scores.

python results/facades_128/make_results.py RUN_DIR EARLY_GENERATOR
"""

import json
import pathlib
import shutil
import sys

import keras
import numpy as np
from PIL import Image

from p2p_keras.callbacks import sample_grid
from p2p_keras.data import load_paired
from p2p_keras.inference import generate, load_generator, model_info, save_model, with_dtype

HERE = pathlib.Path(__file__).parent
DATA = pathlib.Path(__file__).parents[2] / "data" / "facades"


def main(run, early):
    run = pathlib.Path(run)
    (HERE / "early").mkdir(exist_ok=True)
    info = {"direction": "BtoA", "source": "results/facades_128"}
    for source, target in ((run / "generator.keras", HERE), (pathlib.Path(early), HERE / "early")):
        # Stored in float16 (half the file); `load_generator` computes in float32.
        save_model(with_dtype(load_generator(source), "float16"), target / "generator.keras", info)
    shutil.copy(run / "history.csv", HERE / "history.csv")
    final = load_generator(HERE / "generator.keras")
    first = load_generator(HERE / "early" / "generator.keras")
    exact = load_generator(run / "generator.keras")
    test = load_paired(DATA, "test", direction="BtoA", image_size=128, training=False)
    worst, rows = 0.0, []
    for i, (x, y) in enumerate(test):
        same = {"dropout": False, "seed": i}  # the storage's error alone, without dropout's draw
        error = generate(final, x, **same) - generate(exact, x, **same)
        worst = max(worst, float(np.abs(error).max()))
        if i < 8:
            rows.append([x, generate(first, x, seed=i), generate(final, x, seed=i), y])
    grid = sample_grid(*(np.concatenate(column) for column in zip(*rows, strict=True)))
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        HERE / "test_pairs.jpg", quality=92
    )
    facts = {
        "float16_vs_float32_max_abs_diff_on_106_test_pairs": worst,
        **model_info(HERE / "generator.keras"),
    }
    (HERE / "storage.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(facts)
    # Notebook 05's score maps need the trained D; notebook 06 the FCN-score's segmenter, which
    # `evaluate` trained and cached in data/.fcn/ (its record: the settings and the data checksum),
    # stored in float16 like the generators.
    pix2pix = keras.saving.load_model(run / "pix2pix.keras", compile=False)
    save_model(pix2pix.discriminator, HERE / "discriminator.keras")
    cache = max(DATA.parent.glob(".fcn/facades-*/segmenter.json"), key=lambda p: p.stat().st_mtime)
    segmenter = keras.saving.load_model(cache.parent / "segmenter.keras", compile=False)
    save_model(with_dtype(segmenter, "float16"), HERE / "fcn" / "segmenter.keras")
    shutil.copy(cache, HERE / "fcn" / "segmenter.json")


if __name__ == "__main__":
    main(*sys.argv[1:])
