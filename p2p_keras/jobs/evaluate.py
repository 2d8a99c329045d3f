"""``python -m p2p_keras evaluate``: a generator's scores on a split, each beside its floor.

Per-pixel metrics favour a blur, so baselines are scored alike: the mean training photo, the
input as output and, for the FCN-score (`p2p_keras.segmenter`), the real photos (upper bound).
"""

import json
import pathlib

import numpy as np
from PIL import Image

from p2p_keras import metrics as m
from p2p_keras.callbacks import sample_grid
from p2p_keras.data import atomic_path, load_paired
from p2p_keras.inference import generate, load_generator, model_info

METRICS = ("l1", "psnr", "ssim", "kid", "fid")


def translate_split(generator, dataset, *, dropout=True, batch_stats=True, seed=0):
    """Translates ``(input, target)`` batches; returns ``(inputs, generated, targets)`` arrays.

    Batch `i` draws its dropout noise from ``seed + 100 * i``; `seed=None`: fresh noise."""
    batches = [(np.asarray(x, np.float32), np.asarray(y, np.float32)) for x, y in dataset]
    if not batches:
        raise ValueError("the dataset yielded no images to evaluate")
    mode = {"dropout": dropout, "batch_stats": batch_stats}
    outputs = [
        generate(generator, x, **mode, seed=None if seed is None else seed + 100 * i)
        for i, (x, _) in enumerate(batches)
    ]
    inputs, targets = (np.concatenate(arrays) for arrays in zip(*batches, strict=True))
    return inputs, np.concatenate(outputs).astype(np.float32), targets


def score(inputs, generated, targets, *, metrics=METRICS[:3], mean=None, features=None, fcn=None):
    """``{row: {metric: value}}``: generated images and baselines against the targets.

    Args:
        inputs, generated, targets: (N, H, W, C) arrays in [-1, 1], as `translate_split` gives.
        metrics: any of "l1", "psnr", "ssim". mean: the mean photo (see `mean_photo`) or None.
        features: images -> (N, D) features: adds KID and FID (`metrics.inception_features()`).
        fcn: photos -> FCN-scores against the inputs' label maps (see `fcn_scorer`); applied to
            the generated, mean and real photos ("real photos" row: the upper bound).
    """
    candidates = {"generator": generated}
    if mean is not None:
        candidates["mean photo"] = np.broadcast_to(mean, targets.shape)
    if inputs.shape == targets.shape:
        candidates["input as output"] = inputs
    real = None if features is None else features(targets)
    rows = {}
    for name, images in candidates.items():
        row = rows[name] = {k: np.mean(m.PER_IMAGE[k](images, targets)) for k in metrics}
        if features is not None:  # the mean photo's features: one image's, repeated
            fake = features(images[:1] if name == "mean photo" else images)
            fake = np.repeat(fake, len(images) // len(fake), axis=0)
            row["kid"], row["kid_std"] = m.kid(real, fake)
            row["fid"] = m.fid(real, fake)
        if fcn is not None and name != "input as output":
            row.update(fcn(images))
    if fcn is not None:
        rows["real photos"] = fcn(targets)
    return {name: {key: float(value) for key, value in row.items()} for name, row in rows.items()}


def mean_photo(root, split="train", **options):
    """The mean target of ``load_paired(root, split, training=False, **options)``, in [-1, 1]."""
    total, count = 0.0, 0
    for _, targets in load_paired(root, split, training=False, **options):
        total, count = total + np.sum(targets, axis=0, dtype=np.float64), count + len(targets)
    return (total / count).astype(np.float32)


def evaluate(
    generator_or_path, data=None, split="val", *, dropout=True, batch_stats=True, seed=0, out=None,
    direction=None, data_dir=None, metrics=METRICS, inception_weights="imagenet", max_images=None,
    fcn=True
):  # fmt: skip
    """Translates a split, scores it beside the baselines, writes metrics.json and samples.png.

    Returns a JSON-ready dict: "rows" (see `score`), "unavailable" (what -> why), the settings.

    Args:
        generator_or_path: a generator `keras.Model` or a ``generator.keras``/``pix2pix.keras``.
        data, data_dir: see `p2p_keras.jobs.datasets.resolve_dataset`.
        split: "val" falls back to "test" where there is none.
        dropout, batch_stats: the test-time mode (`p2p_keras.inference.generate`), the paper's
            by default; with `batch_stats` images go one at a time, as there.
        out: folder for ``metrics.json`` and ``samples.png`` (input | output | target).
        direction: default the run's ``config.json`` beside the model, else the dataset's.
        metrics: see `score`; "kid" and "fid" use InceptionV3's `inception_weights` (or a file).
        fcn: add the FCN-score where there are labels, with each class's ``acc/NAME``, ``iou/NAME``.
    """
    from p2p_keras.jobs.datasets import resolve_dataset

    pixel = [name for name in metrics if name not in ("kid", "fid")]
    if not set(pixel) <= set(m.PER_IMAGE):
        raise ValueError(f"unknown metrics in {metrics}; choose from {METRICS}")
    path = generator_or_path if isinstance(generator_or_path, str | pathlib.Path) else None
    generator = load_generator(path) if path else generator_or_path
    root, natural = resolve_dataset(data, data_dir)
    root, unavailable, features, scorer = pathlib.Path(root), {}, None, None
    direction = direction or _trained_direction(path) or natural or "AtoB"
    options = {"direction": direction, "image_size": generator.input_shape[1:3]}
    split = "test" if split == "val" and not _has_split(root, "val") else split
    batch_size = 1 if batch_stats else 8
    dataset = load_paired(root, split, training=False, batch_size=batch_size, **options)
    dataset = dataset.unbatch().take(max_images or -1).batch(batch_size)
    mode = {"dropout": dropout, "batch_stats": batch_stats, "seed": seed}
    images = translate_split(generator, dataset, **mode)
    mean = mean_photo(root, batch_size=16, **options) if _has_split(root, "train") else None
    if mean is None:
        unavailable["mean photo"] = f"{root} has no train split"
    if {"kid", "fid"} & set(metrics):
        try:
            features = m.inception_features(inception_weights)
        except RuntimeError as error:
            unavailable.update(kid=str(error), fid=str(error))
    if fcn:
        scorer = fcn_scorer(root, split, images[0], unavailable, label_side=direction == natural)
    result = {
        **{"model": str(path or generator.name), "data": str(root), "split": split, **options},
        **{"n_images": len(images[0]), **mode},
        "rows": score(*images, metrics=pixel, mean=mean, features=features, fcn=scorer),
        "unavailable": unavailable,
    }
    if out is not None:
        with atomic_path(pathlib.Path(out) / "metrics.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        rgb = [x[:4, ..., :3] if x.shape[-1] >= 3 else x[:4, ..., :1].repeat(3, -1) for x in images]
        with atomic_path(pathlib.Path(out) / "samples.png") as tmp:
            Image.fromarray(sample_grid(*rgb)).save(tmp, format="PNG")
    return result


def fcn_scorer(root, split, inputs, unavailable, *, label_side=True):
    """photos -> FCN-scores against the label maps of `inputs` (`p2p_keras.segmenter`), or None.

    The dataset ("facades" or "cityscapes") is named by the folder; `label_side`: the inputs are
    label maps. Where there is no FCN-score, `unavailable["fcn"]` says why."""
    name = next((name for name in ("facades", "cityscapes") if name in root.name), root.name)
    try:
        from p2p_keras import segmenter

        if not label_side:
            raise ValueError("the inputs are not its label maps: evaluate its usual direction")
        labels = segmenter.load_labelled(root, split, name, inputs.shape[1])[1][: len(inputs)]
        model = segmenter.load_or_train_segmenter(root, dataset=name)
    except (ImportError, ValueError, FileNotFoundError) as error:
        unavailable["fcn"] = f"no FCN-score for {root.name}: {error}"
        return None
    names = segmenter.class_names(name)
    return lambda photos: segmenter.fcn_score(photos, labels, model, class_names=names)


def _has_split(root, split):
    return (root / split).is_dir() or (root / "A" / split).is_dir()


def _trained_direction(model_path):
    """The direction recorded in a model file, else in its run's config.json, else None."""
    if model_path is None:
        return None
    try:
        config = json.loads(pathlib.Path(model_path).with_name("config.json").read_text())
    except (TypeError, OSError, ValueError):
        config = {}
    return model_info(model_path).get("direction") or config.get("direction")


def format_table(result, per_class=False):
    """`evaluate`'s result as a table: one row per prediction, one column per metric; then,
    with `per_class`, one row per class: its FCN IoU and accuracy in each prediction."""
    keys = dict.fromkeys(k for r in result["rows"].values() for k in r if k != "kid_std")
    names = [k for k in keys if "/" not in k]
    lines = [
        f"{result['n_images']} images of {result['data']} ({result['split']}), "
        f"{result['direction']}, dropout {'on' if result['dropout'] else 'off'}, batch norm with "
        + ("the test batch's statistics" if result["batch_stats"] else "the moving averages"),
        f"{'':<16}" + "".join(f"{name:>14}" for name in names),
    ]
    for row, values in result["rows"].items():
        cells = (f"{values[k]:14.4f}" if k in values else f"{'-':>14}" for k in names)
        lines.append(f"{row:<16}" + "".join(cells))
    classes = [k[4:] for k in keys if k.startswith("iou/") and per_class]
    rows = {row: v for row, v in result["rows"].items() if classes and "iou/" + classes[0] in v}
    if classes:
        lines.append(f"{'IoU | acc.':<16}" + "".join(f"{row:>28}" for row in rows))
    for name in classes:
        cells = (f"{v['iou/' + name]:14.4f}{v['acc/' + name]:14.4f}" for v in rows.values())
        lines.append(f"{name:<16}" + "".join(cells))
    lines += [f"{what} unavailable: {why}" for what, why in result["unavailable"].items()]
    return "\n".join(lines)
