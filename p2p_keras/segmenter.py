"""The paper's FCN-score, offline: segment generated photos, compare with the input labels.

The paper's FCN weights cannot be downloaded offline, so a small U-Net is trained once on the
dataset's training photos and label maps (12 CMP classes; Cityscapes' 19 evaluation classes).
"""

import contextlib
import functools
import hashlib
import itertools
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from p2p_keras import data, metrics, project_dir

# The dominant colours of flat regions of the pix2pix `facades` label maps (a jet-like colormap).
CMP_PALETTE = (
    ("background", (0, 0, 222)), ("facade", (0, 48, 255)), ("window", (0, 128, 255)),
    ("door", (0, 207, 255)), ("cornice", (32, 255, 224)), ("sill", (112, 254, 142)),
    ("balcony", (192, 255, 63)), ("blind", (255, 240, 1)), ("deco", (255, 159, 0)),
    ("molding", (255, 80, 0)), ("pillar", (254, 0, 0)), ("shop", (174, 0, 0)),
)  # fmt: skip
CLASS_NAMES = tuple(name for name, _ in CMP_PALETTE)
PALETTE_ARRAY = np.array([rgb for _, rgb in CMP_PALETTE], dtype=np.uint8)
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
    "facades": (CLASS_NAMES, PALETTE_ARRAY, np.arange(12)),
    "cityscapes": (
        tuple(name for name, train_id, _ in CITYSCAPES_LABELS if train_id >= 0),
        np.array([colour for *_, colour in CITYSCAPES_LABELS], np.uint8),
        np.array([train_id for _, train_id, _ in CITYSCAPES_LABELS]),
    ),
}


def class_names(dataset):
    """The segmentation classes of `dataset`, or `None` when its files have no label side."""
    return _LABELS[dataset][0] if dataset in _LABELS else None


def _labelled(dataset):
    if dataset not in _LABELS:
        raise ValueError(f"{dataset!r} has no label side: the FCN-score needs label maps")
    return _LABELS[dataset]


def decode_labels(label_images, dataset="facades", *, label_ids=False):
    """Class index per pixel (int32, by nearest colour) of label maps, uint8 or in [-1, 1].

    -1: pixels the score ignores (Cityscapes void); `label_ids`: Cityscapes' 34 label ids.
    """
    classes = _labelled(dataset)[2]
    rgb = np.asarray(label_images)
    rgb = (rgb if rgb.dtype == np.uint8 else data.denormalize(rgb)).astype(np.int32) >> 2
    nearest = _nearest_colour(dataset)[(rgb[..., 0] << 12) | (rgb[..., 1] << 6) | rgb[..., 2]]
    return nearest if label_ids else classes[nearest].astype(np.int32)


@functools.cache
def _nearest_colour(dataset):
    """Palette index nearest to each colour of a 64-level-per-channel lattice (a lookup table)."""
    centres = (np.indices((64, 64, 64)).reshape(3, -1).T * 4 + 1.5).astype(np.float32)
    palette = _LABELS[dataset][1].astype(np.float32)
    dist = (centres**2).sum(1, keepdims=True) - 2 * centres @ palette.T + (palette**2).sum(1)
    return dist.argmin(1).astype(np.int32)


def _build_segmenter(num_classes, size, filters, seed):
    """A small U-Net: photos in [-1, 1] of shape `(size, size, 3)` -> per-pixel class logits."""
    seeds = itertools.count(seed * 1000)  # one initializer seed per layer, no global seed

    def conv(x, width, kernel=3, strides=1):
        init = keras.initializers.GlorotUniform(seed=next(seeds))
        return layers.Conv2D(width, kernel, strides, "same", kernel_initializer=init)(x)

    def block(x, width, strides=1):
        for s in (strides, 1):
            x = layers.ReLU()(layers.BatchNormalization()(conv(x, width, strides=s)))
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
    return keras.Model(inputs, conv(x, num_classes, kernel=1), name="segmenter")


def load_or_train_segmenter(
    dataset_root, *, dataset="facades", seed=0, epochs=40, size=128, filters=32, cache_dir=None,
    verbose="auto"
):  # fmt: skip
    """The FCN-score segmenter of a dataset (photos -> logits): from its cache, or trained once.

    Trained on the `train` split's photos (A) and label maps (B) with the paper's jitter,
    deterministically for a `seed`; cached in `cache_dir` (default `data/.fcn/DATASET-CHECKSUM`
    in `project_dir()`) with the settings and a checksum of the files: either changed, retrained.
    """
    names = _labelled(dataset)[0]
    root = Path(dataset_root)
    files = _split_files(root, "train")
    if not files:
        raise FileNotFoundError(f"No training images in {root / 'train'} or {root / 'A/train'}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    default = project_dir() / "data" / ".fcn" / f"{dataset}-{digest.hexdigest()[:12]}"
    cache = Path(cache_dir) if cache_dir is not None else default
    config = {"dataset": dataset, "seed": seed, "epochs": epochs, "size": size}
    config.update(filters=filters, batch_size=8, jitter=1.12, learning_rate=2e-3)
    record = {"checksum": digest.hexdigest(), "config": config, "keras": keras.__version__}
    with contextlib.suppress(OSError, ValueError):  # no cache yet, or an unreadable one
        if json.loads((cache / "segmenter.json").read_text()) == record:
            return keras.saving.load_model(cache / "segmenter.keras", compile=False)
    photos, labels = load_labelled(root, "train", dataset, round(size * 1.12))
    labels += 1  # uint8 through `jitter`: Cityscapes void (-1) as 0
    print(f"Training the FCN-score segmenter on {len(labels)} photos of {root} (cached in {cache})")
    photos = tf.data.Dataset.from_tensor_slices((data.denormalize(photos), labels.astype(np.uint8)))
    noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def crop(pair, pair_seed):  # `jitter` crops pairs of 3-channel images: labels ride as one
        photo, label = data.jitter(pair[0], tf.repeat(pair[1][..., None], 3, -1), pair_seed, size)
        return data.normalize(photo), tf.cast(label[..., 0], tf.int32) - 1

    photos = photos.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    train = tf.data.Dataset.zip(photos, noise).map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.batch(8, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    segmenter = _build_segmenter(len(names), size, filters, seed)
    rate = keras.optimizers.schedules.CosineDecay(2e-3, epochs * (len(labels) // 8))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    segmenter.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
    segmenter.fit(train, epochs=epochs, verbose=verbose, shuffle=False)
    with data.atomic_path(cache / "segmenter.keras") as tmp:
        segmenter.save(tmp)
    with data.atomic_path(cache / "segmenter.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return segmenter


def load_labelled(root, split="test", dataset="facades", size=None):
    """Photos (A, in [-1, 1]) and decoded label maps (B, int32) of a split, `size` px square.

    Label maps are decoded at the files' size (`size=None`: kept), then resized by nearest
    pixel: a smooth resize would blend two colours at a boundary into a third class.
    """
    photos, labels, native = [], [], data.read_rgb(_split_files(Path(root), split)[0]).shape[0]
    for a, b in data.load_paired(root, split, image_size=native, training=False, batch_size=32):
        hw = (size, size) if size else a.shape[1:3]
        photos.append(data.normalize(data.resize(data.denormalize(a), hw)).numpy())
        label = decode_labels(b.numpy(), dataset)[..., None]
        labels.append(tf.image.resize(label, hw, method="nearest").numpy()[..., 0])
    return np.concatenate(photos), np.concatenate(labels)


def fcn_score(photos, label_maps, segmenter, *, class_names=None):
    """The paper's FCN-score: how well `segmenter` recovers `label_maps` from `photos`.

    As the paper's evaluation code: one confusion matrix over all pixels of all images
    (label -1 ignored), then `metrics.get_scores` (classes absent from the labels count 0).

    Args:
        photos: `(N, H, W, 3)` generated (or real) photos, floats in [-1, 1] or uint8.
        label_maps: `(N, H', W')` class indices, e.g. from `load_labelled`.
        segmenter: From `load_or_train_segmenter`.
        class_names: Names of its classes: adds each class's `acc/NAME` and `iou/NAME`.

    Returns:
        A dict of floats: `per_pixel_acc`, `per_class_acc`, `class_iou` (means over classes).

    Example:
    >>> photos, labels = load_labelled("data/facades", "test", size=128)
    >>> fcn_score(photos, labels, load_or_train_segmenter("data/facades"))["class_iou"]
    """
    num_classes, size = segmenter.output_shape[-1], segmenter.input_shape[1:3]
    labels = np.asarray(label_maps)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for start in range(0, len(labels), 16):
        x = np.asarray(photos[start : start + 16])
        x = x if x.dtype == np.uint8 else data.denormalize(x)
        x = data.normalize(data.resize(x, size) if x.shape[1:3] != tuple(size) else x)
        logits = ops.image.resize(segmenter(x, training=False), labels.shape[1:3])
        predicted = ops.convert_to_numpy(ops.argmax(logits, axis=-1)).ravel()
        truth = labels[start : start + 16].ravel()
        keep = (truth >= 0) & (truth < num_classes)
        pairs = truth[keep] * num_classes + predicted[keep]
        confusion += np.bincount(pairs, minlength=num_classes**2).reshape(confusion.shape)
    accuracy, class_acc, iou = metrics.get_scores(confusion)
    scores = {"per_pixel_acc": accuracy, "per_class_acc": class_acc.mean(), "class_iou": iou.mean()}
    for name, acc, class_iou in zip(class_names or (), class_acc, iou, strict=False):
        scores.update({f"acc/{name}": acc, f"iou/{name}": class_iou})
    return {key: float(value) for key, value in scores.items()}


def _split_files(root, split):
    """The image files of a split: `root/split/` (aligned) or `root/A|B/split/` (two-folder)."""
    files = [p for side in ("", "A", "B") for p in sorted((root / side).glob(f"{split}/*"))]
    return [path for path in files if path.suffix.lower() in data.IMAGE_EXTENSIONS]
