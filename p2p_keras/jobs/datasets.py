"""The pix2pix datasets (`NAME/{train,val[,test]}/*.jpg`, A|B JPEGs): download, resolve, combine,
Cityscapes. Importing it registers the TFDS dataset `pix2pix` (`tfds.load("pix2pix/facades")`).
`P2P_KERAS_DATASET_URL` replaces the pix2pix server (a mirror, or tests)."""

import contextlib
import functools
import hashlib
import os
import tarfile
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from p2p_keras import project_dir
from p2p_keras.data import BadFile, BadImageError, atomic_path, pair_files, read_rgb, resize

BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"
URL_ENV_VAR = "P2P_KERAS_DATASET_URL"


class PairedDataset(NamedTuple):
    """A pix2pix dataset: its splits, usual direction, and what it holds (A | B)."""

    name: str
    splits: tuple[str, ...]
    direction: str
    about: str
    redistributable: bool = True


DATASETS = {
    d.name: d
    for d in (
        PairedDataset("facades", ("train", "val", "test"), "BtoA", "photo | label map, 400 train"),
        PairedDataset("maps", ("train", "val"), "AtoB", "aerial photo | map, 1096 train"),
        PairedDataset("edges2shoes", ("train", "val"), "AtoB", "edges | shoe photo, ~50k"),
        PairedDataset("edges2handbags", ("train", "val"), "AtoB", "edges | bag photo, ~137k"),
        PairedDataset("night2day", ("train", "val", "test"), "AtoB", "night | day photo, ~20k"),
        PairedDataset("cityscapes", ("train", "val"), "BtoA", "photo | labels, 2975 train", False),
    )
}


class DownloadError(RuntimeError):
    """A dataset cannot be fetched or installed; the message says what to do."""


class IntegrityError(DownloadError):
    """Files do not match their known sha256 (a corrupt or tampered archive or folder)."""


def dataset_url(name):
    """The archive URL: `$P2P_KERAS_DATASET_URL` (or `BASE_URL`) + `NAME.tar.gz`."""
    return (os.environ.get(URL_ENV_VAR) or BASE_URL).rstrip("/") + f"/{name}.tar.gz"


@functools.cache
def expected_sha256(name):
    """`{"split/file.jpg": sha256}` of a dataset, or `None` when no table is shipped."""
    table = Path(__file__).with_name(f"{name}_sha256.tsv")
    if not table.exists():
        return None
    rows = (line.split("\t") for line in table.read_text().splitlines() if line[:1] != "#")
    return {rel: digest for digest, rel in rows}


def verify(root, name):
    """Checks `root/*/*.jpg` against `expected_sha256(name)`; `IntegrityError` names odd files."""
    expected = expected_sha256(name)
    if expected is None:
        return
    found = {p.relative_to(root).as_posix(): p for p in Path(root).glob("*/*.jpg")}
    problems = [f"missing {rel}" for rel in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {rel}" for rel in sorted(found.keys() - expected.keys())]
    for rel in sorted(found.keys() & expected.keys()):
        if hashlib.sha256(found[rel].read_bytes()).hexdigest() != expected[rel]:
            problems.append(f"sha256 mismatch {rel}")
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise IntegrityError(
            f"{root}: {len(problems)} file(s) differ from the known {name} dataset: "
            f"{', '.join(problems[:5])}{more}. Delete the folder and download it again."
        )


def download(name, data_dir=None, manual_dir=None):
    """Downloads a pix2pix dataset into `data_dir/NAME/{split}/*.jpg` (default `data/`) once.

    `NAME.tar.gz` comes from `manual_dir` (default `data_dir/downloads/manual/`) or is fetched into
    `data_dir/downloads/`, then unpacked safely and checked against the sha256 table, if any.
    Raises `DownloadError` with steps to install by hand, or `IntegrityError` naming odd files.
    """
    if not _spec(name).redistributable:
        raise DownloadError(
            "Cityscapes may not be redistributed: get gtFine_trainvaltest.zip and "
            "leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com, unzip them and "
            "run p2p_keras.jobs.datasets.prepare_cityscapes('gtFine', 'leftImg8bit', "
            "'data/cityscapes')."
        )
    data_dir = Path(data_dir or project_dir() / "data")
    target = data_dir / name
    if (target / "train").is_dir():
        return target
    url, manual = dataset_url(name), Path(manual_dir or data_dir / "downloads" / "manual")
    steps = f"To install it by hand, put {url} in {manual}/ and run this again."
    archive, fetched = manual / f"{name}.tar.gz", False
    if not archive.is_file():
        if manual_dir is not None:
            raise DownloadError(f"{archive} not found. {steps}")
        (data_dir / "downloads").mkdir(parents=True, exist_ok=True)  # else keras picks /tmp
        try:
            archive = keras.utils.get_file(
                archive.name, url, cache_dir=data_dir, cache_subdir="downloads"
            )
            archive, fetched = Path(archive), True
        except Exception as err:  # noqa: BLE001 - keras raises a bare Exception for fetch errors
            raise DownloadError(f"Downloading {url} failed ({err}). {steps}") from err
    try:
        _unpack(archive, name, target)
    except (tarfile.TarError, EOFError, OSError, zlib.error, IntegrityError) as err:
        if fetched:
            archive.unlink()  # a broken download is fetched afresh next time
        if isinstance(err, IntegrityError):
            raise
        message = f"{archive} is truncated, unsafe or no tar.gz ({err}). {steps}"
        raise DownloadError(message) from err
    return target


def _unpack(archive, name, target):
    with atomic_path(target) as tmp, tarfile.open(archive) as tar:
        tmp.mkdir()
        tar.extractall(tmp, filter="data")  # refuses absolute paths, "..", links outside, devices
        inner = tmp / name  # the archives hold NAME/{train,val,...}
        if (inner / "train").is_dir():
            for child in inner.iterdir():
                child.rename(tmp / child.name)
            inner.rmdir()
        if not any((tmp / "train").glob("*.jpg")):
            top = sorted(p.name for p in tmp.iterdir())[:10]
            raise tarfile.TarError(f"no {name}/train/*.jpg in the archive (top level: {top})")
        verify(tmp, name)


def _spec(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown pix2pix dataset {name!r}; known: {', '.join(DATASETS)}.")
    return DATASETS[name]


def resolve_dataset(name_or_dir, data_dir=None, *, download=True):
    """The folder to train on and its usual direction, `(folder, "AtoB" | "BtoA" | None)`.

    `name_or_dir`: `None` (the synthetic facades), a folder, or a key of `DATASETS`, which is
    verified in `data_dir` (default `data/`) or downloaded if `download`, else `DownloadError`.

    >>> root, direction = resolve_dataset("facades")  # (Path("data/facades"), "BtoA")
    """
    from p2p_keras.jobs.synthetic import MANIFEST_NAME, make_synthetic_facades

    data_dir = Path(data_dir or project_dir() / "data")
    if name_or_dir is None:
        return make_synthetic_facades(data_dir / "synthetic_facades"), "BtoA"
    path = Path(name_or_dir)
    if path.is_dir():
        if (path / MANIFEST_NAME).exists():
            return path, "BtoA"  # the synthetic facades: photo left, like the real ones
        return path, DATASETS[path.name].direction if path.name in DATASETS else None
    spec = _spec(str(name_or_dir))
    root = data_dir / spec.name
    if (root / "train").is_dir():
        verify(root, spec.name)
    elif not download:
        raise DownloadError(f"{root} not found; run `python -m p2p_keras download {spec.name}`.")
    return _download(spec.name, data_dir), spec.direction


_download = download


def find_real_facades(data_dir=None):
    """The real facades folder, downloaded if needed, or `None` (offline, with a warning)."""
    try:
        return resolve_dataset("facades", data_dir)[0]
    except DownloadError as err:
        warnings.warn(f"The real facades are not available: {err}", stacklevel=2)
        return None


def write_aligned(a_root, b_root, out_root, *, splits=None, size=None):
    """Combines `a_root/<split>/<name>` and `b_root/<split>/<name>` into A|B `out_root/<split>/`.

    Like the official `combine_A_and_B.py`: A keeps its name and format (JPEG quality 95) and is
    resized to `size` (int, `(height, width)` or `None`), B to A's size. `splits` defaults to
    every folder of `a_root`. Returns `{split: pairs written}`; writes nothing if an input is bad
    or unpaired, but raises `BadImageError` naming each one.
    """
    a_root, b_root, out_root = Path(a_root), Path(b_root), Path(out_root)
    splits = sorted(d.name for d in a_root.iterdir() if d.is_dir()) if splits is None else splits
    size = (size, size) if isinstance(size, int) else size
    counts, bad = {}, []
    with contextlib.ExitStack() as stack:
        for split in splits:
            paths, missing = pair_files([a_root / split, b_root / split])
            bad += missing
            out = stack.enter_context(atomic_path(out_root / split))
            out.mkdir()
            for a_path, b_path in paths:
                a, b = _read(a_path, bad), _read(b_path, bad)
                if a is not None and b is not None:
                    a = np.asarray(resize(a, size)) if size else a
                    _save_pair(a, np.asarray(resize(b, a.shape[:2])), out / a_path.name, quality=95)
            counts[split] = len(paths)
        if bad:
            raise BadImageError(bad)
    return counts


def _read(path, bad):
    try:
        return read_rgb(path)
    except Exception as err:  # noqa: BLE001 - any decoder failure means the file is unusable
        bad.append(BadFile(str(path), f"unreadable image ({type(err).__name__}: {err})"))
        return None


def _save_pair(a, b, path, **jpeg_options):
    pair = Image.fromarray(np.concatenate([a, b], axis=1))
    fmt = {".png": "PNG", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")
    pair.save(path, fmt, **(jpeg_options if fmt == "JPEG" else {}))


def prepare_cityscapes(gtfine_dir, leftimg8bit_dir, out_dir, size=256):
    """Builds `out_dir/{train,val}/<i>.jpg` (photo | colour labels; train BtoA) in one rename,
    like the official `prepare_cityscapes_dataset.py` but with val in `val/`."""
    out_dir = Path(out_dir)
    if (out_dir / "train").is_dir():
        return out_dir
    with atomic_path(out_dir) as tmp:
        for split in DATASETS["cityscapes"].splits:
            labels = sorted(Path(gtfine_dir, split).glob("*/*_gtFine_color.png"))
            photos = {p.name: p for p in Path(leftimg8bit_dir, split).glob("*/*_leftImg8bit.png")}
            if not labels:
                raise DownloadError(f"No */*_gtFine_color.png files in {Path(gtfine_dir, split)}.")
            (tmp / split).mkdir(parents=True)
            for i, label in enumerate(labels):
                photo = photos.pop(label.name.replace("_gtFine_color", "_leftImg8bit"), None)
                if photo is None:
                    raise DownloadError(f"No leftImg8bit photo for {label}.")
                b = Image.open(label).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
                a = resize(read_rgb(photo), (size, size))
                _save_pair(a, np.asarray(b), tmp / split / f"{i}.jpg", quality=100, subsampling=0)
            if photos:
                raise DownloadError(f"No gtFine label for {len(photos)} photos: {min(photos)}...")
    return out_dir


class Pix2pix(tfds.core.GeneratorBasedBuilder):
    """The pix2pix datasets in TFDS, one config each: `{"image": A|B, "file_name": str}`."""

    # The class name matters: `Pix2Pix` would register as "pix2_pix".
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=s.name, description=f"{s.about}; usually {s.direction}")
        for s in DATASETS.values()
        if s.redistributable
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Optional: put <config>.tar.gz in <data_dir>/downloads/manual/."

    def _info(self):
        image, text = tfds.features.Image(shape=(None, None, 3)), tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"image": image, "file_name": text}),
            homepage="https://phillipi.github.io/pix2pix/",
        )

    def _split_generators(self, dl_manager):
        # TFDS's data_dir as ours: the archive goes to its downloads/, manual/ is its manual dir.
        root = download(self.builder_config.name, Path(dl_manager.download_dir).parent)
        return {s.name: self._generate_examples(s) for s in root.iterdir() if s.is_dir()}

    def _generate_examples(self, folder):
        for path in sorted(folder.glob("*.jpg")):
            yield path.name, {"image": path, "file_name": path.name}
