"""Builds this folder from the showcase run: the float16 generator, the figure, the scores.

python results/facades_128/make_results.py RUN_DIR EARLY_GENERATOR
"""

import json
import pathlib
import shutil
import sys

import keras
import numpy as np
from PIL import Image

from p2p_keras.data import denormalize, load_paired
from p2p_keras.inference import generate, load_generator, model_info, save_model

HERE = pathlib.Path(__file__).parent
DATA = pathlib.Path(__file__).parents[2] / "data" / "facades"


def float16_copy(generator):
    """The generator stored in float16 (half the file); `load_generator` computes in float32."""
    copy = keras.models.clone_model(
        generator,
        clone_function=lambda x: x.__class__.from_config({**x.get_config(), "dtype": "float16"}),
    )
    copy.set_weights([w.astype("float16") for w in generator.get_weights()])
    return copy


def main(run, early):
    run, out = pathlib.Path(run), HERE
    (out / "early").mkdir(exist_ok=True)
    info = {"direction": "BtoA", "source": "results/facades_128"}
    for source, target in ((run / "generator.keras", out), (pathlib.Path(early), out / "early")):
        generator = load_generator(source)
        save_model(float16_copy(generator), target / "generator.keras", info=info)
    shutil.copy(run / "history.csv", out / "history.csv")
    final, first = (
        load_generator(out / "generator.keras"),
        load_generator(out / "early" / "generator.keras"),
    )
    exact = load_generator(run / "generator.keras")
    test = load_paired(DATA, "test", direction="BtoA", image_size=128, training=False, batch_size=1)
    worst = 0.0
    rows = []
    for i, (x, y) in enumerate(test):
        a = generate(final, x, seed=i)
        same = {"dropout": False, "seed": i}  # the storage's error alone, without dropout's draw
        error = generate(final, x, **same) - generate(exact, x, **same)
        worst = max(worst, float(np.abs(error).max()))
        if i < 8:
            rows.append(
                np.concatenate(
                    [denormalize(t)[0] for t in (x, generate(first, x, seed=i), a, y)], 1
                )
            )
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        out / "test_pairs.jpg", quality=92
    )
    facts = {
        "float16_vs_float32_max_abs_diff_on_106_test_pairs": worst,
        **model_info(out / "generator.keras"),
    }
    (out / "storage.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(facts)


if __name__ == "__main__":
    main(*sys.argv[1:])
