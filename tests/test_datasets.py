"""Offline tests of p2p_keras.jobs.datasets: downloads from 127.0.0.1 and manual folders, hostile,
broken and tampered archives, dataset resolution, the TFDS builder, combine, Cityscapes."""

import functools
import hashlib
import http.server
import io
import shutil
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from p2p_keras.data import BadImageError, check_paired
from p2p_keras.jobs import datasets, synthetic

tfds.disable_progress_bar()

SHARED_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"
SMALL_COUNTS = {"train": 3, "val": 2, "test": 1}


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


def hidden(folder: Path) -> list:
    """Temporary files and folders (atomic writes) left anywhere under `folder`."""
    return [p for p in folder.rglob(".*")]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every test runs against a closed local port unless it serves archives itself."""
    monkeypatch.setenv(datasets.URL_ENV_VAR, closed_port_url())


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
def serve(monkeypatch):
    """serve(folder, handler) serves `folder` on 127.0.0.1 as the dataset server; -> requests."""
    servers = []

    def start(folder: Path, handler=_QuietHandler):
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
        )
        server.daemon_threads, server.requests = True, []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv(datasets.URL_ENV_VAR, f"http://127.0.0.1:{server.server_address[1]}")
        return server.requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------
# Registry and the shipped hash table
# --------------------------------------------------------------------------------------------


def test_registry_and_url_override(monkeypatch):
    assert set(datasets.DATASETS) == {
        "facades",
        "maps",
        "edges2shoes",
        "edges2handbags",
        "night2day",
        "cityscapes",
    }
    assert datasets.DATASETS["facades"].direction == "BtoA"
    assert datasets.DATASETS["facades"].splits == ("train", "val", "test")
    assert not datasets.DATASETS["cityscapes"].redistributable
    monkeypatch.delenv(datasets.URL_ENV_VAR)
    assert datasets.dataset_url("maps") == datasets.BASE_URL + "maps.tar.gz"
    monkeypatch.setenv(datasets.URL_ENV_VAR, "http://127.0.0.1:9/mirror/")
    assert datasets.dataset_url("facades") == "http://127.0.0.1:9/mirror/facades.tar.gz"
    with pytest.raises(ValueError, match="known: facades"):
        datasets.download("facadez")


def test_shipped_facades_hash_table_has_the_606_files():
    table = datasets.expected_sha256("facades")
    counts = {s: sum(rel.startswith(f"{s}/") for rel in table) for s in ("train", "val", "test")}
    assert counts == {"train": 400, "val": 100, "test": 106} and len(table) == 606
    assert all(len(digest) == 64 for digest in table.values())
    assert datasets.expected_sha256("maps") is None


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def test_download_from_a_local_server_verifies_and_rerun_is_a_noop(tmp_path, serve, fake_facades):
    make_archive(tmp_path / "www", "facades", fake_facades)
    requests = serve(tmp_path / "www")
    data_dir = tmp_path / "data"

    root = datasets.download("facades", data_dir)

    assert root == data_dir / "facades" and pair_counts(root) == SMALL_COUNTS
    assert (root / "train" / "1.jpg").read_bytes() == fake_facades["train/1.jpg"]
    assert (data_dir / "downloads" / "facades.tar.gz").is_file()
    assert sum("GET /facades.tar.gz" in r for r in requests) == 1
    assert hidden(data_dir) == [] and check_paired(root) == []
    assert datasets.download("facades", data_dir) == root
    assert sum("GET /facades.tar.gz" in r for r in requests) == 1  # nothing fetched again


def test_download_from_a_manual_folder_uses_no_network(tmp_path, fake_facades):
    make_archive(tmp_path / "manual", "facades", fake_facades)
    root = datasets.download("facades", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert pair_counts(root) == SMALL_COUNTS
    # The default manual folder, data_dir/downloads/manual, is used when the archive is there.
    make_archive(tmp_path / "d2" / "downloads" / "manual", "facades", fake_facades)
    assert pair_counts(datasets.download("facades", tmp_path / "d2")) == SMALL_COUNTS


def test_missing_manual_archive_and_unreachable_server_say_what_to_do(tmp_path):
    with pytest.raises(datasets.DownloadError, match="facades.tar.gz not found"):
        datasets.download("facades", tmp_path / "data", manual_dir=tmp_path / "nothing")
    start = time.monotonic()
    with pytest.raises(datasets.DownloadError, match="by hand") as info:
        datasets.download("facades", tmp_path / "data")
    assert time.monotonic() - start < 30
    assert str(tmp_path / "data" / "downloads" / "manual") in str(info.value)
    assert not (tmp_path / "data" / "facades").exists()
    assert list((tmp_path / "data" / "downloads").iterdir()) == []


def test_http_404_and_cityscapes_are_download_errors(tmp_path, serve):
    (tmp_path / "www").mkdir()
    serve(tmp_path / "www")
    with pytest.raises(datasets.DownloadError, match="404"):
        datasets.download("maps", tmp_path / "data")
    with pytest.raises(datasets.DownloadError, match="prepare_cityscapes"):
        datasets.download("cityscapes", tmp_path / "data")


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


@pytest.mark.parametrize("hostile", [_dotdot, _symlink_outside, _hardlink_outside, _device])
def test_hostile_archive_is_refused_and_nothing_left(tmp_path, fake_facades, hostile):
    manual = tmp_path / "manual"
    make_archive(manual, "facades", fake_facades, extra=lambda tar: hostile(tar, tmp_path))
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.DownloadError, match="unsafe"):
        datasets.download("facades", data_dir, manual_dir=manual)

    assert list(data_dir.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "abs_evil").exists()
    assert (manual / "facades.tar.gz").exists()  # a manual archive is the user's: kept


def test_absolute_member_lands_inside_the_target_folder(tmp_path, fake_facades):
    manual = tmp_path / "manual"
    make_archive(manual, "facades", fake_facades, extra=lambda tar: _absolute(tar, tmp_path))
    root = datasets.download("facades", tmp_path / "data", manual_dir=manual)
    assert not (tmp_path / "abs_evil").exists()  # tarfile's "data" filter strips the "/"
    assert [p.name for p in root.rglob("abs_evil")] == ["abs_evil"]


def test_symlink_inside_the_archive_is_accepted(tmp_path):
    def link(tar):
        info = tarfile.TarInfo("maps/train/2.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "1.jpg"
        tar.addfile(info)

    make_archive(tmp_path / "manual", "maps", fake_files({"train": 1, "val": 1}), extra=link)
    root = datasets.download("maps", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert pair_counts(root) == {"train": 2, "val": 1}


def test_truncated_download_is_refused_deleted_and_fetched_again(tmp_path, serve, fake_facades):
    archive = make_archive(tmp_path / "full", "facades", fake_facades)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "facades.tar.gz").write_bytes(archive.read_bytes()[:300])
    serve(tmp_path / "www")
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.DownloadError, match="truncated"):
        datasets.download("facades", data_dir)

    assert not (data_dir / "facades").exists() and hidden(data_dir) == []
    assert list((data_dir / "downloads").iterdir()) == []
    shutil.copy(archive, tmp_path / "www" / "facades.tar.gz")
    assert pair_counts(datasets.download("facades", data_dir)) == SMALL_COUNTS


def test_dropped_connection_is_a_download_error_and_not_cached(tmp_path, serve, fake_facades):
    make_archive(tmp_path / "www", "facades", fake_facades)
    requests = serve(tmp_path / "www", handler=_LyingHandler)
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.DownloadError, match="by hand"):
        datasets.download("facades", data_dir)

    assert any("GET /facades.tar.gz" in r for r in requests)
    assert not (data_dir / "facades").exists()
    assert list((data_dir / "downloads").iterdir()) == []


def test_archive_without_the_pix2pix_layout_is_refused(tmp_path):
    make_archive(tmp_path / "manual", "maps", {"readme.txt": b"hi"})
    with pytest.raises(datasets.DownloadError, match="no maps/train/"):
        datasets.download("maps", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert list((tmp_path / "data").iterdir()) == []


def test_tampered_facades_archive_is_refused_naming_the_file(tmp_path, fake_facades):
    tampered = dict(fake_facades, **{"train/2.jpg": jpeg_bytes(99)})
    make_archive(tmp_path / "manual", "facades", tampered)
    data_dir = tmp_path / "data"

    with pytest.raises(datasets.IntegrityError, match="sha256 mismatch train/2.jpg"):
        datasets.download("facades", data_dir, manual_dir=tmp_path / "manual")

    assert list(data_dir.iterdir()) == []
    del tampered["val/1.jpg"]
    make_archive(tmp_path / "manual", "facades", tampered)
    with pytest.raises(datasets.IntegrityError, match="2 file.*missing val/1.jpg"):
        datasets.download("facades", data_dir, manual_dir=tmp_path / "manual")


@pytest.mark.skipif(not SHARED_FACADES.is_dir(), reason="../shared/data/facades not present")
def test_real_facades_archive_passes_all_606_hashes(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "facades.tar.gz", "w:gz", compresslevel=1) as tar:
        for split in ("train", "val", "test"):
            tar.add(SHARED_FACADES / split, arcname=f"facades/{split}")
    root = datasets.download("facades", tmp_path / "data", manual_dir=manual)
    assert pair_counts(root) == {"test": 106, "train": 400, "val": 100}


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def test_resolve_dataset_uses_a_present_folder_without_network(tmp_path, fake_facades):
    data_dir = tmp_path / "data"
    write_tree(data_dir / "facades", fake_facades)
    assert datasets.resolve_dataset("facades", data_dir) == (data_dir / "facades", "BtoA")
    # A symlink to another copy works too.
    write_tree(tmp_path / "elsewhere" / "facades", fake_facades)
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "facades").symlink_to(tmp_path / "elsewhere" / "facades")
    assert datasets.resolve_dataset("facades", tmp_path / "d2") == (
        tmp_path / "d2" / "facades",
        "BtoA",
    )
    assert datasets.find_real_facades(tmp_path / "d2") == tmp_path / "d2" / "facades"
    # A changed file is refused, named.
    (tmp_path / "elsewhere" / "facades" / "val" / "2.jpg").write_bytes(jpeg_bytes(50))
    with pytest.raises(datasets.IntegrityError, match="val/2.jpg"):
        datasets.resolve_dataset("facades", tmp_path / "d2")


@pytest.mark.skipif(not SHARED_FACADES.is_dir(), reason="../shared/data/facades not present")
def test_resolve_dataset_accepts_a_symlink_to_the_real_facades(tmp_path):
    (tmp_path / "facades").symlink_to(SHARED_FACADES)
    assert datasets.resolve_dataset("facades", tmp_path) == (tmp_path / "facades", "BtoA")


def test_resolve_dataset_offline_and_absent_says_how_to_get_it(tmp_path):
    with pytest.raises(datasets.DownloadError, match="by hand"):
        datasets.resolve_dataset("facades", tmp_path)
    with pytest.raises(datasets.DownloadError, match="python -m p2p_keras download facades"):
        datasets.resolve_dataset("facades", tmp_path, download=False)
    with pytest.warns(UserWarning, match="not available"):
        assert datasets.find_real_facades(tmp_path) is None
    assert list(tmp_path.iterdir()) == [tmp_path / "downloads"]


def test_resolve_dataset_folders_and_the_synthetic_default(tmp_path, monkeypatch):
    plain = tmp_path / "mine"
    (plain / "train").mkdir(parents=True)
    assert datasets.resolve_dataset(plain) == (plain, None)
    assert datasets.resolve_dataset(str(plain)) == (plain, None)
    (tmp_path / "maps" / "train").mkdir(parents=True)
    assert datasets.resolve_dataset(tmp_path / "maps") == (tmp_path / "maps", "AtoB")
    (plain / synthetic.MANIFEST_NAME).write_text("{}")
    assert datasets.resolve_dataset(plain) == (plain, "BtoA")
    calls = []
    monkeypatch.setattr(synthetic, "make_synthetic_facades", lambda out: calls.append(out) or out)
    assert datasets.resolve_dataset(None, tmp_path) == (tmp_path / "synthetic_facades", "BtoA")
    assert calls == [tmp_path / "synthetic_facades"]
    with pytest.raises(ValueError, match="Unknown pix2pix dataset 'nowhere'"):
        datasets.resolve_dataset("nowhere", tmp_path)


# --------------------------------------------------------------------------------------------
# TFDS builder
# --------------------------------------------------------------------------------------------


def _split_sizes(data_dir: Path) -> dict:
    builder = tfds.builder("pix2pix/facades", data_dir=data_dir)
    builder.download_and_prepare()
    return {name: info.num_examples for name, info in builder.info.splits.items()}


def test_tfds_load_from_a_local_server(tmp_path, serve, fake_facades):
    make_archive(tmp_path / "www", "facades", fake_facades)
    serve(tmp_path / "www")
    assert _split_sizes(tmp_path / "tfds") == SMALL_COUNTS
    examples = list(tfds.load("pix2pix/facades", split="train", data_dir=tmp_path / "tfds"))
    assert {e["file_name"].numpy() for e in examples} == {b"1.jpg", b"2.jpg", b"3.jpg"}
    assert all(e["image"].shape == (8, 16, 3) for e in examples)


def test_tfds_load_from_the_manual_folder(tmp_path, fake_facades):
    make_archive(tmp_path / "tfds" / "downloads" / "manual", "facades", fake_facades)
    assert _split_sizes(tmp_path / "tfds") == SMALL_COUNTS


def test_tfds_builder_refuses_a_tampered_archive(tmp_path, fake_facades):
    tampered = dict(fake_facades, **{"test/1.jpg": jpeg_bytes(77)})
    make_archive(tmp_path / "tfds" / "downloads" / "manual", "facades", tampered)
    with pytest.raises(datasets.IntegrityError, match="test/1.jpg"):
        _split_sizes(tmp_path / "tfds")


# --------------------------------------------------------------------------------------------
# combine (write_aligned)
# --------------------------------------------------------------------------------------------


def noise(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_write_aligned_converts_resizes_and_keeps_jpeg(tmp_path):
    save(tmp_path / "A" / "train" / "x.jpg", np.full((32, 32, 3), (200, 40, 90), np.uint8))
    save(tmp_path / "B" / "train" / "x.jpg", np.full((16, 16), 70, np.uint8))  # gray, smaller
    assert datasets.write_aligned(tmp_path / "A", tmp_path / "B", tmp_path / "out") == {"train": 1}
    with Image.open(tmp_path / "out" / "train" / "x.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 32))
        ab = np.asarray(im).astype(int)
    # Away from the seam, where JPEG chroma subsampling mixes the halves.
    assert np.abs(ab[:, :24] - (200, 40, 90)).max() <= 4
    assert np.abs(ab[:, 40:] - 70).max() <= 2
    assert hidden(tmp_path / "out") == []
    assert datasets.write_aligned(tmp_path / "A", tmp_path / "B", tmp_path / "s", size=8) == {
        "train": 1
    }
    assert Image.open(tmp_path / "s" / "train" / "x.jpg").size == (16, 8)


def test_write_aligned_scales_16_bit_and_keeps_png(tmp_path):
    save(tmp_path / "A" / "val" / "x.png", np.full((16, 16, 3), 9, np.uint8))
    save(tmp_path / "B" / "val" / "x.png", np.full((16, 16), 40000, np.uint16))
    assert datasets.write_aligned(tmp_path / "A", tmp_path / "B", tmp_path / "out") == {"val": 1}
    with Image.open(tmp_path / "out" / "val" / "x.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 16))
        ab = np.asarray(im)
    assert (ab[:, :16] == 9).all()
    assert (ab[:, 16:] == 156).all()  # 40000 / 257, not clipped to 255


def test_write_aligned_refuses_bad_inputs_and_writes_nothing(tmp_path):
    for split in ("train", "val"):
        save(tmp_path / "A" / split / "ok.png", noise(8, 8, 0))
        save(tmp_path / "B" / split / "ok.png", noise(8, 8, 1))
    save(tmp_path / "A" / "val" / "lonely.png", noise(8, 8, 2))
    (tmp_path / "B" / "val" / "broken.png").write_bytes(b"not a png")
    save(tmp_path / "A" / "val" / "broken.png", noise(8, 8, 3))
    with pytest.raises(BadImageError) as info:
        datasets.write_aligned(tmp_path / "A", tmp_path / "B", tmp_path / "out")
    assert [(Path(b.path).name, b.reason.split(":")[0]) for b in info.value.bad] == [
        ("lonely.png", "missing partner"),
        ("broken.png", "unreadable image (UnidentifiedImageError"),
    ]
    assert str(tmp_path / "B" / "val" / "broken.png") in str(info.value)
    assert list((tmp_path / "out").rglob("*")) == []  # not even the good train split


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
    assert datasets.resolve_dataset(out) == (out, "BtoA")
    mtime = (out / "val" / "1.jpg").stat().st_mtime_ns
    assert datasets.prepare_cityscapes(tmp_path / "nowhere", tmp_path / "nowhere", out) == out
    assert (out / "val" / "1.jpg").stat().st_mtime_ns == mtime


def test_prepare_cityscapes_unmatched_photo_fails_without_output(tmp_path):
    make_cityscapes(tmp_path, {"train": {"aachen": 2}, "val": {"lindau": 2}})
    (tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000001_gtFine_color.png").unlink()
    out = tmp_path / "data" / "cityscapes"

    with pytest.raises(datasets.DownloadError, match="No gtFine label for 1 photo"):
        datasets.prepare_cityscapes(tmp_path / "gtFine", tmp_path / "leftImg8bit", out)

    assert list((tmp_path / "data").iterdir()) == []
