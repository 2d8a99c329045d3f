"""Paired image data for Pix2Pix: checking, loading and combining A|B datasets.

Two folder layouts are understood:

* **aligned** (the pix2pix datasets): `root/<split>/*.jpg`, each file holding
  image A on the left half and image B on the right half.
* **two-folder**: `root/A/<split>/<name>` and `root/B/<split>/<name>`, where
  A and B are paired by identical file names. It is chosen whenever both
  `root/A` and `root/B` are folders.

Image files are those ending in `.jpg`, `.jpeg`, `.png` or `.bmp` (any case).
Hidden files (names starting with ".", e.g. macOS `._x.jpg`) are ignored.
EXIF orientation is ignored, like the official PyTorch code does.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DIRECTIONS = ("AtoB", "BtoA")

# Formats whose every variant `tf.io.decode_image` decodes correctly (checked
# empirically: grayscale, palette, LA/RGBA, CMYK JPEG, 8- and 16-bit PNG).
_TF_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP"})
# TF's BMP decoder ignores palettes and compression (8-bit palette BMPs come out
# as wrong grey levels, 1-bit ones fail), so only plain 24/32-bit BMPs are safe.
_TF_BMP_RAWMODES = frozenset({"BGR", "BGRX", "BGRA"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


@dataclasses.dataclass(frozen=True)
class BadFile:
    """A file (or folder) that cannot be used, with the reason why.

    Args:
        path: Path of the offending file or split folder.
        reason: Short human-readable explanation.
    """

    path: str
    reason: str

    def __str__(self):
        return f"{self.path}: {self.reason}"


class BadImageError(ValueError):
    """Raised by `load_paired` when some image files of a split are unusable.

    The message lists every bad file with its reason; the list itself is
    available as the `bad` attribute (a list of `BadFile`).
    """

    def __init__(self, bad):
        self.bad = list(bad)
        super().__init__(
            format_report(self.bad) + "\nFix or remove these files, or pass skip_bad=True "
            "to skip them (`python -m p2p_keras check-data ROOT` lists them too)."
        )


@dataclasses.dataclass(frozen=True)
class _Scan:
    error: str | None = None
    use_pillow: bool = False
    size: tuple[int, int] = (0, 0)  # (width, height), as Pillow reports it


@dataclasses.dataclass(frozen=True)
class _Pair:
    a: str
    b: str | None  # None: aligned layout, `a` holds A|B side by side
    a_pillow: bool
    b_pillow: bool = False


class _SplitError(FileNotFoundError):
    def __init__(self, folder, reason, root):
        self.folder, self.reason = str(folder), reason
        splits = ", ".join(_available_splits(root)) or "none"
        super().__init__(f"{reason}: {folder} (splits found under {root}: {splits})")


# --------------------------------------------------------------------------- public API


def load_paired(
    root,
    split="train",
    *,
    direction="AtoB",
    image_size=256,
    load_size=286,
    training=None,
    batch_size=1,
    shuffle_buffer=400,
    seed=None,
    cache=True,
    skip_bad=False,
    square_halves=True,
) -> tf.data.Dataset:
    """Builds a `tf.data.Dataset` of `(input, target)` batches from a paired dataset.

    Every file of the split is first checked with a full decode; bad files raise
    `BadImageError` (or are skipped with a warning if `skip_bad=True`).

    Training follows the pix2pix paper / official code: both halves are resized
    (bicubic) to `load_size`, randomly cropped to `image_size` with the same
    window, and mirrored left-right together with probability 0.5; the dataset
    is shuffled and batched with `drop_remainder=True`. Evaluation only resizes
    to `image_size` and keeps the file order (sorted by name).

    Args:
        root: Dataset folder, in the aligned or the two-folder layout.
        split: Split folder name, e.g. `"train"`, `"val"` or `"test"`.
        direction: `"AtoB"` (input = A, the left half) or `"BtoA"`.
        image_size: Output size, an int or a `(height, width)` tuple.
        load_size: Size before the random crop (training only), an int or a
            `(height, width)` tuple, at least `image_size`.
        training: Whether to jitter, shuffle and drop the last partial batch.
            `None` means `split == "train"`.
        batch_size: Images per batch.
        shuffle_buffer: Shuffle buffer size in training; 0 or 1 disables it.
        seed: Integer seed making shuffle, crops and flips exactly reproducible
            (each epoch still gets different ones). `None` for random.
        cache: `True` caches the decoded, resized uint8 images in memory, a
            path caches them in that file, `False` re-decodes every epoch.
            The cache holds about `pairs * height * width * 6` bytes at load
            size (about 200 MB for the 400 facades at 286). A file cache is
            reused as is: delete it after changing any option.
        skip_bad: Skip bad files with a warning instead of raising.
        square_halves: Aligned layout only: require width == 2 * height (the
            standard pix2pix datasets). Set to `False` for non-square halves;
            then only an even width is required.

    Returns:
        A `tf.data.Dataset` yielding `(input, target)` float32 tensors in
        [-1, 1], each of shape `(batch, height, width, 3)`.

    Example:

    >>> train_ds = load_paired("datasets/facades", "train", direction="BtoA", seed=0)
    >>> inp, tar = next(iter(train_ds))
    >>> inp.shape
    TensorShape([1, 256, 256, 3])
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    training = split == "train" if training is None else bool(training)
    out_hw = _size_hw(image_size, "image_size")
    load_hw = _size_hw(load_size, "load_size") if training else out_hw
    if load_hw[0] < out_hw[0] or load_hw[1] < out_hw[1]:
        raise ValueError(f"load_size {load_hw} must be at least image_size {out_hw}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    root = Path(root)
    pairs, bad = _collect_split(root, split, square_halves)
    if bad and not skip_bad:
        raise BadImageError(bad)
    if bad:
        warnings.warn(f"Skipping bad files in {root}/{split}.\n{format_report(bad)}", stacklevel=2)
    if not pairs:
        raise ValueError(f"No usable image pairs left in split {split!r} of {root}")
    if training and len(pairs) < batch_size:
        raise ValueError(
            f"Split {split!r} of {root} has {len(pairs)} usable pairs, fewer than "
            f"batch_size={batch_size}; training drops the partial batch, so it would be empty."
        )

    ds = tf.data.Dataset.from_tensor_slices(_pair_columns(pairs))
    ds = ds.map(_pair_loader(pairs, load_hw), num_parallel_calls=tf.data.AUTOTUNE)
    if cache is True:
        ds = ds.cache()
    elif cache:
        ds = ds.cache(os.fspath(cache))
    if training:
        if shuffle_buffer and shuffle_buffer > 1:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # Randomness comes from a seed stream zipped in, not from stateful ops,
        # so results do not depend on parallel map scheduling.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
        ds = ds.map(
            lambda pair, s: _jitter(pair[0], pair[1], s, out_hw),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def finish(a, b):
        a, b = _to_float(a), _to_float(b)
        return (a, b) if direction == "AtoB" else (b, a)

    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def check_paired(root, splits=None, *, square_halves=True) -> list[BadFile]:
    """Checks every image file of a paired dataset with a full decode.

    Args:
        root: Dataset folder, in the aligned or the two-folder layout.
        splits: Split names to check; `None` checks every split folder found.
        square_halves: Aligned layout only: require width == 2 * height.
            With `False`, only an even width is required.

    Returns:
        A list of `BadFile`, empty when everything is usable. Reasons include
        an empty (0 byte) file, an unrecognized or truncated/corrupt image, an
        aligned image that is not an A|B pair, a file without its partner in the
        two-folder layout, and a missing or empty split folder.

    Example:

    >>> bad = check_paired("datasets/facades")
    >>> print(format_report(bad))
    No problems found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    splits = _requested_splits(splits, _available_splits(root), root)
    bad = []
    for split in splits:
        try:
            bad.extend(_collect_split(root, split, square_halves)[1])
        except _SplitError as e:
            bad.append(BadFile(e.folder, e.reason))
    return bad


def format_report(bad) -> str:
    """Formats `check_paired` results for a terminal.

    Args:
        bad: List of `BadFile`.

    Returns:
        A multi-line string: a count, then one `path: reason` line per file,
        or `"No problems found."` when `bad` is empty.
    """
    if not bad:
        return "No problems found."
    lines = [f"{len(bad)} bad file{'s' if len(bad) != 1 else ''}:"]
    lines += [f"  {b}" for b in bad]
    return "\n".join(lines)


def write_aligned(a_root, b_root, out_root, *, splits=None, size=None) -> dict[str, int]:
    """Combines A and B images side by side into the aligned layout.

    Same convention as the official `datasets/combine_A_and_B.py`: `a_root` and
    `b_root` are the A and B folders (e.g. `root/A` and `root/B`), each holding
    `<split>/<name>` files paired by file name. Output goes to
    `out_root/<split>/<name>` with A's file name and format (JPEG at quality 95;
    PNG and BMP stay lossless). Both halves are converted to RGB and B is
    resized (bicubic) to A's size. Every file is checked first, so nothing is
    written when any input is bad; each file is written atomically.

    Args:
        a_root: Folder of A images, with one subfolder per split.
        b_root: Folder of B images, with the same split subfolders and names.
        out_root: Output folder; created if needed. Existing files with the
            same names are replaced.
        splits: Split names to combine; `None` means every split folder of `a_root`.
        size: Optional size of each half, an int or a `(height, width)` tuple;
            `None` keeps A's size.

    Returns:
        A dict mapping each split name to the number of pairs written.

    Example:

    >>> write_aligned("raw/A", "raw/B", "datasets/mine")
    {'train': 120, 'val': 20}
    """
    a_root, b_root, out_root = Path(a_root), Path(b_root), Path(out_root)
    size_hw = None if size is None else _size_hw(size, "size")
    splits = _requested_splits(splits, _subfolders(a_root), a_root)
    jobs, bad = [], []
    for split in splits:
        a_dir, b_dir = a_root / split, b_root / split
        missing = [d for d in (a_dir, b_dir) if not d.is_dir()]
        if missing:
            raise FileNotFoundError(f"Split folder not found: {missing[0]}")
        pairs, split_bad = _scan_pairs(a_dir, b_dir)
        if not pairs and not split_bad:
            raise FileNotFoundError(f"No image files in {a_dir}")
        bad += split_bad
        jobs += [(split, p, out_root / split / Path(p.a).name) for p in pairs]
    if bad:
        raise BadImageError(bad)
    for split in splits:
        (out_root / split).mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor() as pool:
        list(pool.map(lambda job: _write_pair(job[1].a, job[1].b, job[2], size_hw), jobs))
    return {split: sum(job[0] == split for job in jobs) for split in splits}


def split_pair(image, direction="AtoB"):
    """Splits an aligned A|B image (or batch) into `(input, target)`.

    Like the official code, A is the left `width // 2` columns and B the rest.

    Args:
        image: Array or tensor of shape `(..., height, width, channels)`.
        direction: `"AtoB"` returns `(A, B)`, `"BtoA"` returns `(B, A)`.

    Returns:
        The `(input, target)` halves.

    Example:

    >>> a, b = split_pair(np.zeros((256, 512, 3)))
    >>> a.shape
    (256, 256, 3)
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    width = image.shape[-2]
    if width is None:
        width = tf.shape(image)[-2]
    a, b = image[..., : width // 2, :], image[..., width // 2 :, :]
    return (a, b) if direction == "AtoB" else (b, a)


def denormalize(images) -> np.ndarray:
    """Maps images from [-1, 1] back to uint8 [0, 255], e.g. for plotting.

    Args:
        images: Array or tensor of any shape with values in [-1, 1].

    Returns:
        A uint8 NumPy array of the same shape (out-of-range values are clipped).

    Example:

    >>> denormalize(np.array([-1.0, 0.0, 1.0]))
    array([  0, 128, 255], dtype=uint8)
    """
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` that replaces `path` only if the block succeeds.

    The temporary name keeps the suffix (e.g. `.model.tmp-<pid>-<rand>.keras`), so writers that
    look at it (`model.save`, `Image.save`, `np.save`) work unchanged. On success it is renamed
    onto `path` (a folder replaces a previous folder); on an exception it is removed and any
    previous `path` is left as it was.

    Args:
        path: The file (or folder) to write.

    Example:

    >>> with atomic_path("runs/config.json") as tmp:
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    old = None
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            # os.replace cannot overwrite a non-empty folder: move the old one aside first.
            old = path.with_name(f".{stem}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover is not None:
                leftover.unlink(missing_ok=True)


# --------------------------------------------------------------------------- folders and scanning


def _size_hw(size, name):
    hw = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in hw):
        raise ValueError(f"{name} must be a positive int or a (height, width) tuple, got {size!r}")
    return int(hw[0]), int(hw[1])


def _requested_splits(splits, available, root):
    """`splits` as a list; None means every split folder found, and there must be one."""
    if splits is None:
        if not available:
            raise FileNotFoundError(f"No split folders (e.g. train, val, test) in {root}")
        return list(available)
    return [splits] if isinstance(splits, str) else list(splits)


def _is_two_folder(root):
    return (root / "A").is_dir() and (root / "B").is_dir()


def _subfolders(folder):
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _available_splits(root):
    if _is_two_folder(root):
        return sorted(set(_subfolders(root / "A")) | set(_subfolders(root / "B")))
    return _subfolders(root)


def _image_files(folder):
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _collect_split(root, split, square_halves):
    """Returns `(pairs, bad)` for one split; raises `_SplitError` if it has no files."""
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset folder not found: {root}")
    if _is_two_folder(root):
        a_dir, b_dir = root / "A" / split, root / "B" / split
        for folder in (a_dir, b_dir):
            if not folder.is_dir():
                raise _SplitError(folder, "split folder not found", root)
        pairs, bad = _scan_pairs(a_dir, b_dir)
        if not pairs and not bad:
            raise _SplitError(a_dir, "no image files", root)
        return pairs, bad
    folder = root / split
    if not folder.is_dir():
        raise _SplitError(folder, "split folder not found", root)
    files = _image_files(folder)
    if not files:
        raise _SplitError(folder, f"no image files ({', '.join(IMAGE_EXTENSIONS)})", root)
    pairs, bad = [], []
    for path, scan in zip(files, _scan_many(files), strict=True):
        error = scan.error or _pair_shape_error(scan.size, square_halves)
        if error:
            bad.append(BadFile(str(path), error))
        else:
            pairs.append(_Pair(str(path), None, scan.use_pillow))
    return pairs, bad


def _scan_pairs(a_dir, b_dir):
    a_files = {p.name: p for p in _image_files(a_dir)}
    b_files = {p.name: p for p in _image_files(b_dir)}
    names = sorted(a_files.keys() & b_files.keys())
    bad = [
        BadFile(str(files[name]), f"missing partner: {other / name} not found")
        for files, other in ((a_files, b_dir), (b_files, a_dir))
        for name in sorted(files.keys() - names)
    ]
    scans = _scan_many([a_files[n] for n in names] + [b_files[n] for n in names])
    pairs = []
    for name, a_scan, b_scan in zip(names, scans[: len(names)], scans[len(names) :], strict=True):
        errors = [
            BadFile(str(files[name]), scan.error)
            for files, scan in ((a_files, a_scan), (b_files, b_scan))
            if scan.error
        ]
        bad += errors
        if not errors:
            pairs.append(
                _Pair(str(a_files[name]), str(b_files[name]), a_scan.use_pillow, b_scan.use_pillow)
            )
    return pairs, bad


def _pair_shape_error(size, square_halves):
    width, height = size
    if square_halves and width != 2 * height:
        return f"not an A|B pair: width {width} is not 2 x height {height}"
    if not square_halves and (width % 2 or width < 2):
        return f"not an A|B pair: width {width} is not even"
    return None


def _scan_many(paths):
    # Pillow releases the GIL while decoding, so threads give real parallelism.
    with concurrent.futures.ThreadPoolExecutor() as pool:
        return list(pool.map(_scan_file, paths))


def _scan_file(path):
    try:
        if os.path.getsize(path) == 0:
            return _Scan("empty file (0 bytes)")
        with Image.open(path) as im:
            use_pillow = not _tf_decodes(im)  # before load(), which empties im.tile
            im.load()
            if im.width < 1 or im.height < 1:
                return _Scan("image has no pixels")
            return _Scan(None, use_pillow, im.size)
    except UnidentifiedImageError:
        return _Scan("not an image (unrecognized format)")
    except Image.DecompressionBombError as e:
        return _Scan(f"too large for Pillow's safety limit ({e})")
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        return _Scan(f"truncated or corrupt image ({type(e).__name__}: {e})")


def _tf_decodes(im):
    """Whether `tf.io.decode_image` decodes this (not yet loaded) Pillow image correctly."""
    if im.format != "BMP":
        return im.format in _TF_FORMATS
    if not im.tile:
        return False
    codec, args = im.tile[0][0], im.tile[0][-1]
    rawmode = args[0] if isinstance(args, tuple) else args
    return codec == "raw" and rawmode in _TF_BMP_RAWMODES


def _pil_to_rgb(im):
    if im.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own convert() clips 16-bit values at 255 instead of scaling.
        scaled = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))
    return im.convert("RGB")


def read_rgb(path) -> np.ndarray:
    """Reads any image Pillow can open as a uint8 RGB array.

    Grayscale, palette, RGBA/LA, CMYK and 16-bit images are converted (16-bit values are scaled,
    not clipped).

    Args:
        path: Image file.

    Returns:
        A uint8 array of shape `(height, width, 3)`.
    """
    with Image.open(os.fsdecode(path)) as im:
        return np.asarray(_pil_to_rgb(im), dtype=np.uint8)


def _write_pair(a_path, b_path, out_path, size_hw):
    with Image.open(a_path) as a_im, Image.open(b_path) as b_im:
        a, b = _pil_to_rgb(a_im), _pil_to_rgb(b_im)
    if size_hw is not None:
        a = a.resize(size_hw[::-1], Image.Resampling.BICUBIC)
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.BICUBIC)
    ab = Image.new("RGB", (2 * a.width, a.height))
    ab.paste(a, (0, 0))
    ab.paste(b, (a.width, 0))
    fmt = {".png": "PNG", ".bmp": "BMP"}.get(out_path.suffix.lower(), "JPEG")
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            ab.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, out_path)
    except BaseException:
        os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- tf.data pieces


def _pair_columns(pairs):
    return (
        [p.a for p in pairs],
        [p.b or "" for p in pairs],
        [p.a_pillow for p in pairs],
        [p.b_pillow for p in pairs],
    )


def _pair_loader(pairs, size_hw):
    aligned = pairs[0].b is None
    decode = _decode_rgb if any(p.a_pillow or p.b_pillow for p in pairs) else _decode_rgb_tf

    def load(a_path, b_path, a_pillow, b_pillow):
        if aligned:
            a, b = split_pair(decode(a_path, a_pillow))
        else:
            a, b = decode(a_path, a_pillow), decode(b_path, b_pillow)
        return _resize_uint8(a, size_hw), _resize_uint8(b, size_hw)

    return load


def _decode_rgb_tf(path, use_pillow=None):
    del use_pillow
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _decode_rgb(path, use_pillow):
    image = tf.cond(
        use_pillow,
        lambda: tf.numpy_function(read_rgb, [path], tf.uint8, stateful=False),
        lambda: _decode_rgb_tf(path),
    )
    image.set_shape([None, None, 3])
    return image


def _resize_uint8(image, size_hw):
    # Bicubic like the official code; antialias matches PIL when shrinking.
    resized = tf.image.resize(image, size_hw, method="bicubic", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _jitter(a, b, seed, size_hw):
    crop_seed, flip_seed = tf.unstack(tf.random.split(seed, 2))
    # Crop and flip A and B stacked together so they share one window and one flip.
    pair = tf.concat([a, b], axis=-1)
    pair = tf.image.stateless_random_crop(pair, [size_hw[0], size_hw[1], 6], seed=crop_seed)
    flip = tf.random.stateless_uniform([], seed=flip_seed) < 0.5
    pair = tf.cond(flip, lambda: tf.reverse(pair, axis=[1]), lambda: pair)
    return pair[..., :3], pair[..., 3:]


def _to_float(image):
    return tf.cast(image, tf.float32) / 127.5 - 1.0
