"""The paper's FCN-score, offline: segment generated photos, compare with the input labels.

Per-pixel metrics (L1, PSNR, SSIM) reward a blur. The paper instead segments the generated
photos and scores the result against the label maps they came from (Tables 1-3). Pretrained FCN
weights cannot be downloaded offline, so a small U-Net is trained once on the dataset's own
training photos and label maps (the colour-coded B halves, decoded by nearest palette colour:
the 12 CMP classes of facades, the 19 evaluation classes of Cityscapes' 34 label ids).
"""

import contextlib
import functools
import hashlib
import json
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from p2p_keras import project_dir
from p2p_keras.data import atomic_path, denormalize, read_rgb
from p2p_keras.jobs import synthetic

# Cityscapes label ids 0..33 (cityscapesScripts labels.py): (name, train id or -1 = ignored,
# colour). Ids that share a colour decode to the first of them (same train id, except polegroup).
CITYSCAPES_LABELS = (
    ("unlabeled", -1, (0, 0, 0)), ("ego vehicle", -1, (0, 0, 0)),
    ("rectification border", -1, (0, 0, 0)), ("out of roi", -1, (0, 0, 0)),
    ("static", -1, (0, 0, 0)), ("dynamic", -1, (111, 74, 0)), ("ground", -1, (81, 0, 81)),
    ("road", 0, (128, 64, 128)), ("sidewalk", 1, (244, 35, 232)),
    ("parking", -1, (250, 170, 160)), ("rail track", -1, (230, 150, 140)),
    ("building", 2, (70, 70, 70)), ("wall", 3, (102, 102, 156)), ("fence", 4, (190, 153, 153)),
    ("guard rail", -1, (180, 165, 180)), ("bridge", -1, (150, 100, 100)),
    ("tunnel", -1, (150, 120, 90)), ("pole", 5, (153, 153, 153)),
    ("polegroup", -1, (153, 153, 153)), ("traffic light", 6, (250, 170, 30)),
    ("traffic sign", 7, (220, 220, 0)), ("vegetation", 8, (107, 142, 35)),
    ("terrain", 9, (152, 251, 152)), ("sky", 10, (70, 130, 180)), ("person", 11, (220, 20, 60)),
    ("rider", 12, (255, 0, 0)), ("car", 13, (0, 0, 142)), ("truck", 14, (0, 0, 70)),
    ("bus", 15, (0, 60, 100)), ("caravan", -1, (0, 0, 90)), ("trailer", -1, (0, 0, 110)),
    ("train", 16, (0, 80, 100)), ("motorcycle", 17, (0, 0, 230)), ("bicycle", 18, (119, 11, 32)),
)  # fmt: skip
# dataset -> (class names, palette colours, class index of each colour or -1)
_LABELS = {
    "facades": (synthetic.CLASS_NAMES, synthetic.PALETTE_ARRAY, np.arange(12)),
    "cityscapes": (
        tuple(name for name, train_id, _ in CITYSCAPES_LABELS if train_id >= 0),
        np.array([colour for *_, colour in CITYSCAPES_LABELS], np.uint8),
        np.array([train_id for _, train_id, _ in CITYSCAPES_LABELS]),
    ),
}


def class_names(dataset):
    """The segmentation classes of `dataset`, or `None` when its files have no label side.

    Example:

    >>> class_names("maps") is None
    True
    """
    return _LABELS[dataset][0] if dataset in _LABELS else None


def _labelled(dataset):
    if dataset not in _LABELS:
        raise ValueError(f"{dataset!r} has no label side: the FCN-score needs label maps")
    return _LABELS[dataset]


def decode_labels(label_images, dataset="facades", *, label_ids=False):
    """Class index per pixel of colour label maps, by nearest palette colour.

    Args:
        label_images: `(..., H, W, 3)` label maps, uint8 or floats in [-1, 1].
        dataset: `"facades"` (12 CMP classes) or `"cityscapes"`.
        label_ids: Cityscapes only: return the 34 label ids instead of the 19 train ids.

    Returns:
        An int32 array `(..., H, W)`; -1 marks pixels the score ignores (Cityscapes void).
    """
    classes = _labelled(dataset)[2]
    rgb = np.asarray(label_images)
    rgb = (rgb if rgb.dtype == np.uint8 else denormalize(rgb)).astype(np.int32) >> 2
    nearest = _nearest_colour(dataset)[(rgb[..., 0] << 12) | (rgb[..., 1] << 6) | rgb[..., 2]]
    return nearest if label_ids else classes[nearest].astype(np.int32)


@functools.cache
def _nearest_colour(dataset):
    """Palette index nearest to each colour of a 64-level-per-channel lattice (a lookup table)."""
    centres = (np.indices((64, 64, 64)).reshape(3, -1).T * 4 + 1.5).astype(np.float32)
    palette = _LABELS[dataset][1].astype(np.float32)
    dist = (centres**2).sum(1, keepdims=True) - 2 * centres @ palette.T + (palette**2).sum(1)
    return dist.argmin(1).astype(np.int32)


def _build_segmenter(num_classes, size, filters=16):
    """A small U-Net: photos in [-1, 1] of shape `(size, size, 3)` -> per-pixel class logits."""

    def block(x, width, strides=1):
        for s in (strides, 1):
            x = layers.Conv2D(width, 3, strides=s, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        return x

    inputs = keras.Input((size, size, 3))
    x = block(inputs, filters, strides=2)  # the finest features are at half resolution
    skips = []
    for width in (2 * filters, 4 * filters, 8 * filters):
        skips.append(x)
        x = block(x, width, strides=2)
    for skip in reversed(skips):
        x = layers.UpSampling2D(interpolation="bilinear")(x)
        x = block(layers.Concatenate()([x, skip]), skip.shape[-1])
    x = layers.UpSampling2D(interpolation="bilinear")(x)
    return keras.Model(inputs, layers.Conv2D(num_classes, 1)(x), name="segmenter")


def load_or_train_segmenter(
    dataset_root, *, dataset="facades", seed=0, epochs=12, size=64, cache_dir=None, verbose="auto"
):
    """The FCN-score segmenter of a dataset: loaded from its cache, or trained once and cached.

    It is trained on the real photos and label maps of `dataset_root/train` and saved in
    `cache_dir` (default `data/.fcn/DATASET-CHECKSUM` in `project_dir()`, never inside the
    dataset, which may be read-only) with a checksum of those files and its settings;
    when either changes it is trained again. Training is deterministic for a given seed.

    Args:
        dataset_root: Aligned dataset folder (`train/*.jpg`, A = photo, B = label map).
        dataset: `"facades"` or `"cityscapes"`; others have no label side (`ValueError`).
        seed: Seed of the weights and the shuffling.
        epochs: Passes over the photos and their mirror images.
        size: Side the segmenter works at; photos are resized to it.
        cache_dir: Folder of `segmenter.keras` and `segmenter.json`.
        verbose: `fit`'s progress bar.

    Returns:
        A `keras.Model`: photos in [-1, 1] -> class logits.

    Example:

    >>> segmenter = load_or_train_segmenter("data/facades")
    """
    names = _labelled(dataset)[0]
    root = Path(dataset_root)
    files = sorted(p for p in (root / "train").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not files:
        raise FileNotFoundError(f"No training images in {root / 'train'}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    default = project_dir() / "data" / ".fcn" / f"{dataset}-{digest.hexdigest()[:12]}"
    cache = Path(cache_dir) if cache_dir is not None else default
    config = {"dataset": dataset, "seed": seed, "epochs": epochs, "size": size, "batch_size": 8}
    record = {"checksum": digest.hexdigest(), "config": config, "keras": keras.__version__}
    with contextlib.suppress(OSError, ValueError):  # no cache yet, or an unreadable one
        if json.loads((cache / "segmenter.json").read_text()) == record:
            return keras.saving.load_model(cache / "segmenter.keras", compile=False)
    photos, labels = load_labelled(files, dataset, size)
    print(f"Training the FCN-score segmenter on {len(files)} photos of {root} (cached in {cache})")
    keras.utils.set_random_seed(seed)
    segmenter = _build_segmenter(len(names), size)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    segmenter.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss)
    x, y = (np.concatenate([a, a[:, :, ::-1]]) for a in (photos, labels))  # + mirror images
    segmenter.fit(x, y, batch_size=8, epochs=epochs, verbose=verbose)
    with atomic_path(cache / "segmenter.keras") as tmp:
        segmenter.save(tmp)
    with atomic_path(cache / "segmenter.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return segmenter


def load_labelled(files, dataset="facades", size=None):
    """Photos (A, left half) and decoded label maps (B, right half) of aligned files.

    Args:
        files: Aligned `A|B` image files.
        dataset: Decides the palette (see `decode_labels`).
        size: Resize both to `size x size` (photos smoothly, labels by nearest pixel);
            `None` keeps the files' size.

    Returns:
        `(photos, labels)`: float32 `(N, H, W, 3)` in [-1, 1] and int32 `(N, H, W)`.
    """
    photos, labels = [], []
    for path in files:
        image = read_rgb(path)
        half = image.shape[1] // 2
        photos.append(_resize(image[None, :, :half], size)[0])
        label = image[None, :, half:]
        if size is not None:
            label = ops.image.resize(label, (size, size), interpolation="nearest")
        labels.append(decode_labels(ops.convert_to_numpy(label).astype(np.uint8)[0], dataset))
    return np.stack(photos), np.stack(labels)


def fcn_score(photos, label_maps, segmenter, num_classes=None):
    """The paper's FCN-score: how well `segmenter` recovers `label_maps` from `photos`.

    As the paper's evaluation code: one confusion matrix over all pixels of all images, then
    per-pixel accuracy, the mean over classes of per-class accuracy, and the mean class IoU
    (classes neither in the labels nor predicted are skipped; label -1 is ignored).

    Args:
        photos: `(N, H, W, 3)` generated (or real) photos, floats in [-1, 1] or uint8.
        label_maps: `(N, H', W')` class indices, e.g. from `decode_labels`.
        segmenter: From `load_or_train_segmenter`.
        num_classes: Defaults to the segmenter's number of outputs.

    Returns:
        A dict of floats: `per_pixel_acc`, `per_class_acc`, `class_iou`.

    Example:

    >>> photos, labels = load_labelled(sorted(Path("data/facades/test").glob("*.jpg")))
    >>> fcn_score(photos, labels, load_or_train_segmenter("data/facades"))["per_pixel_acc"]
    """
    num_classes = num_classes or segmenter.output_shape[-1]
    size = segmenter.input_shape[1]
    labels = np.asarray(label_maps)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for start in range(0, len(labels), 16):
        x = _resize(photos[start : start + 16], size)
        logits = ops.image.resize(segmenter(x, training=False), labels.shape[1:3])
        predicted = ops.convert_to_numpy(ops.argmax(logits, axis=-1)).ravel()
        truth = labels[start : start + 16].ravel()
        keep = (truth >= 0) & (truth < num_classes)
        pairs = truth[keep] * num_classes + predicted[keep]
        confusion += np.bincount(pairs, minlength=num_classes**2).reshape(confusion.shape)
    hits = np.diag(confusion).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = hits / confusion.sum(1)
        iou = hits / (confusion.sum(1) + confusion.sum(0) - hits)
    return {
        "per_pixel_acc": float(hits.sum() / max(confusion.sum(), 1)),
        "per_class_acc": float(np.nanmean(per_class)),
        "class_iou": float(np.nanmean(iou)),
    }


def _resize(images, size):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images / np.float32(127.5) - 1
    if size is not None and images.shape[1:3] != (size, size):
        images = ops.convert_to_numpy(ops.image.resize(images, (size, size), antialias=True))
    return images.astype(np.float32)
