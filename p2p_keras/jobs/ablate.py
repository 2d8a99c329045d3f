"""The paper's ablations (Isola et al. 2017, Tables 1-3) as experiments you can run.

Each study trains several variants of pix2pix under the same budget and seed, scores each on
the evaluation split and writes, under its output folder: one training run per variant
(``VARIANT/``), ``results.json``, ``results.md`` (our table, then ours next to the paper's) and
``grid.png`` (a few fixed evaluation inputs, one column per variant).

The paper scores Cityscapes labels->photo with an FCN ("FCN-score"), which rewards outputs
that look real enough to be segmented. Per-pixel metrics (L1, PSNR, SSIM) reward the blurry
average instead, so the L1-only variants usually win them: compare the pictures and KID, and
compare orderings with the paper rather than values.
"""

import json
import pathlib
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from p2p_keras.data import denormalize, load_paired
from p2p_keras.discriminator import build_patchgan_discriminator
from p2p_keras.evaluation import evaluate, write_json_atomic
from p2p_keras.generator import unet_depth
from p2p_keras.inference import atomic_path, generate, write_png_atomic
from p2p_keras.losses import LOSS_ABLATIONS
from p2p_keras.jobs.train import resolve_data, train


def _variant(name, label, loss, **config):
    return {"name": name, "label": label, "config": {**LOSS_ABLATIONS[loss], **config}}


# name (the run's folder), label (as in the paper's table), and the `train` arguments it sets.
STUDIES = {
    "loss": [
        _variant("l1", "L1", "l1"),
        _variant("gan", "GAN", "gan"),
        _variant("cgan", "cGAN", "cgan"),
        _variant("l1+gan", "L1+GAN", "l1+gan"),
        _variant("l1+cgan", "L1+cGAN", "l1+cgan"),
    ],
    "generator": [
        _variant("encoder-decoder_l1", "Encoder-decoder (L1)", "l1", skip_connections=False),
        _variant(
            "encoder-decoder_l1+cgan",
            "Encoder-decoder (L1+cGAN)",
            "l1+cgan",
            skip_connections=False,
        ),
        _variant("unet_l1", "U-net (L1)", "l1", skip_connections=True),
        _variant("unet_l1+cgan", "U-net (L1+cGAN)", "l1+cgan", skip_connections=True),
    ],
    "patch": [
        _variant("patch1", "1x1 (PixelGAN)", "l1+cgan", patch_size=1),
        _variant("patch16", "16x16", "l1+cgan", patch_size=16),
        _variant("patch70", "70x70", "l1+cgan", patch_size=70),
        _variant("patch286", "286x286 (ImageGAN)", "l1+cgan", patch_size=286),
    ],
}

_FCN_COLUMNS = ("Per-pixel acc.", "Per-class acc.", "Class IOU")

# FCN-scores on Cityscapes labels->photo (higher is better), keyed by our variant names.
PAPER_TABLES = {
    "loss": {
        "title": "Table 1: FCN-scores for different losses, Cityscapes labels->photo",
        "columns": _FCN_COLUMNS,
        "rows": {
            "l1": (0.42, 0.15, 0.11),
            "gan": (0.22, 0.05, 0.01),
            "cgan": (0.57, 0.22, 0.16),
            "l1+gan": (0.64, 0.20, 0.15),
            "l1+cgan": (0.66, 0.23, 0.17),
        },
        "reference": {"Ground truth": (0.80, 0.26, 0.21)},
    },
    "generator": {
        "title": (
            "Table 2: FCN-scores for different generator architectures (and objectives), "
            "Cityscapes labels->photo; batch size 10 in this experiment"
        ),
        "columns": _FCN_COLUMNS,
        "rows": {
            "encoder-decoder_l1": (0.35, 0.12, 0.08),
            "encoder-decoder_l1+cgan": (0.29, 0.09, 0.05),
            "unet_l1": (0.48, 0.18, 0.13),
            "unet_l1+cgan": (0.55, 0.20, 0.14),
        },
        "reference": {},
    },
    "patch": {
        "title": (
            "Table 3: FCN-scores for different discriminator receptive fields (L1+cGAN), "
            "Cityscapes labels->photo"
        ),
        "columns": _FCN_COLUMNS,
        "rows": {
            "patch1": (0.39, 0.15, 0.10),
            "patch16": (0.65, 0.21, 0.17),
            "patch70": (0.66, 0.23, 0.17),
            "patch286": (0.42, 0.16, 0.11),
        },
        "reference": {},
    },
}

_METRIC_HEADERS = {
    "l1": "L1 ↓",
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "kid": "KID ↓",
    "fid": "FID ↓",
}


def select_variants(study, names=None):
    """The variants of `study`, all or those named, in the study's order.

    Args:
        study: "loss", "generator" or "patch".
        names: variant names to keep (e.g. ``["l1", "l1+cgan"]``), or None for all.

    Returns:
        A list of variant dicts: "name", "label", "config" (arguments for `train`).

    Raises:
        ValueError: for an unknown study or variant name.
    """
    if study not in STUDIES:
        raise ValueError(f"study must be one of {tuple(STUDIES)}, got {study!r}")
    variants = STUDIES[study]
    if names is None:
        return list(variants)
    known = [variant["name"] for variant in variants]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {study} variants {unknown}; choose from {known}")
    return [variant for variant in variants if variant["name"] in names]


def check_image_size(variants, image_size):
    """Fails fast when a variant cannot be built at `image_size`, before any training.

    The U-Net needs sides divisible by a power of two, and the discriminators need enough
    pixels for their strided layers: the 286x286 ImageGAN needs at least 128x128.

    Raises:
        ValueError: naming the variant and the smallest workable size.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    unet_depth(height, width)
    for variant in variants:
        patch_size = variant["config"].get("patch_size", 70)
        try:
            build_patchgan_discriminator((height, width, 3), patch_size=patch_size, filters=1)
        except ValueError as error:
            raise ValueError(
                f"variant {variant['name']!r}: a {patch_size}x{patch_size} discriminator does "
                f"not fit {height}x{width} images (use image_size >= 128 for the 286x286 "
                f"ImageGAN, >= 32 for 70x70): {error}"
            ) from error


def run_ablation(
    study,
    *,
    data=None,
    out=None,
    epochs=20,
    steps_per_epoch=None,
    image_size=256,
    seed=0,
    data_dir="data",
    metrics=("l1", "psnr", "ssim"),
    eval_split="val",
    max_eval_images=None,
    verbose=0,
    variants=None,
    direction=None,
    dropout=False,
    batch_stats=False,
    grid_rows=4,
    feature_extractor=None,
    inception_weights="imagenet",
    **train_kwargs,
):
    """Trains and scores every variant of one of the paper's ablation studies.

    Every variant is trained with `p2p_keras.jobs.train.train` under the same budget and seed
    into ``out/VARIANT``, then scored with `p2p_keras.evaluation.evaluate` on the evaluation
    split. ``results.json`` is rewritten after each variant, so an interrupted study keeps
    what it finished. At the end ``results.md`` and ``grid.png`` are written.

    Args:
        study: "loss" (paper Table 1), "generator" (Table 2) or "patch" (Table 3).
        data: None (the embedded synthetic facades), a dataset name, or a folder.
        out: output folder; default ``runs/ablation_STUDY``.
        epochs: epochs per variant.
        steps_per_epoch: batches per epoch; default one pass over the training split.
        image_size: training and evaluation size; the "patch" study needs at least 128.
        seed: the seed of every variant (weights, data order, jitter).
        data_dir: where datasets are generated or downloaded.
        metrics: metrics for `evaluate`; add "kid" / "fid" when Inception weights are at hand.
        eval_split: the split to score; "val" falls back to "test" when missing.
        max_eval_images: score at most this many images per variant.
        verbose: `fit` verbosity.
        variants: names of the variants to run (default all), e.g. ``["l1", "l1+cgan"]``.
        direction: "AtoB" or "BtoA"; default the dataset's natural direction, else "AtoB".
        dropout: test-time dropout when scoring (see `p2p_keras.inference.generate`).
        batch_stats: test-time batch statistics when scoring; evaluated at batch size 1.
        grid_rows: evaluation inputs shown in ``grid.png``.
        feature_extractor: see `evaluate`.
        inception_weights: see `evaluate`.
        **train_kwargs: further arguments for `train` (``batch_size``, ``learning_rate``...),
            the same for every variant; ``resume=True`` continues an interrupted study (the
            finished variants only reload and are scored again).

    Returns:
        One dict per variant: "name", "label", "config", the metric values, "n_images",
        "unavailable", "train_seconds", "eval_seconds", "final_losses" and "run_dir".

    Example:
    >>> results = run_ablation("loss", epochs=5, image_size=128)
    >>> print(pathlib.Path("runs/ablation_loss/results.md").read_text())
    """
    chosen = select_variants(study, variants)
    check_image_size(chosen, image_size)
    _check_no_overrides(study, chosen, train_kwargs)
    out = pathlib.Path(out or f"runs/ablation_{study}")
    root, natural_direction = resolve_data(data, data_dir)
    direction = direction or natural_direction or "AtoB"
    eval_ds, split = _evaluation_data(
        root, eval_split, direction=direction, image_size=image_size, batch_stats=batch_stats
    )
    grid_inputs, grid_targets = _grid_pairs(eval_ds, grid_rows)
    budget = {
        "study": study,
        "data": str(root),
        "direction": direction,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "image_size": image_size,
        "seed": seed,
        "eval_split": split,
        "dropout": dropout,
        "batch_stats": batch_stats,
        **train_kwargs,
    }
    results, grid_outputs = [], {}
    for variant in chosen:
        started = time.perf_counter()
        model, history = train(
            str(root),
            out / variant["name"],
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            image_size=image_size,
            direction=direction,
            seed=seed,
            data_dir=data_dir,
            verbose=verbose,
            **variant["config"],
            **train_kwargs,
        )
        trained = time.perf_counter()
        scores = evaluate(
            model.generator,
            eval_ds,
            metrics=metrics,
            dropout=dropout,
            batch_stats=batch_stats,
            max_images=max_eval_images,
            feature_extractor=feature_extractor,
            inception_weights=inception_weights,
        )
        grid_outputs[variant["label"]] = _translate_one_by_one(
            model.generator, grid_inputs, dropout=dropout, batch_stats=batch_stats
        )
        results.append(
            {
                "name": variant["name"],
                "label": variant["label"],
                "config": variant["config"],
                **{key: scores[key] for key in (*metrics, "kid_std") if key in scores},
                "n_images": scores["n_images"],
                "unavailable": scores["unavailable"],
                "train_seconds": round(trained - started, 2),
                "eval_seconds": round(time.perf_counter() - trained, 2),
                "final_losses": _final_losses(history),
                "run_dir": str(out / variant["name"]),
            }
        )
        write_json_atomic({"budget": budget, "results": results}, out / "results.json")
        del model
    _write_text_atomic(render_results_markdown(study, results, budget), out / "results.md")
    write_png_atomic(ablation_grid(grid_inputs, grid_outputs, grid_targets), out / "grid.png")
    return results


def _check_no_overrides(study, variants, train_kwargs):
    studied = {key for variant in variants for key in variant["config"]}
    clash = sorted(studied & set(train_kwargs))
    if clash:
        raise ValueError(f"the {study} study sets {clash} itself for each variant; don't pass them")


def _evaluation_data(root, split, *, direction, image_size, batch_stats):
    """The evaluation dataset (cached, in file order) and the split actually used."""
    options = {
        "direction": direction,
        "image_size": image_size,
        "training": False,
        "batch_size": 1 if batch_stats else 8,
    }
    try:
        return load_paired(root, split, **options), split
    except FileNotFoundError:
        if split != "val":
            raise
        return load_paired(root, "test", **options), "test"


def _grid_pairs(dataset, rows):
    inputs, targets = next(iter(dataset.unbatch().batch(rows).take(1)))
    return np.asarray(inputs), np.asarray(targets)


def _translate_one_by_one(generator, inputs, *, dropout, batch_stats):
    # One image per call, so that with batch statistics each output matches batch-1 scoring.
    return np.concatenate(
        [
            generate(generator, image[None], dropout=dropout, batch_stats=batch_stats)
            for image in inputs
        ]
    )


def _final_losses(history):
    if history is None:  # a resumed run that had nothing left to train
        return {}
    return {key: float(values[-1]) for key, values in history.history.items() if values}


def _write_text_atomic(text, path):
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return pathlib.Path(path)


# --------------------------------------------------------------------------- pictures


def ablation_grid(inputs, outputs, targets, *, min_width=128, header=18):
    """Tiles input | one column per variant | target, with a label above each column.

    Args:
        inputs: (N, H, W, C) images in [-1, 1].
        outputs: dict label -> (N, H, W, C) generated images in [-1, 1], in column order.
        targets: (N, H, W, C) images in [-1, 1].
        min_width: small images are enlarged (nearest neighbour) to at least this width, so
            the labels fit.
        header: height in pixels of the label strip.

    Returns:
        A uint8 RGB array of shape (header + N * h, columns * w, 3).
    """
    columns = {"input": inputs, **outputs, "target": targets}
    scale = max(1, -(-min_width // np.asarray(inputs).shape[2]))
    tiles = []
    for images in columns.values():
        column = np.concatenate(list(_rgb(denormalize(images))), axis=0)
        tiles.append(column.repeat(scale, axis=0).repeat(scale, axis=1))
    body = np.concatenate(tiles, axis=1)
    cell_width = tiles[0].shape[1]
    canvas = Image.new("RGB", (body.shape[1], body.shape[0] + header), "white")
    canvas.paste(Image.fromarray(body), (0, header))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, label in enumerate(columns):
        text = _fit_text(draw, label, font, cell_width - 4)
        draw.text((index * cell_width + 2, 2), text, fill="black", font=font)
    return np.asarray(canvas)


def _rgb(images):
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def _fit_text(draw, text, font, width):
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


# --------------------------------------------------------------------------- tables


def _format(value, digits=4):
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _metric_names(results):
    return [name for name in _METRIC_HEADERS if any(name in result for result in results)]


def render_results_markdown(study, results, budget=None):
    """``results.md``: our scores per variant, then ours next to the paper's table.

    Args:
        study: "loss", "generator" or "patch".
        results: the list returned by `run_ablation` (or ``results.json``'s "results").
        budget: the training budget to state above the table (``results.json``'s "budget").

    Returns:
        Markdown text.
    """
    names = _metric_names(results)
    lines = [f"# Ablation: {study} (paper {PAPER_TABLES[study]['title'].split(':')[0]})", ""]
    if budget:
        lines += [
            "Budget: " + ", ".join(f"{key} = {value}" for key, value in budget.items()),
            "",
        ]
    header = ["variant", *(_METRIC_HEADERS[name] for name in names), "images", "train (s)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [
            result["label"],
            *(_format(result.get(name)) for name in names),
            str(result.get("n_images", "")),
            _format(result.get("train_seconds"), 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    unavailable = {k: v for result in results for k, v in result.get("unavailable", {}).items()}
    lines += [f"\n{name}: {reason}" for name, reason in unavailable.items()]
    lines += ["", "![columns: input, each variant, target](grid.png)", ""]
    lines += ["## Next to the paper", "", compare_with_paper(study, results)]
    return "\n".join(lines)


def compare_with_paper(study, results):
    """Renders our scores next to the paper's FCN-scores for the same study, as markdown.

    Args:
        study: "loss", "generator" or "patch".
        results: dicts with "name" and metric values (from `run_ablation`); rows the paper
            has but we did not run show "-".

    Returns:
        Markdown: the paper's table title, a table with one row per paper variant (paper's
        three FCN-scores, then our metrics) and a note on how to read it.
    """
    table = PAPER_TABLES[study]
    ours = {result["name"]: result for result in results}
    names = _metric_names(results)
    labels = {variant["name"]: variant["label"] for variant in STUDIES[study]}
    header = [
        "variant",
        *(f"paper: {column} ↑" for column in table["columns"]),
        *(f"ours: {_METRIC_HEADERS[name]}" for name in names),
    ]
    lines = [
        f"*{table['title']}*",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for variant_name, scores in table["rows"].items():
        result = ours.get(variant_name)
        cells = [
            labels[variant_name],
            *(f"{score:.2f}" for score in scores),
            *(_format(result.get(metric)) if result else "-" for metric in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for label, scores in table["reference"].items():
        cells = [label, *(f"{score:.2f}" for score in scores), *("-" for _ in names)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "The paper's columns are FCN-scores on Cityscapes labels->photo (256x256, 200 epochs), "
        "which reward outputs realistic enough to be segmented; ours are per-pixel and feature "
        "metrics on our data at our budget. Compare orderings, not values: per-pixel metrics "
        "favour the blurry average, so L1-only variants often score best on L1/PSNR/SSIM "
        "while looking worst.",
        "",
    ]
    return "\n".join(lines)


def load_results(path):
    """Reads a study's ``results.json``: returns ``(budget, results)``."""
    content = json.loads(pathlib.Path(path).read_text())
    return content["budget"], content["results"]
