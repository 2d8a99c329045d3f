"""Paired image data for Pix2Pix: loading, checking, the paper's random jitter, atomic writes.

Layouts: **aligned** `root/<split>/*.jpg` (A|B side by side, as the pix2pix datasets) or
**two-folder** `root/A/<split>/<name>` + `root/B/<split>/<name>`.
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import secrets
import shutil
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DIRECTIONS = ("AtoB", "BtoA")
CACHE_FRACTION = 0.5  # of the physical memory, the most `cache="auto"` keeps in memory


@dataclasses.dataclass(frozen=True)
class BadFile:
    """A file (or split folder) that cannot be used, and why."""

    path: str
    reason: str

    def __str__(self):
        return f"{self.path}: {self.reason}"


class BadImageError(ValueError):
    """Some image files of a split are unusable; `.bad` lists them as `BadFile`s."""

    def __init__(self, bad):
        self.bad = list(bad)
        hint = "Fix or remove these files, or pass skip_bad=True to skip them."
        super().__init__(f"{format_report(self.bad)}\n{hint}")


def load_paired(
    root, split="train", *, direction="AtoB", image_size=256, load_size=286, training=None,
    batch_size=1, seed=None, cache="auto", skip_bad=False
) -> tf.data.Dataset:  # fmt: skip
    """A `tf.data.Dataset` of `(input, target)` float32 batches in [-1, 1], `(batch, h, w, 3)`.

    Every file is first checked with a full decode; bad files raise `BadImageError`. Training
    applies `jitter`, shuffles the whole split each epoch and drops the last partial batch;
    evaluation resizes to `image_size` and keeps name order.

    Args:
        direction: `"AtoB"` (input = A, the left half) or `"BtoA"`.
        image_size: An int or `(height, width)`; `load_size`: the size before the crop.
        training: Jitter, shuffle and drop the remainder; `None` means `split == "train"`.
        seed: Makes shuffle, crops and flips reproducible (epochs, and iterators, still differ).
        cache: `True` caches decoded pairs in memory, a path in that file (delete it after
            changing options), `False` decodes every epoch; `"auto"` caches in memory when
            they fit in `CACHE_FRACTION` of the RAM, else warns and decodes every epoch.
        skip_bad: Skip bad files with a warning instead of raising.

    >>> inputs, targets = next(iter(load_paired("data/facades", direction="BtoA", seed=0)))
    """
    _check_direction(direction)
    training = split == "train" if training is None else bool(training)
    out_hw = _size_hw(image_size, "image_size")
    load_hw = _size_hw(load_size, "load_size") if training else out_hw
    if load_hw[0] < out_hw[0] or load_hw[1] < out_hw[1]:
        raise ValueError(f"load_size {load_hw} must be at least image_size {out_hw}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root = Path(root)
    if split not in _splits(root):
        found = ", ".join(_splits(root)) or "none"
        raise FileNotFoundError(f"No split folder {split!r} in {root} (splits found: {found})")
    pairs, bad = _collect(root, split)
    if bad and not skip_bad:
        raise BadImageError(bad)
    if bad:
        warnings.warn(f"Skipping bad files in {root}/{split}.\n{format_report(bad)}", stacklevel=2)
    if not pairs:
        raise ValueError(f"No usable image pairs left in split {split!r} of {root}")
    if training and len(pairs) < batch_size:
        raise ValueError(f"{root}/{split}: {len(pairs)} pairs < batch_size={batch_size}")
    aligned = pairs[0][1] == ""

    def load(a_path, b_path):
        a, b = split_pair(_decode(a_path)) if aligned else (_decode(a_path), _decode(b_path))
        return resize(a, load_hw), resize(b, load_hw)

    def finish(a, b):
        a, b = normalize(a), normalize(b)
        return (a, b) if direction == "AtoB" else (b, a)

    if cache == "auto":  # in memory if the decoded uint8 pairs fit, else from disk every epoch
        needed, limit = len(pairs) * load_hw[0] * load_hw[1] * 3 * 2, _cache_limit()
        cache = needed <= limit
        if not cache:
            warnings.warn(
                f"{root}/{split}: the decoded pairs need {needed / 1e9:.3g} GB, more than the "
                f"memory cache's {limit / 1e9:.3g} GB ({CACHE_FRACTION:.0%} of the RAM); "
                "decoding from disk every epoch instead. Pass cache=PATH for a file cache.",
                stacklevel=2,
            )
    # The whole split, each epoch: the cached pairs after a memory cache, else the file names
    # before decoding (a file cache then replays the first epoch's order).
    ds = tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs, strict=True))))
    if training and cache is not True:
        ds = ds.shuffle(len(pairs), seed=seed)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache() if cache is True else ds.cache(os.fspath(cache))
    if training:
        if cache is True:
            ds = ds.shuffle(len(pairs), seed=seed)
        # A zipped seed stream rather than stateful ops: results do not depend on scheduling.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda pair, s: jitter(*pair, s, out_hw), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def jitter(a, b, seed, image_size, load_size=None):
    """The paper's random jitter, the same for both uint8 images `(height, width, 3)` of a pair.

    Resizes both to `load_size` (bicubic; `None`: already there), crops one random
    `image_size` window from both and mirrors both left-right with probability 0.5, like the
    TF pix2pix tutorial's `random_jitter`. Stateless: a `seed` (an int or a shape `(2,)`
    integer tensor) always gives the same crop and flip.

    >>> a2, b2 = jitter(a, b, seed=0, image_size=256, load_size=286)
    """
    if load_size is not None:
        a, b = (resize(x, _size_hw(load_size, "load_size")) for x in (a, b))
    seed = tf.cast(seed, tf.int64)
    seed = tf.stack([seed, 0 * seed]) if seed.shape.rank == 0 else seed
    crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    pair = tf.concat([a, b], axis=-1)  # one crop window and one flip for both
    pair = tf.image.stateless_random_crop(
        pair, [*_size_hw(image_size, "image_size"), 6], seed=crop_seed
    )
    flip = tf.random.stateless_uniform([], seed=flip_seed) < 0.5
    pair = tf.cond(flip, lambda: tf.reverse(pair, axis=[1]), lambda: pair)
    return pair[..., :3], pair[..., 3:]


def check_paired(root, splits=None) -> list[BadFile]:
    """The `BadFile`s of `splits` (a name, a list, or `None`: all), each file fully decoded.

    >>> print(format_report(check_paired("data/facades")))
    No problems found.
    """
    root = Path(root)
    splits = _splits(root) if splits is None else [splits] if isinstance(splits, str) else splits
    if not splits:
        raise FileNotFoundError(f"No split folders (e.g. train, val, test) in {root}")
    return [b for split in splits for b in _collect(root, split)[1]]


def format_report(bad) -> str:
    """Formats `check_paired` results: a count, then one `path: reason` line per file."""
    if not bad:
        return "No problems found."
    return "\n".join([f"{len(bad)} bad file{'s' * (len(bad) != 1)}:", *(f"  {b}" for b in bad)])


def split_pair(image, direction="AtoB"):
    """Splits A|B images `(..., h, w, c)` at `w // 2` into `(A, B)`, or `(B, A)` for "BtoA"."""
    _check_direction(direction)
    width = image.shape[-2] if image.shape[-2] is not None else tf.shape(image)[-2]
    a, b = image[..., : width // 2, :], image[..., width // 2 :, :]
    return (a, b) if direction == "AtoB" else (b, a)


def normalize(images):
    """Maps uint8 images to a float32 tensor in [-1, 1], as `load_paired` gives."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def denormalize(images) -> np.ndarray:
    """Maps images from [-1, 1] to uint8 [0, 255] (clipped), e.g. for plotting.

    >>> denormalize(np.array([-1.0, 0.0, 1.0]))
    array([  0, 128, 255], dtype=uint8)
    """
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def resize(images, size_hw):
    """Resizes uint8 images (batched or not) to `size_hw`: bicubic, antialiased like Pillow."""
    resized = tf.image.resize(images, size_hw, method="bicubic", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def read_rgb(path) -> np.ndarray:
    """Reads any image Pillow opens as a uint8 RGB array; 16-bit values are scaled, not clipped."""
    with Image.open(os.fsdecode(path)) as im:
        if im.mode.startswith("I"):  # Pillow's convert() clips 16-bit values at 255
            im = Image.fromarray(np.clip(np.asarray(im) / 257 + 0.5, 0, 255).astype(np.uint8))
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto it only if the block succeeds.

    It keeps the suffix (`.model.tmp-<pid>-<rand>.keras`), for `model.save` and the like; a
    folder replaces any previous folder. On an exception, `path` is left as it was.

    >>> with atomic_path("runs/config.json") as tmp:
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)]
    tag = f"{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    tmp, old = path.with_name(f".{stem}.tmp-{tag}"), path.with_name(f".{stem}.old-{tag}")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # os.replace cannot overwrite a non-empty folder
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _check_direction(direction):
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _size_hw(size, name):
    hw = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in hw):
        raise ValueError(f"{name} must be a positive int or a (height, width) tuple, got {size!r}")
    return int(hw[0]), int(hw[1])


def _splits(root):
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    sides = [root / "A", root / "B"] if _two_folder(root) else [root]
    subfolders = (d for side in sides if side.is_dir() for d in side.iterdir() if d.is_dir())
    return sorted({d.name for d in subfolders if not d.name.startswith(".")})


def _two_folder(root):
    return (root / "A").is_dir() and (root / "B").is_dir()


def pair_files(folders):
    """`(paths, bad)`: each name's paths in all `folders` (name order); `BadFile`s for the rest."""
    files = [{p.name: p for p in sorted(Path(f).iterdir()) if _is_image(p)} for f in folders]
    names = sorted(set(files[0]).intersection(*files))
    bad = [
        BadFile(str(path), f"missing partner: {Path(other) / name} not found")
        for mine, other in zip(files, folders[::-1], strict=True)
        for name, path in mine.items()
        if name not in names
    ]
    return [[f[name] for f in files] for name in names], bad


def _is_image(path):
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.name[0] != "."


def _collect(root, split):
    """`(pairs, bad)` of a split: pairs are `(a, b)` paths, `b = ""` in the aligned layout."""
    two_folder = _two_folder(root)
    folders = [root / "A" / split, root / "B" / split] if two_folder else [root / split]
    for folder in folders:
        if not folder.is_dir():
            return [], [BadFile(str(folder), "split folder not found")]
    paths, bad = pair_files(folders)
    if not paths and not bad:
        return [], [BadFile(str(folders[0]), f"no image files ({', '.join(IMAGE_EXTENSIONS)})")]
    pairs = []
    with concurrent.futures.ThreadPoolExecutor() as pool:  # Pillow decodes without the GIL
        for pair in pool.map(lambda pair: [(p, _scan(p, not two_folder)) for p in pair], paths):
            errors = [BadFile(str(path), problem) for path, problem in pair if problem]
            bad += errors
            if not errors:
                pairs.append((str(pair[0][0]), str(pair[-1][0]) if two_folder else ""))
    return pairs, bad


def _scan(path, aligned):
    """What is wrong with an image file (after a full decode), or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            im.load()
        width, height = im.size
    except UnidentifiedImageError:
        return "not an image (unrecognized format)"
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        return f"truncated or corrupt image ({type(e).__name__}: {e})"
    if aligned and width != 2 * height:
        return f"not an A|B pair: width {width} is not 2 x height {height}"
    return None


def _decode(path):
    image = tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def _cache_limit():  # in bytes
    try:
        return CACHE_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no limit
        return float("inf")
