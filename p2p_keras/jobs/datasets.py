"""The pix2pix paired datasets: registry, safe downloads, a TFDS builder, Cityscapes preparation.

Every pix2pix dataset is a folder of JPEGs, one per training pair, with image A on the left
and image B on the right (`NAME/{train,val[,test]}/*.jpg`). This module knows where the
archives live, downloads them through TensorFlow Datasets' download manager, unpacks them
safely and atomically into `data_dir/NAME/`, and verifies facades file by file.

It also registers the TFDS dataset `pix2pix` (one config per redistributable dataset), so
that after `import p2p_keras.jobs.datasets` this works:

```python
ds = tfds.load("pix2pix/facades", split="train")  # {"image": A|B uint8, "file_name": str}
```

The server can be overridden with the environment variable `P2P_KERAS_DATASET_URL` (or the
module attribute `BASE_URL`), for a mirror or for tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tarfile
import types
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from p2p_keras.jobs.synthetic import MANIFEST_NAME

try:
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError
except ImportError:  # pragma: no cover - moved in some tfds version
    NonMatchingChecksumError = None

logger = logging.getLogger(__name__)

BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"
URL_ENV_VAR = "P2P_KERAS_DATASET_URL"
BUILDER_NAME = "pix2pix"
COMPLETE_MARKER = ".p2p_keras_complete.json"
HOMEPAGE = "https://phillipi.github.io/pix2pix/"
CITATION = """@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}"""

# Captured at import: TFDS's DatasetBuilderTestCase replaces this module's `os` with a mock,
# and the builder still has to read the URL override.
_ENV = os.environ
_PARTIAL_INFIX = ".partial-"
_HASH_TABLES = {"facades": "facades_sha256.tsv"}
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
# tarfile.FilterError exists from Python 3.10.12 / 3.11.4 on; `except ()` matches nothing.
_FILTER_ERROR = getattr(tarfile, "FilterError", ())


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PairedDataset:
    """One pix2pix dataset: where it lives, its splits and which way it is usually trained.

    Args:
        name: archive and folder name, e.g. `"facades"`.
        splits: split folders inside the archive.
        direction: the usual task in junyanz terms: `"AtoB"` maps the left half to the
            right half, `"BtoA"` the right half to the left half.
        task: the usual task in words, e.g. `"labels -> photo"`.
        layout: what the left (A) and right (B) halves hold.
        approx_size_mb: approximate archive size in MB (`None` if not known).
        num_pairs: exact pairs per split where verified, else `None`.
        approx_pairs: the size as the pix2pix documentation states it.
        redistributable: `False` where the archive may not be downloaded from the pix2pix
            server (Cityscapes; build it with `prepare_cityscapes`).
    """

    name: str
    splits: tuple[str, ...]
    direction: str
    task: str
    layout: str
    approx_size_mb: int | None
    num_pairs: Mapping[str, int] | None = dataclasses.field(default=None, hash=False)
    approx_pairs: str = ""
    redistributable: bool = True

    @property
    def archive_name(self) -> str:
        """The archive's file name, `NAME.tar.gz`."""
        return f"{self.name}.tar.gz"

    @property
    def url(self) -> str:
        """The archive's URL under the current base URL (see `dataset_url`)."""
        return dataset_url(self.name)


DATASETS: dict[str, PairedDataset] = {
    spec.name: spec
    for spec in (
        PairedDataset(
            name="facades",
            splits=("train", "val", "test"),
            direction="BtoA",
            task="labels -> photo",
            layout="A = facade photo, B = colour label map",
            approx_size_mb=30,
            num_pairs={"train": 400, "val": 100, "test": 106},
            approx_pairs="400 train (CMP Facades)",
        ),
        PairedDataset(
            name="maps",
            splits=("train", "val"),
            direction="AtoB",
            task="aerial photo -> map",
            # Not checked against the archive: the anchors only say that public maps recipes
            # train --direction AtoB and that the paper evaluates photo->map and map->photo.
            layout="A = aerial photo, B = Google map (unverified)",
            approx_size_mb=250,
            approx_pairs="1096 train (Google Maps)",
        ),
        PairedDataset(
            name="edges2shoes",
            splits=("train", "val"),
            direction="AtoB",
            task="edges -> photo",
            layout="A = HED edge map, B = shoe photo",
            approx_size_mb=2000,
            approx_pairs="~50k (UT Zappos50K)",
        ),
        PairedDataset(
            name="edges2handbags",
            splits=("train", "val"),
            direction="AtoB",
            task="edges -> photo",
            layout="A = HED edge map, B = handbag photo",
            approx_size_mb=8000,
            approx_pairs="~137k (iGAN)",
        ),
        PairedDataset(
            name="night2day",
            splits=("train", "val", "test"),
            direction="AtoB",
            task="night -> day",
            layout="A = night photo, B = day photo (BtoA is day2night)",
            approx_size_mb=100,
            approx_pairs="~20k (Transient Attributes)",
        ),
        PairedDataset(
            name="cityscapes",
            splits=("train", "val"),
            direction="BtoA",
            task="labels -> photo",
            layout="A = street photo (leftImg8bit), B = colour label map (gtFine_color)",
            approx_size_mb=None,
            approx_pairs="2975 train (Cityscapes train), val 500",
            redistributable=False,
        ),
    )
}


def get_dataset(name: str) -> PairedDataset:
    """Returns the registry entry for `name`.

    Args:
        name: a key of `DATASETS`.

    Returns:
        The `PairedDataset`.

    Raises:
        ValueError: if `name` is not a known dataset.
    """
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise ValueError(f"Unknown pix2pix dataset {name!r}; known: {known}.") from None


def dataset_url(name: str, base_url: str | None = None) -> str:
    """Returns the archive URL of a dataset.

    The base URL is, in order: `base_url`, the environment variable `P2P_KERAS_DATASET_URL`,
    the module attribute `BASE_URL`. Any URL TFDS can fetch works (`http(s)://`, `file://`).

    Args:
        name: dataset name.
        base_url: folder URL holding `NAME.tar.gz`.

    Returns:
        The URL of `NAME.tar.gz`.

    Example:

    >>> dataset_url("facades", "file:///mirror")
    'file:///mirror/facades.tar.gz'
    """
    base = base_url or _ENV.get(URL_ENV_VAR) or BASE_URL
    return base.rstrip("/") + f"/{name}.tar.gz"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DownloadError(RuntimeError):
    """A dataset could not be fetched or installed. The message says what to do."""


class ArchiveError(DownloadError):
    """The archive is truncated, corrupt or does not have the pix2pix layout."""


class UnsafeArchiveError(ArchiveError):
    """The archive has a member that would write outside the target folder."""


class IntegrityError(ArchiveError):
    """Extracted files do not match their known sha256."""


def manual_steps(name: str, url: str, manual_dir: str | os.PathLike | None = None) -> str:
    """Returns the instructions for installing an archive by hand.

    Args:
        name: dataset name.
        url: where the archive lives.
        manual_dir: the folder to put it in.

    Returns:
        Multi-line text.
    """
    folder = Path(manual_dir) if manual_dir else Path("data/downloads/manual")
    return (
        f"To install {name} by hand:\n"
        f"  1. download {url} on a machine with internet access;\n"
        f"  2. put it at {folder / f'{name}.tar.gz'};\n"
        f"  3. run `python -m p2p_keras download {name} --manual-dir {folder}` "
        f"(or `download({name!r}, manual_dir={str(folder)!r})`).\n"
        f"A mirror also works: set {URL_ENV_VAR} to the folder URL holding {name}.tar.gz."
    )


# --------------------------------------------------------------------------------------------
# Integrity
# --------------------------------------------------------------------------------------------


@functools.cache
def expected_sha256(name: str) -> Mapping[str, str] | None:
    """Returns the known sha256 of every file of a dataset, or `None` if none are shipped.

    Args:
        name: dataset name.

    Returns:
        A read-only mapping `"split/file.jpg" -> sha256 hex`, or `None`.
    """
    table = _HASH_TABLES.get(name)
    if table is None:
        return None
    # Next to this file rather than importlib.resources: that fails when the package
    # resolves as a namespace package (seen with a stale editable install).
    text = Path(__file__).with_name(table).read_text(encoding="utf-8")
    hashes = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            digest, rel_path = line.split("\t")
            hashes[rel_path] = digest
    return types.MappingProxyType(hashes)


def _sha256_file(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with epath.Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _integrity_message(name: str, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:5])
    more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
    return (
        f"{name}: {len(problems)} file(s) do not match the known sha256 "
        f"(corrupt or different archive):\n  {shown}{more}"
    )


def _verify_tree(root: Path, name: str, expected: Mapping[str, str]) -> None:
    """Raises IntegrityError unless the JPEGs under `root` are exactly `expected`."""
    found = {p.relative_to(root).as_posix(): p for p in root.glob("*/*.jpg")}
    problems = [f"missing {rel}" for rel in sorted(set(expected) - set(found))]
    problems += [f"unexpected {rel}" for rel in sorted(set(found) - set(expected))]
    for rel in sorted(set(found) & set(expected)):
        if _sha256_file(found[rel]) != expected[rel]:
            problems.append(f"sha256 mismatch {rel}")
    if problems:
        raise IntegrityError(_integrity_message(name, problems))


# --------------------------------------------------------------------------------------------
# Safe, atomic extraction
# --------------------------------------------------------------------------------------------


def _check_member(member: tarfile.TarInfo) -> None:
    """Raises UnsafeArchiveError for members that could escape the extraction folder."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"archive member has an absolute path: {name!r}")
    if ".." in re.split(r"[\\/]", name):
        raise UnsafeArchiveError(f"archive member leaves the target folder: {name!r}")
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"archive member is a device file or FIFO: {name!r}")
    if member.issym() or member.islnk():
        # Symlink targets are relative to the link's folder, hard link targets to the root.
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(
                f"archive member {name!r} links outside the target folder: {member.linkname!r}"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive member has an unsupported type: {name!r}")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        # Second line of defence (Python >= 3.10.12 / 3.11.4): also checks real paths.
        tar.extract(member, dest, filter="data")
    else:  # pragma: no cover - old Python
        tar.extract(member, dest, set_attrs=False)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extracts a tar archive, refusing anything that could write outside `dest`.

    Refused: absolute paths, `..` components, symlinks or hard links pointing outside,
    device files and FIFOs. The archive is read once, as a stream; for gzip the whole
    stream is read to the end so a truncated trailer is caught too (tarfile alone stops
    at the end-of-archive blocks and never checks the gzip CRC).

    Args:
        archive: a `.tar`, `.tar.gz`, `.tar.bz2` or `.tar.xz` file.
        dest: an existing folder.

    Raises:
        UnsafeArchiveError: for a hostile member (members before it may already be written;
            callers extract into a staging folder they delete).
        ArchiveError: if the archive is truncated or not a tar archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with contextlib.ExitStack() as stack:
            if _is_gzip(archive):
                stream = stack.enter_context(gzip.open(archive, "rb"))
                tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))
            else:
                stream = None
                tar = stack.enter_context(tarfile.open(archive, mode="r|*"))
            for member in tar:
                _check_member(member)
                _extract_member(tar, member, dest)
            while stream is not None and stream.read(1 << 20):
                pass
    except _FILTER_ERROR as err:
        raise UnsafeArchiveError(f"{archive}: {err}") from err
    except _ARCHIVE_ERRORS as err:
        raise ArchiveError(
            f"{archive} is truncated or not a valid tar.gz archive ({err}). "
            "Delete it and download it again."
        ) from err


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(target: Path) -> None:
    """Removes staging folders of `target` left by processes that no longer run."""
    prefix = f".{target.name}{_PARTIAL_INFIX}"
    if not target.parent.is_dir():
        return
    for path in target.parent.glob(prefix + "*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            logger.info("Removing interrupted extraction %s", path)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _staging_dir(target: Path) -> Iterator[Path]:
    """Yields an empty folder next to `target`; removes it (or what is left of it) on exit."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    staging = target.parent / f".{target.name}{_PARTIAL_INFIX}{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(folder: str | os.PathLike) -> bool:
    """Returns whether `folder` was fully written by `download` or `prepare_cityscapes`.

    Args:
        folder: a dataset folder such as `data/facades`.

    Returns:
        `True` if it holds the completion marker.
    """
    return (Path(folder) / COMPLETE_MARKER).is_file()


def _publish(root: Path, target: Path, info: dict) -> None:
    """Marks `root` complete and renames it to `target` in one step."""
    (root / COMPLETE_MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    try:
        os.replace(root, target)
    except OSError:
        if is_complete(target):  # another process finished the same dataset first
            return
        raise


def _find_root(extracted, name: str):
    """Returns the folder holding the split folders (`NAME/` inside the archive, or its top)."""
    for candidate in (extracted / name, extracted):
        if (candidate / "train").is_dir():
            return candidate
    top = sorted(p.name for p in extracted.iterdir())[:10]
    raise ArchiveError(
        f"The {name} archive does not have the pix2pix layout {name}/train/*.jpg "
        f"(top level: {top})."
    )


def _count_pairs(root: Path, spec: PairedDataset) -> dict[str, int]:
    """Counts JPEGs per split; requires a non-empty train split."""
    counts = {s: len(list((root / s).glob("*.jpg"))) for s in spec.splits if (root / s).is_dir()}
    if not counts.get("train"):
        raise ArchiveError(f"The {spec.name} archive has no {spec.name}/train/*.jpg files.")
    for split in spec.splits:
        if split not in counts:
            logger.warning("The %s archive has no %s split.", spec.name, split)
    return counts


def _install(archive: Path, spec: PairedDataset, target: Path, *, verify: bool, source: str):
    with _staging_dir(target) as staging:
        safe_extract(archive, staging)
        root = _find_root(staging, spec.name)
        counts = _count_pairs(root, spec)
        expected = expected_sha256(spec.name) if verify else None
        if expected is not None:
            _verify_tree(root, spec.name, expected)
        info = {
            "name": spec.name,
            "source": source,
            "pairs": counts,
            "sha256_verified": expected is not None,
            "direction": spec.direction,
        }
        _publish(root, target, info)


# --------------------------------------------------------------------------------------------
# Fetching through TFDS
# --------------------------------------------------------------------------------------------


def _cached_download_exists(download_dir, url: str) -> bool:
    """Whether TFDS's download cache already holds `url` (its `.INFO` files list the URLs)."""
    folder = epath.Path(download_dir) / BUILDER_NAME
    if not folder.is_dir():
        return False
    for info_path in folder.glob("*.INFO"):
        try:
            urls = json.loads(info_path.read_text()).get("urls", [])
        except ValueError:
            continue
        data_path = info_path.parent / info_path.name[: -len(".INFO")]
        if url in urls and data_path.exists():
            return True
    return False


def _check_reachable(url: str, timeout: float = 20.0) -> None:
    """Fails fast when `url` cannot be fetched.

    TFDS retries refused connections 10 times with exponential backoff (over three minutes
    when offline) and sets no timeout, so one quick probe comes first.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        if not tf.io.gfile.exists(url):
            raise DownloadError(f"{url} does not exist.")
        return
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise DownloadError(f"{url} was not found (HTTP 404).") from err
        # Anything else (405 for HEAD, 403, ...): let the real download decide.
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"Cannot reach {url} ({reason}).") from err


def _ensure_reachable(url: str, download_dir) -> None:
    if not _cached_download_exists(download_dir, url):
        _check_reachable(url)


def _tfds_tmp_dirs(download_dir: Path) -> set[Path]:
    """TFDS downloads into `<file>.tmp.<uuid>/` and leaves it behind when a download fails."""
    folder = download_dir / BUILDER_NAME
    return set(folder.glob("*.tmp.*")) if folder.is_dir() else set()


def _download_with_tfds(url: str, download_dir: Path) -> Path:
    """Downloads `url` into TFDS's cache (shared with `tfds.load(..., data_dir)`)."""
    manager = tfds.download.DownloadManager(
        download_dir=download_dir,
        dataset_name=BUILDER_NAME,
        url_infos=Pix2pix.url_infos,
    )
    before = _tfds_tmp_dirs(download_dir)
    try:
        return Path(manager.download(url))
    except BaseException as err:
        for tmp in _tfds_tmp_dirs(download_dir) - before:
            shutil.rmtree(tmp, ignore_errors=True)
        if NonMatchingChecksumError is not None and isinstance(err, NonMatchingChecksumError):
            raise IntegrityError(str(err)) from err
        if isinstance(err, Exception):
            raise DownloadError(f"Downloading {url} failed: {err}") from err
        raise


def _forget_download(path: Path) -> None:
    """Deletes a cached archive and its TFDS `.INFO` so the next call downloads again."""
    for p in (path, path.with_name(path.name + ".INFO")):
        p.unlink(missing_ok=True)


def download(
    name: str,
    data_dir: str | os.PathLike = "data",
    *,
    base_url: str | None = None,
    manual_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Downloads a pix2pix dataset and writes `data_dir/NAME/{split}/*.jpg`.

    The archive comes from `manual_dir/NAME.tar.gz` if present, else from TFDS's download
    manager (cache in `data_dir/downloads/pix2pix/`, atomic, with a recorded sha256). It is
    extracted into a staging folder next to the target, checked, and renamed into place
    with a completion marker, so an interrupted run never looks complete. A complete
    folder is returned at once, without network access or re-verification.

    Args:
        name: a redistributable key of `DATASETS`, e.g. `"facades"`.
        data_dir: parent folder of the dataset folder.
        base_url: folder URL holding `NAME.tar.gz` (default: see `dataset_url`).
        manual_dir: folder holding a manually downloaded `NAME.tar.gz`
            (default `data_dir/downloads/manual`, used only if the file is there).
        verify: check every extracted file against the shipped sha256 table (facades).

    Returns:
        The dataset folder, `data_dir/NAME`.

    Raises:
        DownloadError: the archive cannot be fetched (the message has the manual steps),
            or the dataset is not redistributable (Cityscapes).
        ArchiveError: the archive is truncated, unsafe (`UnsafeArchiveError`) or fails the
            sha256 check (`IntegrityError`); nothing is left in `data_dir/NAME`.

    Example:

    ```python
    root = download("facades")            # data/facades/{train,val,test}/*.jpg
    root = download("facades", manual_dir="~/Downloads")   # offline
    ```
    """
    spec = get_dataset(name)
    if not spec.redistributable:
        raise DownloadError(_cityscapes_instructions())
    data_dir = Path(data_dir)
    target = data_dir / name
    if is_complete(target):
        return target
    if target.exists():
        raise DownloadError(
            f"{target} exists but was not completed by p2p_keras. Delete it to download "
            f"again, or use the folder directly as a dataset path."
        )
    url = dataset_url(name, base_url)
    archive, cached = _locate_archive(spec, data_dir, url, manual_dir)
    logger.info("Extracting %s to %s", archive, target)
    try:
        _install(archive, spec, target, verify=verify, source=url if cached else str(archive))
    except ArchiveError:
        if cached:
            _forget_download(archive)
        raise
    return target


def _locate_archive(spec, data_dir: Path, url: str, manual_dir) -> tuple[Path, bool]:
    """Returns (archive path, whether it is our download cache and may be deleted)."""
    manual = Path(manual_dir).expanduser() if manual_dir else data_dir / "downloads" / "manual"
    if (manual / spec.archive_name).is_file():
        return manual / spec.archive_name, False
    if manual_dir is not None:
        raise DownloadError(
            f"{manual / spec.archive_name} not found.\n" + manual_steps(spec.name, url, manual)
        )
    download_dir = data_dir / "downloads"
    try:
        _ensure_reachable(url, download_dir)
        return _download_with_tfds(url, download_dir), True
    except IntegrityError:
        raise
    except DownloadError as err:
        raise DownloadError(f"{err}\n{manual_steps(spec.name, url, manual)}") from err


def resolve_dataset(
    name_or_dir: str | os.PathLike,
    data_dir: str | os.PathLike = "data",
    *,
    manual_dir: str | os.PathLike | None = None,
) -> tuple[Path, str | None]:
    """Turns a dataset name or folder into a folder of aligned pairs.

    Args:
        name_or_dir: an existing folder (returned as is) or a key of `DATASETS`
            (downloaded into `data_dir` if needed).
        data_dir: where named datasets live.
        manual_dir: passed to `download`.

    Returns:
        `(folder, direction)`: `direction` is the dataset's usual `"AtoB"`/`"BtoA"`. A folder
        given by path gets its dataset's direction when it is recognisable (the synthetic
        facades, or a folder named like a known dataset), else `None`.

    Raises:
        ValueError: if `name_or_dir` is neither an existing folder nor a known name.

    Example:

    ```python
    root, direction = resolve_dataset("facades")   # (Path("data/facades"), "BtoA")
    ```
    """
    path = Path(name_or_dir)
    if path.exists():
        if (path / MANIFEST_NAME).exists():
            return path, "BtoA"  # the synthetic facades put the photo on the left, like facades
        known = DATASETS.get(path.name)
        return path, known.direction if known else None
    if str(name_or_dir) not in DATASETS:
        raise ValueError(
            f"{str(name_or_dir)!r} is neither an existing folder nor a known pix2pix dataset "
            f"({', '.join(DATASETS)})."
        )
    spec = DATASETS[str(name_or_dir)]
    return download(spec.name, data_dir, manual_dir=manual_dir), spec.direction


# --------------------------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------------------------


def _cityscapes_instructions() -> str:
    return (
        "Cityscapes may not be redistributed, so it cannot be downloaded from the pix2pix "
        "server.\n"
        "  1. register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip "
        "and leftImg8bit_trainvaltest.zip;\n"
        "  2. unzip both;\n"
        "  3. run p2p_keras.jobs.datasets.prepare_cityscapes('gtFine', 'leftImg8bit', "
        "'data/cityscapes'),\n"
        "     which writes data/cityscapes/{train,val}/*.jpg (A = photo, B = label map; "
        "train direction BtoA)."
    )


def _cityscapes_pairs(gtfine_split: Path, photo_split: Path) -> list[tuple[Path, Path]]:
    """Returns sorted (label, photo) pairs of one split; fails on any unmatched file."""
    labels = sorted(gtfine_split.glob("*/*_gtFine_color.png"))
    photos = {p.name: p for p in photo_split.glob("*/*_leftImg8bit.png")}
    if not labels:
        raise DownloadError(f"No */*_gtFine_color.png files in {gtfine_split}.")
    pairs = []
    for label in labels:
        stem = label.name[: -len("_gtFine_color.png")]
        photo = photos.pop(f"{stem}_leftImg8bit.png", None)
        if photo is None:
            raise DownloadError(f"No leftImg8bit photo for {label} under {photo_split}.")
        pairs.append((label, photo))
    if photos:
        raise DownloadError(f"{len(photos)} photo(s) in {photo_split} have no gtFine label.")
    return pairs


def _write_side_by_side(photo: Path, label: Path, out: Path, size: int) -> None:
    # Labels use NEAREST so their palette colours stay exact; the official script relies on
    # Pillow's default filter (BICUBIC since Pillow 7) for both.
    a = Image.open(photo).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    b = Image.open(label).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    pair = Image.new("RGB", (2 * size, size))
    pair.paste(a, (0, 0))
    pair.paste(b, (size, 0))
    pair.save(out, format="JPEG", quality=100, subsampling=0)


def prepare_cityscapes(
    gtfine_dir: str | os.PathLike,
    leftimg8bit_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: int = 256,
) -> Path:
    """Builds the aligned Cityscapes layout from the official Cityscapes downloads.

    Like junyanz's `prepare_cityscapes_dataset.py`: each `*_gtFine_color.png` is matched to
    its `*_leftImg8bit.png` photo, both are resized to `size` x `size`, and written as one
    JPEG (quality 100, no chroma subsampling) with the photo on the left (A) and the label
    map on the right (B), numbered `0.jpg, 1.jpg, ...` in sorted order. Unlike that script
    the val split is written to `val/` (it writes `test/`), and labels are resized with
    NEAREST. The output appears atomically, with a completion marker.

    Args:
        gtfine_dir: the unzipped `gtFine` folder (`{train,val}/<city>/*_gtFine_color.png`).
        leftimg8bit_dir: the unzipped `leftImg8bit` folder
            (`{train,val}/<city>/*_leftImg8bit.png`).
        out_dir: output folder, e.g. `data/cityscapes`.
        size: side of each half in pixels.

    Returns:
        `out_dir`, holding `{train,val}/*.jpg`.

    Raises:
        DownloadError: if a split is empty, a label has no photo or a photo no label, or
            `out_dir` exists and is not complete.

    Example:

    ```python
    prepare_cityscapes("gtFine", "leftImg8bit", "data/cityscapes")
    ```
    """
    gtfine_dir, leftimg8bit_dir, out_dir = Path(gtfine_dir), Path(leftimg8bit_dir), Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    if out_dir.exists():
        raise DownloadError(f"{out_dir} exists but is not complete; delete it first.")
    spec = DATASETS["cityscapes"]
    with _staging_dir(out_dir) as staging:
        counts = {}
        for split in spec.splits:
            pairs = _cityscapes_pairs(gtfine_dir / split, leftimg8bit_dir / split)
            (staging / split).mkdir()
            for i, (label, photo) in enumerate(pairs):
                _write_side_by_side(photo, label, staging / split / f"{i}.jpg", size)
            counts[split] = len(pairs)
        info = {"name": "cityscapes", "source": str(gtfine_dir), "pairs": counts, "size": size}
        _publish(staging, out_dir, info)
    return out_dir


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets builder
# --------------------------------------------------------------------------------------------


class Pix2pixConfig(tfds.core.BuilderConfig):
    """One pix2pix dataset as a TFDS config.

    Args:
        splits: split folders in the archive.
        direction: the usual training direction (`"AtoB"` or `"BtoA"`).
        **kwargs: passed to `tfds.core.BuilderConfig`.
    """

    def __init__(self, *, splits: tuple[str, ...], direction: str, **kwargs):
        super().__init__(**kwargs)
        self.splits = splits
        self.direction = direction


class Pix2pix(tfds.core.GeneratorBasedBuilder):
    """The paired pix2pix datasets: every example is one A|B JPEG, A on the left.

    Example:

    ```python
    import p2p_keras.jobs.datasets  # registers "pix2pix"
    ds = tfds.load("pix2pix/facades", split="train")
    ```
    """

    # The class name matters: `Pix2Pix` would register as "pix2_pix".
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        Pix2pixConfig(
            name=spec.name,
            splits=spec.splits,
            direction=spec.direction,
            description=f"{spec.task} ({spec.layout}); usual direction {spec.direction}.",
        )
        for spec in DATASETS.values()
        if spec.redistributable
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Optional, for offline use: download "
        f"{BASE_URL}<config>.tar.gz elsewhere and put it in the manual dir "
        "(default <data_dir>/downloads/manual/, or DownloadConfig(manual_dir=...)) as "
        "<config>.tar.gz, e.g. facades.tar.gz. Without it the archive is downloaded."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Paired image-to-image datasets of pix2pix (Isola et al., 2017).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "file_name": tfds.features.Text(),
                }
            ),
            homepage=HOMEPAGE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        name = self.builder_config.name
        archive = _manual_archive(dl_manager, name)
        if archive is not None:
            extracted = dl_manager.extract(archive)
        else:
            url = dataset_url(name)
            _ensure_reachable(url, dl_manager.download_dir)
            extracted = dl_manager.download_and_extract(url)
        root = _find_root(epath.Path(extracted), name)
        return {
            split: self._generate_examples(root / split, split)
            for split in self.builder_config.splits
            if (root / split).is_dir()
        }

    def _generate_examples(self, split_dir: epath.Path, split: str):
        expected = expected_sha256(self.builder_config.name)
        names = set()
        for path in sorted(split_dir.glob("*.jpg")):
            rel = f"{split}/{path.name}"
            if expected is not None and _sha256_file(path) != expected.get(rel):
                raise IntegrityError(_integrity_message(self.builder_config.name, [rel]))
            names.add(rel)
            yield path.name, {"image": path, "file_name": path.name}
        if expected is not None:
            missing = sorted(r for r in expected if r.startswith(f"{split}/") and r not in names)
            if missing:
                problems = [f"missing {r}" for r in missing]
                raise IntegrityError(_integrity_message(self.builder_config.name, problems))


def _manual_archive(dl_manager, name: str):
    """Returns `<manual_dir>/NAME.tar.gz` if it exists, else `None`."""
    try:
        manual = epath.Path(dl_manager.manual_dir)
    except AssertionError:  # TFDS's way of saying the manual dir is missing or empty
        return None
    archive = manual / f"{name}.tar.gz"
    return archive if archive.exists() else None
