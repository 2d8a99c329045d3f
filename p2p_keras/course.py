"""What the course notebooks share: the setup cell, the run mode, folders, source and image display.

Example:
>>> from p2p_keras import course
>>> mode = course.pick_mode(MODE)          # "quick" on a CPU, "full" on a GPU
>>> course.show_source(p2p_keras.generate)
>>> course.show_images([inputs[0], fake[0], targets[0]], ["input", "generated", "target"])
"""

import contextlib
import inspect
import os
import sys
from pathlib import Path

from p2p_keras import project_dir

REPO_URL = "https://github.com/p2p-keras/p2p_keras"
BRANCH = "main"
# The showcase run (results/facades_128/README.md): file -> sha256 of the committed file.
SHOWCASE = "results/facades_128"
SHOWCASE_FILES = {
    "generator.keras": "9abe413d72f91aa3e55a8b7a3afe9a6a670bae81067bcfebaf2ae00b6dbb5df7",
    "discriminator.keras": "4ff18dc07b020129e47a334422682bca2b363679890eb0fc5ecb223959a2f662",
    "early/generator.keras": "a8239bcd5c120633988da9f1d6ac30fa1e3900b36ab7ed9658a2b8f3b3659a29",
    "history.csv": "c72759cd4c4af0c4c39cb7f9211f3c0554a8af05e5a0dea023f6c9c08ae50906",
    "fcn/segmenter.keras": "f7975af0b0ebcb20c5197d49b239d62a0d33d94a05e4ada3dbd8705b51436711",
}
CPU_BUDGET_S = 30 * 60  # full mode refuses a longer run on a machine without a GPU

SETUP_CELL = f"""\
# Setup: on Colab (or anywhere p2p_keras is missing) install the package from the repository;
# where it already imports (a clone, a pip install) this does nothing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("p2p_keras") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+{REPO_URL}@{BRANCH}"], check=True)"""


def colab_badge(notebook):
    """Markdown for the "Open in Colab" badge of `notebook` (a file name in notebooks/)."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    path = REPO_URL.removeprefix("https://github.com/")
    url = f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/notebooks/{notebook}"
    return f"[![Open In Colab]({badge})]({url})"


def in_colab():
    return "google.colab" in sys.modules


def pick_mode(requested=None):
    """The run mode of a notebook: "quick" (a CPU, minutes) or "full" (the paper's recipe).

    `requested`: "quick", "full", or None: full on a GPU, quick on a CPU. ``P2P_QUICK=1`` (set
    by the test command) always means quick."""
    if os.environ.get("P2P_QUICK") == "1":
        return "quick"
    if requested is not None:
        if requested not in ("quick", "full"):
            raise ValueError(f'MODE must be "quick", "full" or None, not {requested!r}')
        return requested
    from p2p_keras.precision import has_gpu  # the backend-aware check

    return "full" if has_gpu() else "quick"


def runs_dir(name, drive=False):
    """The folder of a training run: ``runs/NAME``, or on Google Drive when `drive` on Colab,
    where a run outlives the runtime's disk (lost on a disconnect); ``resume=True`` continues it."""
    if drive and in_colab():
        from google.colab import drive as colab_drive

        colab_drive.mount("/content/drive")
        return Path("/content/drive/MyDrive/p2p_keras/runs") / name
    return project_dir() / "runs" / name


def showcase(name="generator.keras"):
    """The path of a showcase file (a key of `SHOWCASE_FILES`): the repository's copy, else
    (Colab, a pip install) downloaded from `REPO_URL` into the Keras cache, sha256 checked."""
    local = project_dir() / SHOWCASE / name
    if local.is_file():
        return local
    import keras

    url = f"{REPO_URL}/raw/{BRANCH}/{SHOWCASE}/{name}"
    fname, sha256 = "facades_128_" + name.replace("/", "_"), SHOWCASE_FILES[name]
    return Path(keras.utils.get_file(fname, url, file_hash=sha256, cache_subdir="p2p_keras"))


def check_budget(options, steps, *, force=False):
    """Estimates a training run on this machine; refuses a long one on a CPU unless `force`.

    The estimate times a few `fit` steps of the same networks (`p2p_keras.jobs.bench`) and is
    printed. Without a GPU a run estimated over `CPU_BUDGET_S` raises instead of starting.

    Args:
        options: the run's `TrainOptions`.
        steps: the run's total training steps.
        force: start it anyway.

    Returns:
        The estimate in seconds, or None on a GPU (nothing is measured there).
    """
    from p2p_keras.jobs import bench
    from p2p_keras.precision import has_gpu

    if has_gpu():
        return None
    result = bench.run_benchmark(options, modes=("fit",), steps=3, warmup=2)["results"][0]
    if "error" in result:
        raise RuntimeError(f"could not time the run: {result['error']}")
    per_step = result["s_per_step"]
    seconds = per_step * steps
    print(f"estimate on this CPU: {steps:,} steps x {per_step:.3f} s = {seconds / 60:.1f} min")
    if seconds > CPU_BUDGET_S and not force:
        raise RuntimeError(
            f"this run would take about {seconds / 60:.0f} minutes on a CPU (no GPU found), more "
            f"than the {CPU_BUDGET_S // 60} allowed: use a GPU (Colab: Runtime > Change runtime "
            "type), shrink the budget knobs, or set FORCE = True in the parameters cell"
        )
    return seconds


def real_facades():
    """The real facades folder when it is in ``data/`` (nothing is downloaded), else None."""
    from p2p_keras.jobs.datasets import DownloadError, resolve_dataset

    with contextlib.suppress(DownloadError):
        return resolve_dataset("facades", download=False)[0]


def example_pair(index=0):
    """One facades pair (label map, photo) as float32 tensors (1, 256, 256, 3) in [-1, 1]: val
    pair `index` of `real_facades()`, else a synthetic pair rendered with seed `index`."""
    import numpy as np
    from keras import ops

    from p2p_keras.data import normalize, read_rgb, split_pair
    from p2p_keras.jobs.synthetic import render_pair

    if root := real_facades():
        label, photo = split_pair(read_rgb(root / "val" / f"{index + 1}.jpg"), "BtoA")
    else:
        photo, label = render_pair(np.random.default_rng(index), 256)
    return tuple(ops.convert_to_tensor(np.asarray(normalize(i[None]))) for i in (label, photo))


def show_source(obj):
    """Displays the real source code of a p2p_keras function or class."""
    from IPython.display import Code, display

    display(Code(inspect.getsource(obj), language="python"))


def show_images(images, titles=None, *, columns=None, size=2.6):
    """Shows images (HxWx3 in [-1, 1] or uint8, or HxW maps, any array type) in a row or grid.

    `columns`: images per row (default: one row); `size`: inches per image. Returns nothing: a
    returned figure would be shown twice when a cell ends with the call.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from p2p_keras.data import denormalize

    images = [np.asarray(image) for image in images]
    columns = columns or len(images)
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for index, (axis, image) in enumerate(zip(axes.flat, images, strict=False)):
        if image.ndim == 3 and image.shape[-1] in (1, 3):
            pixels = image if image.dtype == np.uint8 else denormalize(image)
            axis.imshow(pixels.squeeze(), cmap="gray")
        else:
            shown = axis.imshow(image, cmap="viridis")
            figure.colorbar(shown, ax=axis, fraction=0.046)
        if titles:
            axis.set_title(titles[index], fontsize=9)
    figure.tight_layout()
    plt.show()
