"""Offline tests of p2p_keras.jobs.datasets: downloads from file:// and 127.0.0.1, the TFDS builder,
hostile and broken archives, checksums, and Cityscapes preparation."""

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from p2p_keras.jobs import datasets

tfds.disable_progress_bar()

SHARED_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"
SMALL_COUNTS = {"train": 3, "val": 2, "test": 1}


# --------------------------------------------------------------------------------------------
# Fake data helpers
# --------------------------------------------------------------------------------------------


def jpeg_bytes(seed: int, width: int = 16, height: int = 8) -> bytes:
    """A tiny A|B JPEG: left half one colour, right half another."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, 256, size=(2, 3), dtype=np.uint8)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def fake_files(counts: dict) -> dict:
    """{'split/i.jpg': bytes} for the given per-split counts."""
    files, seed = {}, 0
    for split, n in counts.items():
        for i in range(1, n + 1):
            files[f"{split}/{i}.jpg"] = jpeg_bytes(seed)
            seed += 1
    return files


def write_tree(root: Path, files: dict) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(folder: Path, name: str, files: dict, extra=None) -> Path:
    """Writes folder/NAME.tar.gz with NAME/<rel> members; `extra(tar)` appends more."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in files.items():
            add_bytes(tar, f"{name}/{rel}", data)
        if extra is not None:
            extra(tar)
    return path


def hashes_of(files: dict) -> dict:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def pair_counts(root: Path) -> dict:
    return {p.name: len(list(p.glob("*.jpg"))) for p in sorted(root.iterdir()) if p.is_dir()}


def leftovers(data_dir: Path) -> list:
    """Staging folders and TFDS temp downloads still on disk."""
    return [p for p in data_dir.rglob("*") if ".partial-" in p.name or ".tmp." in p.name]


def cached_archives(data_dir: Path) -> list:
    folder = data_dir / "downloads" / "pix2pix"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_url_override(monkeypatch):
    monkeypatch.delenv(datasets.URL_ENV_VAR, raising=False)


@pytest.fixture
def fake_facades(monkeypatch):
    """Small fake facades files, with the expected-hash table patched to match them."""
    files = fake_files(SMALL_COUNTS)
    table = hashes_of(files)
    monkeypatch.setattr(
        datasets, "expected_sha256", lambda name: table if name == "facades" else None
    )
    return files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        self.server.requests.append(self.requestline)


class _LyingHandler(_QuietHandler):
    """Announces more bytes than it sends, then hangs up: a dropped connection."""

    def do_GET(self):
        self.server.requests.append(self.requestline)
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + 4096))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def serve():
    """serve(folder, handler=_QuietHandler) -> (base_url, requests list); shut down after."""
    servers = []

    def start(folder: Path, handler=_QuietHandler):
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
        )
        server.daemon_threads = True
        server.requests = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry_urls_splits_and_directions():
    assert set(datasets.DATASETS) == {
        "facades",
        "maps",
        "edges2shoes",
        "edges2handbags",
        "night2day",
        "cityscapes",
    }
    facades = datasets.DATASETS["facades"]
    assert facades.url == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    assert facades.splits == ("train", "val", "test") and facades.direction == "BtoA"
    assert datasets.DATASETS["night2day"].splits == ("train", "val", "test")
    assert datasets.DATASETS["maps"].splits == ("train", "val")
    assert datasets.DATASETS["cityscapes"].direction == "BtoA"
    assert datasets.DATASETS["edges2shoes"].direction == "AtoB"
    assert [n for n, s in datasets.DATASETS.items() if not s.redistributable] == ["cityscapes"]
    assert dataclasses.asdict(facades)["num_pairs"] == {"train": 400, "val": 100, "test": 106}
    with pytest.raises(ValueError, match="known: facades"):
        datasets.get_dataset("horse2zebra")


def test_dataset_url_argument_env_and_module_setting(monkeypatch):
    monkeypatch.setattr(datasets, "BASE_URL", "http://mirror.example/px/")
    assert datasets.dataset_url("maps") == "http://mirror.example/px/maps.tar.gz"
    monkeypatch.setenv(datasets.URL_ENV_VAR, "file:///srv/pix2pix")
    assert datasets.dataset_url("maps") == "file:///srv/pix2pix/maps.tar.gz"
    assert datasets.dataset_url("maps", "http://x/y") == "http://x/y/maps.tar.gz"


def test_shipped_facades_hash_table_matches_registry_counts():
    table = datasets.expected_sha256("facades")
    per_split = {}
    for rel, digest in table.items():
        assert len(digest) == 64 and int(digest, 16) >= 0
        per_split[rel.split("/")[0]] = per_split.get(rel.split("/")[0], 0) + 1
    assert per_split == dict(datasets.DATASETS["facades"].num_pairs)
    assert datasets.expected_sha256("maps") is None


# --------------------------------------------------------------------------------------------
# download()
# --------------------------------------------------------------------------------------------


def test_download_from_file_url_writes_aligned_layout(tmp_path):
    files = fake_files(SMALL_COUNTS)
    make_archive(tmp_path / "mirror", "night2day", files)
    data_dir = tmp_path / "data"

    root = datasets.download("night2day", data_dir, base_url=(tmp_path / "mirror").as_uri())

    assert root == data_dir / "night2day"
    assert pair_counts(root) == SMALL_COUNTS
    assert (root / "val" / "2.jpg").read_bytes() == files["val/2.jpg"]
    marker = json.loads((root / datasets.COMPLETE_MARKER).read_text())
    assert marker["pairs"] == SMALL_COUNTS and marker["sha256_verified"] is False
    assert leftovers(data_dir) == []


def test_download_over_http_verifies_and_rerun_is_a_noop(tmp_path, serve, fake_facades):
    make_archive(tmp_path / "www", "facades", fake_facades)
    base_url, requests_seen = serve(tmp_path / "www")
    data_dir = tmp_path / "data"

    root = datasets.download("facades", data_dir, base_url=base_url)

    assert pair_counts(root) == SMALL_COUNTS
    assert json.loads((root / datasets.COMPLETE_MARKER).read_text())["sha256_verified"] is True
    assert sum("GET /facades.tar.gz" in r for r in requests_seen) == 1
    assert len(cached_archives(data_dir)) == 2  # the archive and TFDS's .INFO record
    before = (root / "train" / "1.jpg").stat().st_mtime_ns
    seen = len(requests_seen)
    unreachable = f"http://127.0.0.1:{free_port()}/"

    assert datasets.download("facades", data_dir, base_url=unreachable) == root
    assert len(requests_seen) == seen
    assert (root / "train" / "1.jpg").stat().st_mtime_ns == before


def test_download_uses_manual_dir_without_network(tmp_path, fake_facades):
    make_archive(tmp_path / "manual", "facades", fake_facades)
    unreachable = f"http://127.0.0.1:{free_port()}/"

    root = datasets.download(
        "facades", tmp_path / "data", base_url=unreachable, manual_dir=tmp_path / "manual"
    )

    assert pair_counts(root) == SMALL_COUNTS
    assert (tmp_path / "manual" / "facades.tar.gz").exists()  # never moved or deleted


def test_download_default_manual_dir_is_under_downloads(tmp_path):
    data_dir = tmp_path / "data"
    make_archive(data_dir / "downloads" / "manual", "maps", fake_files({"train": 2, "val": 1}))
    root = datasets.download("maps", data_dir, base_url=f"http://127.0.0.1:{free_port()}/")
    assert pair_counts(root) == {"train": 2, "val": 1}


def test_explicit_manual_dir_without_archive_is_an_error(tmp_path):
    (tmp_path / "manual").mkdir()
    with pytest.raises(datasets.DownloadError, match="facades.tar.gz not found"):
        datasets.download("facades", tmp_path / "data", manual_dir=tmp_path / "manual")


def test_unreachable_url_fails_fast_with_manual_steps(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/"
    start = time.monotonic()
    with pytest.raises(datasets.DownloadError) as info:
        datasets.download("facades", tmp_path / "data", base_url=url)
    message = str(info.value)
    assert f"{url}facades.tar.gz" in message
    assert "--manual-dir" in message and "downloads/manual/facades.tar.gz" in message
    assert time.monotonic() - start < 30  # TFDS alone retries for minutes
    assert not (tmp_path / "data" / "facades").exists()
    assert leftovers(tmp_path / "data") == []


def test_http_404_is_a_download_error(tmp_path, serve):
    (tmp_path / "www").mkdir()
    base_url, _ = serve(tmp_path / "www")
    with pytest.raises(datasets.DownloadError, match="404"):
        datasets.download("maps", tmp_path / "data", base_url=base_url)


def test_cityscapes_download_refused_with_instructions(tmp_path):
    with pytest.raises(datasets.DownloadError, match="prepare_cityscapes") as info:
        datasets.download("cityscapes", tmp_path)
    assert "cityscapes-dataset.com" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "facades" / "train").mkdir(parents=True)
    (tmp_path / "facades" / "train" / "mine.jpg").write_bytes(b"user data")
    with pytest.raises(datasets.DownloadError, match="not completed by p2p_keras"):
        datasets.download("facades", tmp_path)
    assert (tmp_path / "facades" / "train" / "mine.jpg").read_bytes() == b"user data"


def test_interrupted_extraction_is_cleaned_up_and_never_complete(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".maps.partial-{dead.pid}-abc"
    (stale / "maps" / "train").mkdir(parents=True)
    make_archive(tmp_path / "mirror", "maps", fake_files({"train": 1, "val": 1}))

    root = datasets.download("maps", tmp_path, base_url=(tmp_path / "mirror").as_uri())

    assert not stale.exists()
    assert pair_counts(root) == {"train": 1, "val": 1}


# --------------------------------------------------------------------------------------------
# Hostile and broken archives
# --------------------------------------------------------------------------------------------


def _dotdot(tar, tmp_path):
    add_bytes(tar, "../evil", b"x")


def _absolute(tar, tmp_path):
    add_bytes(tar, str(tmp_path / "abs_evil"), b"x")


def _symlink_outside(tar, tmp_path):
    info = tarfile.TarInfo("facades/train/evil.jpg")
    info.type, info.linkname = tarfile.SYMTYPE, "../../../evil_target"
    tar.addfile(info)


def _hardlink_outside(tar, tmp_path):
    info = tarfile.TarInfo("facades/train/evil.jpg")
    info.type, info.linkname = tarfile.LNKTYPE, "../etc/passwd"
    tar.addfile(info)


def _device(tar, tmp_path):
    info = tarfile.TarInfo("facades/train/dev")
    info.type = tarfile.CHRTYPE
    tar.addfile(info)


@pytest.mark.parametrize(
    "hostile", [_dotdot, _absolute, _symlink_outside, _hardlink_outside, _device]
)
def test_hostile_archive_is_refused_and_nothing_left(tmp_path, fake_facades, hostile):
    manual = tmp_path / "manual"
    make_archive(manual, "facades", fake_facades, extra=lambda tar: hostile(tar, tmp_path))
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.UnsafeArchiveError):
        datasets.download("facades", data_dir, manual_dir=manual)

    assert sorted(p.name for p in data_dir.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs_evil").exists()
    assert not (manual / "evil").exists()


def test_symlink_inside_the_archive_is_accepted(tmp_path):
    def link(tar):
        info = tarfile.TarInfo("maps/train/2.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "1.jpg"
        tar.addfile(info)

    make_archive(tmp_path / "manual", "maps", fake_files({"train": 1, "val": 1}), extra=link)
    root = datasets.download("maps", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert pair_counts(root) == {"train": 2, "val": 1}


@pytest.mark.parametrize("cut", ["half", "gzip_trailer"])
def test_truncated_archive_is_an_error_and_not_cached(tmp_path, serve, fake_facades, cut):
    archive = make_archive(tmp_path / "full", "facades", fake_facades)
    data = archive.read_bytes()
    (tmp_path / "www").mkdir()
    broken = data[: len(data) // 2] if cut == "half" else data[:-5]
    (tmp_path / "www" / "facades.tar.gz").write_bytes(broken)
    base_url, _ = serve(tmp_path / "www")
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.ArchiveError, match="truncated"):
        datasets.download("facades", data_dir, base_url=base_url)

    assert not (data_dir / "facades").exists()
    assert cached_archives(data_dir) == [] and leftovers(data_dir) == []
    shutil.copy(archive, tmp_path / "www" / "facades.tar.gz")
    assert pair_counts(datasets.download("facades", data_dir, base_url=base_url)) == SMALL_COUNTS


def test_dropped_connection_is_a_download_error_and_not_cached(tmp_path, serve, fake_facades):
    make_archive(tmp_path / "www", "facades", fake_facades)
    base_url, requests_seen = serve(tmp_path / "www", handler=_LyingHandler)
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.DownloadError, match="--manual-dir"):
        datasets.download("facades", data_dir, base_url=base_url)

    assert any("GET /facades.tar.gz" in r for r in requests_seen)
    assert not (data_dir / "facades").exists()
    assert cached_archives(data_dir) == [] and leftovers(data_dir) == []


def test_archive_without_pix2pix_layout_is_refused(tmp_path):
    make_archive(tmp_path / "manual", "maps", {"readme.txt": b"hello"})
    with pytest.raises(datasets.ArchiveError, match="layout"):
        datasets.download("maps", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert list((tmp_path / "data").iterdir()) == []


# --------------------------------------------------------------------------------------------
# Integrity (facades)
# --------------------------------------------------------------------------------------------


def test_facades_checksum_mismatch_is_refused_and_output_removed(tmp_path, serve, monkeypatch):
    files = fake_files(SMALL_COUNTS)
    table = hashes_of(files)
    table["val/1.jpg"] = "0" * 64
    monkeypatch.setattr(datasets, "expected_sha256", lambda name: table)
    make_archive(tmp_path / "www", "facades", files)
    base_url, _ = serve(tmp_path / "www")
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.IntegrityError, match="sha256 mismatch val/1.jpg"):
        datasets.download("facades", data_dir, base_url=base_url)

    assert not (data_dir / "facades").exists()
    assert cached_archives(data_dir) == [] and leftovers(data_dir) == []


def test_facades_missing_file_is_refused(tmp_path, monkeypatch):
    files = fake_files(SMALL_COUNTS)
    table = {**hashes_of(files), "test/2.jpg": "1" * 64}
    monkeypatch.setattr(datasets, "expected_sha256", lambda name: table)
    make_archive(tmp_path / "manual", "facades", files)
    with pytest.raises(datasets.IntegrityError, match="missing test/2.jpg"):
        datasets.download("facades", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert list((tmp_path / "data").iterdir()) == []


def test_verify_false_skips_the_hash_check(tmp_path, monkeypatch):
    files = fake_files(SMALL_COUNTS)
    monkeypatch.setattr(datasets, "expected_sha256", lambda name: {"train/1.jpg": "0" * 64})
    make_archive(tmp_path / "manual", "facades", files)
    root = datasets.download(
        "facades", tmp_path / "data", manual_dir=tmp_path / "manual", verify=False
    )
    assert pair_counts(root) == SMALL_COUNTS


@pytest.mark.skipif(not SHARED_FACADES.is_dir(), reason="../shared/data/facades not present")
def test_real_facades_archive_passes_all_606_hashes(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "facades.tar.gz", "w:gz", compresslevel=1) as tar:
        for split in ("train", "val", "test"):
            tar.add(SHARED_FACADES / split, arcname=f"facades/{split}")

    root = datasets.download("facades", tmp_path / "data", manual_dir=manual)

    assert pair_counts(root) == {"test": 106, "train": 400, "val": 100}
    assert json.loads((root / datasets.COMPLETE_MARKER).read_text())["sha256_verified"] is True
    with Image.open(root / "train" / "1.jpg") as image:
        assert image.size == (512, 256)
    config = tfds.download.DownloadConfig(manual_dir=str(manual))
    builder = tfds.builder("pix2pix/facades", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=config)  # the builder checks the hashes too
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 400,
        "val": 100,
        "test": 106,
    }


# --------------------------------------------------------------------------------------------
# resolve_dataset()
# --------------------------------------------------------------------------------------------


def test_resolve_dataset_path_and_name(tmp_path, monkeypatch):
    assert datasets.resolve_dataset(tmp_path) == (tmp_path, None)
    make_archive(tmp_path / "mirror", "edges2shoes", fake_files({"train": 2, "val": 1}))
    monkeypatch.setenv(datasets.URL_ENV_VAR, (tmp_path / "mirror").as_uri())
    monkeypatch.chdir(tmp_path)

    root, direction = datasets.resolve_dataset("edges2shoes", tmp_path / "data")

    assert (root, direction) == (tmp_path / "data" / "edges2shoes", "AtoB")
    assert pair_counts(root) == {"train": 2, "val": 1}
    with pytest.raises(ValueError, match="neither an existing folder nor a known"):
        datasets.resolve_dataset("no_such_dir_or_dataset")


# --------------------------------------------------------------------------------------------
# TFDS builder
# --------------------------------------------------------------------------------------------


def _split_sizes(data_dir: Path, **kwargs) -> dict:
    splits = tfds.load("pix2pix/facades", data_dir=str(data_dir), **kwargs)
    sizes = {name: int(ds.cardinality()) for name, ds in splits.items()}
    example = next(iter(splits["train"]))
    assert example["image"].dtype.name == "uint8" and example["image"].shape == (8, 16, 3)
    assert example["file_name"].numpy().decode().endswith(".jpg")
    return sizes


def test_tfds_load_from_local_server(tmp_path, serve, fake_facades, monkeypatch):
    make_archive(tmp_path / "www", "facades", fake_facades)
    base_url, requests_seen = serve(tmp_path / "www")
    monkeypatch.setenv(datasets.URL_ENV_VAR, base_url)

    assert _split_sizes(tmp_path / "tfds") == SMALL_COUNTS
    assert any("GET /facades.tar.gz" in r for r in requests_seen)


def test_tfds_load_from_manual_dir(tmp_path, fake_facades, monkeypatch):
    make_archive(tmp_path / "manual", "facades", fake_facades)
    monkeypatch.setenv(datasets.URL_ENV_VAR, f"http://127.0.0.1:{free_port()}/")
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))

    sizes = _split_sizes(tmp_path / "tfds", download_and_prepare_kwargs={"download_config": config})

    assert sizes == SMALL_COUNTS


def test_tfds_builder_refuses_checksum_mismatch(tmp_path, monkeypatch):
    files = fake_files(SMALL_COUNTS)
    table = {**hashes_of(files), "train/2.jpg": "0" * 64}
    monkeypatch.setattr(datasets, "expected_sha256", lambda name: table)
    make_archive(tmp_path / "manual", "facades", files)
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))
    builder = tfds.builder("pix2pix/facades", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(datasets.IntegrityError, match="train/2.jpg"):
        builder.download_and_prepare(download_config=config)


class Pix2pixBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's own builder checks, on dummy data generated into a temporary EXAMPLE_DIR."""

    DATASET_CLASS = datasets.Pix2pix
    BUILDER_CONFIG_NAMES_TO_TEST = ["facades", "night2day"]
    SPLITS = SMALL_COUNTS
    DL_EXTRACT_RESULT = "extracted"
    SKIP_CHECKSUMS = True  # checksums.tsv holds no real values yet

    @classmethod
    def setUpClass(cls):
        cls._example_dir = tempfile.mkdtemp(prefix="pix2pix_dummy_")
        files = fake_files(SMALL_COUNTS)
        for name in cls.BUILDER_CONFIG_NAMES_TO_TEST:
            write_tree(Path(cls._example_dir) / "extracted" / name, files)
        cls.EXAMPLE_DIR = cls._example_dir
        cls._table = hashes_of(files)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls._example_dir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        table = self._table
        for patcher in (
            mock.patch.object(datasets, "_ensure_reachable"),  # the dummy run is offline
            mock.patch.object(
                datasets, "expected_sha256", lambda name: table if name == "facades" else None
            ),
        ):
            patcher.start()
            self.patchers.append(patcher)


# --------------------------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------------------------

PHOTO_RGB, LABEL_RGB = (200, 30, 40), (128, 64, 128)


def make_cityscapes(root: Path, layout: dict) -> None:
    """layout: {split: {city: n_frames}} -> gtFine/ and leftImg8bit/ trees of solid images."""
    for split, cities in layout.items():
        for city, n in cities.items():
            for i in range(n):
                stem = f"{city}_000000_{i:06d}"
                for kind, suffix, rgb, size in (
                    ("gtFine", "gtFine_color", LABEL_RGB, (64, 32)),
                    ("leftImg8bit", "leftImg8bit", PHOTO_RGB, (64, 32)),
                ):
                    folder = root / kind / split / city
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", size, rgb).save(folder / f"{stem}_{suffix}.png")


def test_prepare_cityscapes_builds_aligned_layout(tmp_path):
    make_cityscapes(tmp_path, {"train": {"aachen": 2, "bochum": 1}, "val": {"lindau": 2}})
    out = tmp_path / "data" / "cityscapes"

    root = datasets.prepare_cityscapes(tmp_path / "gtFine", tmp_path / "leftImg8bit", out, 16)

    assert root == out and pair_counts(out) == {"train": 3, "val": 2}
    pixels = np.asarray(Image.open(out / "train" / "0.jpg"))
    assert pixels.shape == (16, 32, 3)
    np.testing.assert_allclose(pixels[8, 4], PHOTO_RGB, atol=6)  # A = photo, left
    np.testing.assert_allclose(pixels[8, 28], LABEL_RGB, atol=6)  # B = label, right
    mtime = (out / "val" / "1.jpg").stat().st_mtime_ns
    assert datasets.prepare_cityscapes(tmp_path / "nowhere", tmp_path / "nowhere", out) == out
    assert (out / "val" / "1.jpg").stat().st_mtime_ns == mtime


def test_prepare_cityscapes_unmatched_photo_fails_without_output(tmp_path):
    make_cityscapes(tmp_path, {"train": {"aachen": 2}, "val": {"lindau": 2}})
    (tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000001_gtFine_color.png").unlink()
    out = tmp_path / "data" / "cityscapes"

    with pytest.raises(datasets.DownloadError, match="1 photo.* have no gtFine label"):
        datasets.prepare_cityscapes(tmp_path / "gtFine", tmp_path / "leftImg8bit", out)

    assert list((tmp_path / "data").iterdir()) == []
