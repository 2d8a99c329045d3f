"""The paper's ablations (Isola et al. 2017, Tables 1-3): a study trains and scores variants of one
`TrainOptions`, writing a run per variant, ``results.json`` and ``results.md`` (vs the paper)."""

import collections
import dataclasses
import json
import pathlib
import time

from p2p_keras import project_dir
from p2p_keras.jobs.options import TrainOptions


class Variant(collections.namedtuple("Variant", "name label loss networks paper")):
    """A row of a study. `loss`: a key of `p2p_keras.losses.LOSS_ABLATIONS`; `networks`:
    `TrainOptions` fields; `paper`: the paper's FCN-scores (the first three of `METRICS`)."""

    @property
    def overrides(self):
        """The `TrainOptions` fields the variant sets."""
        from p2p_keras.losses import LOSS_ABLATIONS  # imports Keras: not at --help time

        return {**LOSS_ABLATIONS[self.loss], **self.networks}


def _variant(name, label, paper, loss=None, **networks):
    return Variant(name, label, loss or name.split("_")[-1], networks, paper)  # loss: name's end


STUDIES = {
    "loss": [
        _variant("l1", "L1", (0.42, 0.15, 0.11)),
        _variant("gan", "GAN", (0.22, 0.05, 0.01)),
        _variant("cgan", "cGAN", (0.57, 0.22, 0.16)),
        _variant("l1+gan", "L1+GAN", (0.64, 0.20, 0.15)),
        _variant("l1+cgan", "L1+cGAN", (0.66, 0.23, 0.17)),
    ],
    "generator": [
        _variant("encoder-decoder_l1", "Encoder-decoder (L1)", (0.35, 0.12, 0.08),
                 skip_connections=False),
        _variant("encoder-decoder_l1+cgan", "Encoder-decoder (L1+cGAN)", (0.29, 0.09, 0.05),
                 skip_connections=False),
        _variant("unet_l1", "U-net (L1)", (0.48, 0.18, 0.13), skip_connections=True),
        _variant("unet_l1+cgan", "U-net (L1+cGAN)", (0.55, 0.20, 0.14), skip_connections=True),
    ],
    "patch": [
        _variant("patch1", "1x1 (PixelGAN)", (0.39, 0.15, 0.10), "l1+cgan", patch_size=1),
        _variant("patch16", "16x16", (0.65, 0.21, 0.17), "l1+cgan", patch_size=16),
        _variant("patch70", "70x70", (0.66, 0.23, 0.17), "l1+cgan", patch_size=70),
        _variant("patch286", "286x286 (ImageGAN)", (0.42, 0.16, 0.11), "l1+cgan", patch_size=286),
    ],
}  # fmt: skip
# Every variant's scores in the paper, and Table 1's upper row: the FCN on the real photos.
PAPER_SCORES = {v.name: v.paper for variants in STUDIES.values() for v in variants}
PAPER_SCORES["Ground truth"] = (0.80, 0.26, 0.21)
PAPER_TITLES = {
    "loss": "Table 1: FCN-scores for different losses",
    "generator": "Table 2: FCN-scores for different generator architectures (paper: batch 10)",
    "patch": "Table 3: FCN-scores for different discriminator receptive fields (L1+cGAN)",
}
DEFAULTS = {"epochs": 20, "seed": 0}  # a study's starting budget, shorter than a full run

# Our columns: FCN-scores (`p2p_keras.segmenter`, where there are label maps), then the rest.
METRICS = {
    "per_pixel_acc": "Per-pixel acc. ↑", "per_class_acc": "Per-class acc. ↑",
    "class_iou": "Class IOU ↑",
    "l1": "L1 ↓", "psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "kid": "KID ↓",
}  # fmt: skip


def select_variants(study, names=None):
    """The `Variant`s of `study` ("loss", "generator" or "patch"): all, or those `names`."""
    if study not in STUDIES:
        raise ValueError(f"study must be one of {tuple(STUDIES)}, got {study!r}")
    known = [variant.name for variant in STUDIES[study]]
    if unknown := [name for name in names or () if name not in known]:
        raise ValueError(f"unknown {study} variants {unknown}; choose from {known}")
    return [variant for variant in STUDIES[study] if names is None or variant.name in names]


def check_image_size(variants, image_size):
    """Raises a ValueError, before any training, if a variant cannot be built at `image_size`."""
    from p2p_keras.jobs.train import build_pix2pix

    for variant in variants:
        try:
            build_pix2pix(image_size, filters=1, **variant.networks)
        except ValueError as error:
            hint = "the 286x286 ImageGAN needs 128 or more, the others 32"
            raise ValueError(f"{variant.name!r} at {image_size} px ({hint}): {error}") from error


def study_dir(study, options):
    """``options.out``, else ``runs/ablation_STUDY`` in the project."""
    return pathlib.Path(options.out or project_dir() / "runs" / f"ablation_{study}")


def run_ablation(study, options=None, *, variants=None, evaluation=None, **fields):
    """Trains and scores the variants of one of the paper's studies, all from the same options.

    Args:
        study: "loss" (the paper's Table 1), "generator" (Table 2) or "patch" (Table 3).
        options: the `TrainOptions` all variants start from (default: `DEFAULTS`); ``out``
            is the study's folder (see `study_dir`); ``resume`` continues a study.
        variants: names of the variants to run (default all), e.g. ``["l1", "l1+cgan"]``.
        evaluation: keyword arguments of `p2p_keras.jobs.evaluate.evaluate` (``split``...).
        **fields: `TrainOptions` fields changing `options`, except those the study varies.

    Returns:
        One dict per variant: its `Variant` fields, "overrides", our scores (see `METRICS`),
        "n_images", "unavailable", "train_seconds" and "final_losses".

    Example:
    >>> run_ablation("loss", data="facades", epochs=5, evaluation={"split": "test"})
    """
    from p2p_keras.jobs.datasets import resolve_dataset
    from p2p_keras.jobs.evaluate import evaluate
    from p2p_keras.jobs.train import train

    chosen = select_variants(study, variants)
    base = options or TrainOptions(**DEFAULTS)
    studied = {key for variant in chosen for key in variant.overrides}
    changed = {k for k in studied if getattr(base, k) != getattr(TrainOptions(), k)}
    if clash := sorted(changed | (studied & set(fields))):
        raise ValueError(f"the {study} study sets {clash} itself for each variant; don't pass them")
    base = dataclasses.replace(base, **fields)
    check_image_size(chosen, base.image_size)
    out = study_dir(study, base)
    root, natural = resolve_dataset(base.data, base.data_dir)
    base = dataclasses.replace(base, data=str(root), direction=base.direction or natural or "AtoB")
    scoring = {"metrics": ("l1", "psnr", "ssim"), "direction": base.direction, **(evaluation or {})}
    budget = {"study": study, **dataclasses.asdict(base), "evaluation": scoring}
    results = []
    for variant in chosen:
        started = time.perf_counter()
        run = dataclasses.replace(base, out=str(out / variant.name), **variant.overrides)
        model, history = train(run)
        seconds = round(time.perf_counter() - started, 2)
        # evaluation/ holds metrics.json and samples.png (input | output | target).
        scored = evaluate(model.generator, root, out=out / variant.name / "evaluation", **scoring)
        references, scoring["split"] = scored["rows"], scored["split"]
        result = {**variant._asdict(), "overrides": variant.overrides, "train_seconds": seconds}
        result.update(references.pop("generator"))
        losses = history.history if history is not None else {}  # None: nothing left to resume
        result["final_losses"] = {key: float(values[-1]) for key, values in losses.items()}
        result.update(n_images=scored["n_images"], unavailable=scored["unavailable"])
        results.append(result)
        content = {"budget": budget, "results": results, "references": references}
        _write(out / "results.json", json.dumps(content, indent=2, default=str))
    _write(out / "results.md", render_results_markdown(study, results, budget, references))
    return results


def _write(path, text):
    from p2p_keras.data import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")


def _format(value):
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_results_markdown(study, results, budget=None, references=None):
    """``results.md`` of ``results.json``'s parts: the budget, ours beside the paper's, samples."""
    lines = [f"# Ablation: {study} (the paper's {PAPER_TITLES[study].split(':')[0]})", ""]
    if budget:
        lines += ["Budget: " + ", ".join(f"{k} = {v}" for k, v in budget.items() if v is not None)]
    lines += ["", compare_with_paper(study, results, references)]
    for result in results:
        lines += [f"{what} unavailable: {why}\n" for what, why in result["unavailable"].items()]
        image = f"{result['name']}/evaluation/samples.png"
        lines += [f"{result['label']} (input, output, target):\n\n![{result['label']}]({image})\n"]
    return "\n".join(lines)


def compare_with_paper(study, results, references=None):
    """Markdown: the paper's FCN-scores for `study` and ours beside them ("-": not run); our
    "real photos" reference fills "Ground truth", the other `references` follow in italics."""
    references = dict(references or {})
    ours = {result["name"]: result for result in results}
    ours["Ground truth"] = references.pop("real photos", None)
    rows = [(v.label, v.name) for v in STUDIES[study]] + [("Ground truth", "Ground truth")]
    rows += [(f"*{name}*", name) for name in references]
    ours.update(references)
    names = [n for n in METRICS if any(n in row for row in ours.values() if row)]
    header = ["variant", *(f"paper: {METRICS[n]}" for n in list(METRICS)[:3])]
    header += [f"ours: {METRICS[n]}" for n in names]
    paper = {name: [f"{score:.2f}" for score in scores] for name, scores in PAPER_SCORES.items()}
    cells = [
        [label, *paper.get(name, ["-"] * 3)]
        + [_format(ours[name].get(n)) if ours.get(name) else "-" for n in names]
        for label, name in rows
    ]
    note = "The paper's scores are on Cityscapes (256x256, 200 epochs), ours on our data at our "
    note += "budget: compare orderings, not values. Per-pixel metrics favour the blurry average."
    table = ["| " + " | ".join(row) + " |" for row in [header, *cells]]
    table.insert(1, "|" + "---|" * len(header))
    title = f"*{PAPER_TITLES[study]}, Cityscapes labels->photo*"
    return "\n".join([title, "", *table, "", note, ""])
