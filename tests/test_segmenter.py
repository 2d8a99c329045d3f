"""Tests for p2p_keras.segmenter: label decoding, the FCN-score segmenter, its cache."""

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from p2p_keras import metrics, segmenter
from p2p_keras.jobs.synthetic import labels_to_rgb, make_synthetic_facades
from p2p_keras.segmenter import PALETTE_ARRAY

SIZE = 64
FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"  # as conftest


def jpeg(rgb, quality=75):
    """`rgb` after a JPEG round trip (4:2:0 chroma, like the pix2pix files)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def away_from_edges(classes, margin=2):
    """Pixels at least `margin` pixels from a change of class."""
    edge = np.zeros(classes.shape, bool)
    for axis in (0, 1):
        change = np.diff(classes, axis=axis) != 0
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        edge |= np.pad(change, pad)
        pad[axis] = (0, 1)
        edge |= np.pad(change, pad)
    return ~ndimage.binary_dilation(edge, iterations=margin)


def test_decode_real_facades_labels(facades_root):
    files = sorted((facades_root / "train").glob("*.jpg"))[:40]
    _, labels = segmenter.load_labelled(facades_root, "train")
    labels = labels[:40]
    assert labels.shape == (40, 256, 256)
    counts = np.bincount(labels.ravel(), minlength=12) / labels.size
    assert (counts > 0.005).all(), counts  # all 12 CMP classes occur
    assert counts.argmax() == segmenter.class_names("facades").index("facade")
    # Stray colours: far from every palette colour, yet not at a class boundary where JPEG
    # blurs two colours together.
    stray = []
    for path, classes in zip(files, labels, strict=True):
        rgb = np.asarray(Image.open(path).convert("RGB"))[:, 256:].astype(np.float32)
        palette = PALETTE_ARRAY.astype(np.float32)
        distance = np.sqrt(((rgb[..., None, :] - palette) ** 2).sum(-1)).min(-1)
        stray.append((distance > 30) & away_from_edges(classes))
    assert np.mean(stray) < 0.01


def test_decode_facades_exact_and_through_jpeg():
    rng = np.random.default_rng(0)
    classes = np.kron(rng.integers(0, 12, (8, 8)), np.ones((8, 8), int))
    rgb = labels_to_rgb(classes)
    np.testing.assert_array_equal(segmenter.decode_labels(rgb), classes)
    np.testing.assert_array_equal(segmenter.decode_labels(rgb / 127.5 - 1), classes)
    decoded = segmenter.decode_labels(jpeg(rgb))
    inner = away_from_edges(classes)
    assert (decoded == classes)[inner].mean() > 0.99


def test_cityscapes_decoding_on_synthetic_label_maps():
    names = segmenter.class_names("cityscapes")
    assert len(names) == 19 and names[0] == "road" and names[-1] == "bicycle"
    assert len(segmenter.CITYSCAPES_LABELS) == 34
    colours = np.array([c for *_, c in segmenter.CITYSCAPES_LABELS], np.uint8)
    # Ids sharing a colour decode to the first of them: 0-4 (void) and 17/18 (pole, polegroup).
    first = np.array([np.flatnonzero((colours == c).all(1))[0] for c in colours])
    train_ids = np.array([t for _, t, _ in segmenter.CITYSCAPES_LABELS])[first]
    assert (first != np.arange(34)).sum() == 5
    exact = segmenter.decode_labels(colours[None], "cityscapes", label_ids=True)[0]
    np.testing.assert_array_equal(exact, first)
    rng = np.random.default_rng(1)
    for _ in range(3):
        ids = np.kron(rng.integers(0, 34, (8, 8)), np.ones((16, 16), int))
        decoded = segmenter.decode_labels(jpeg(colours[ids], 90), "cityscapes")
        assert (decoded == train_ids[ids])[away_from_edges(ids)].mean() > 0.99
    assert set(np.unique(train_ids)) == {-1, *range(19)}


def test_datasets_without_labels_say_so(tmp_path):
    assert segmenter.class_names("maps") is None
    assert segmenter.class_names("edges2shoes") is None
    with pytest.raises(ValueError, match="no label side"):
        segmenter.load_or_train_segmenter(tmp_path, dataset="maps")
    with pytest.raises(ValueError, match="no label side"):
        segmenter.decode_labels(np.zeros((4, 4, 3), np.uint8), "edges2shoes")


def test_fcn_score_counts_like_the_paper():
    class Oracle:
        """Stands in for a segmenter: logits that pick a fixed class map."""

        input_shape = (None, 4, 4, 3)
        output_shape = (None, 4, 4, 3)

        def __init__(self, predicted):
            self.predicted = predicted

        def __call__(self, x, training=False):
            return np.eye(3, dtype=np.float32)[self.predicted[: len(x)]] * 10

    truth = np.array([[[0, 0, 1, 1]] * 4])
    predicted = np.array([[[0, 1, 1, 1]] * 4])
    photos = np.zeros((1, 4, 4, 3), np.float32)
    score = segmenter.fcn_score(photos, truth, Oracle(predicted), class_names=("a", "b", "c"))
    assert score["per_pixel_acc"] == pytest.approx(0.75)
    assert score["per_class_acc"] == pytest.approx((0.5 + 1.0 + 0) / 3)  # class 2 absent: 0
    assert score["class_iou"] == pytest.approx((0.5 + 8 / 12 + 0) / 3)
    assert (score["iou/a"], score["acc/b"], score["acc/c"]) == pytest.approx((0.5, 1, 0))
    ignored = np.where(truth == 0, -1, truth)  # -1 pixels do not count
    only_ones = segmenter.fcn_score(photos, ignored, Oracle(predicted))
    assert only_ones["per_pixel_acc"] == pytest.approx(1)


def test_get_scores_counts_absent_classes_as_zero_like_the_official_code():
    # rows: true class, columns: predicted. Class 3 is absent from the labels but predicted
    # twice; class 4 is absent from both. Counted by hand:
    confusion = np.array(
        [[5, 1, 0, 2, 0], [2, 6, 0, 0, 0], [0, 0, 4, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    )
    accuracy, class_acc, iou = metrics.get_scores(confusion)
    assert accuracy == pytest.approx(15 / 20)
    np.testing.assert_allclose(class_acc, [5 / 8, 6 / 8, 1, 0, 0])
    np.testing.assert_allclose(iou, [5 / (8 + 7 - 5), 6 / (8 + 7 - 6), 1, 0, 0])
    assert np.mean(iou) == pytest.approx((0.5 + 2 / 3 + 1) / 5)  # nanmean would give / 3
    assert metrics.get_scores(np.zeros((2, 2)))[0] == 0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "facades"
    return make_synthetic_facades(root, train=48, val=0, test=16, size=SIZE)


def test_segmenter_learns_and_real_photos_beat_the_mean_photo(synthetic, tmp_path):
    model = segmenter.load_or_train_segmenter(
        synthetic, size=SIZE, epochs=30, filters=16, cache_dir=tmp_path, verbose=0
    )
    assert model.output_shape == (None, SIZE, SIZE, 12)
    photos, labels = segmenter.load_labelled(synthetic, "test")
    majority = np.bincount(labels.ravel()).max() / labels.size
    real = segmenter.fcn_score(photos, labels, model)
    train_photos, _ = segmenter.load_labelled(synthetic, "train")
    mean = segmenter.fcn_score(np.broadcast_to(train_photos.mean(0), photos.shape), labels, model)
    uint8 = segmenter.fcn_score(np.round((photos + 1) * 127.5).astype(np.uint8), labels, model)
    assert real["per_pixel_acc"] > majority + 0.15, (real, majority)
    for key in real:
        assert real[key] > mean[key] + 0.1, (key, real, mean)
        assert uint8[key] == pytest.approx(real[key], abs=0.01)


def test_cache_reused_deterministic_and_invalidated(synthetic, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("P2P_PROJECT_DIR", str(tmp_path / "project"))  # the default cache's home
    root = tmp_path / "facades"
    (root / "train").mkdir(parents=True)
    for i in range(1, 9):  # 8 photos keep it fast
        shutil.copy(synthetic / "train" / f"{i}.jpg", root / "train")
    kwargs = dict(size=SIZE, epochs=1, filters=8, verbose=0)
    start = time.perf_counter()
    first = segmenter.load_or_train_segmenter(root, **kwargs)
    trained_in = time.perf_counter() - start
    assert "Training" in capsys.readouterr().out
    (cache,) = (tmp_path / "project" / "data" / ".fcn").glob("facades-*")  # not in the dataset
    record = json.loads((cache / "segmenter.json").read_text())
    assert record["config"]["size"] == SIZE and len(record["checksum"]) == 64

    start = time.perf_counter()
    cached = segmenter.load_or_train_segmenter(root, **kwargs)
    assert time.perf_counter() - start < trained_in / 2
    assert "Training" not in capsys.readouterr().out
    for a, b in zip(first.get_weights(), cached.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    again = segmenter.load_or_train_segmenter(root, cache_dir=tmp_path / "again", **kwargs)
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # same seed, same weights

    changed = root / "train" / "1.jpg"
    changed.write_bytes((synthetic / "train" / "20.jpg").read_bytes())
    segmenter.load_or_train_segmenter(root, **kwargs)
    assert "Training" in capsys.readouterr().out
    checksums = {
        json.loads((c / "segmenter.json").read_text())["checksum"]
        for c in (tmp_path / "project" / "data" / ".fcn").glob("facades-*")
    }
    assert len(checksums) == 2 and record["checksum"] in checksums


def test_two_folder_layout_trains_the_same_segmenter(synthetic, tmp_path):
    aligned, two_folder = tmp_path / "aligned", tmp_path / "two_folder"
    for split, count in (("train", 8), ("test", 4)):
        for folder in (aligned / split, two_folder / "A" / split, two_folder / "B" / split):
            folder.mkdir(parents=True)
        for i in range(1, count + 1):  # PNG: both layouts hold the same pixels
            pair = np.asarray(Image.open(synthetic / split / f"{i}.jpg"))
            Image.fromarray(pair).save(aligned / split / f"{i}.png")
            Image.fromarray(pair[:, :SIZE]).save(two_folder / "A" / split / f"{i}.png")
            Image.fromarray(pair[:, SIZE:]).save(two_folder / "B" / split / f"{i}.png")
    for a, b in zip(
        *(segmenter.load_labelled(root, "test") for root in (aligned, two_folder)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    kwargs = dict(size=32, epochs=1, filters=4, verbose=0)
    models = [
        segmenter.load_or_train_segmenter(root, cache_dir=tmp_path / root.name, **kwargs)
        for root in (aligned, two_folder)
    ]
    for a, b in zip(*(model.get_weights() for model in models), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.fixture(scope="module")
def real_facades_segmenter(tmp_path_factory):
    """A cheap segmenter of the real facades (64 px, 16 filters, 10 epochs), the test split."""
    if not FACADES.is_dir():
        pytest.skip(f"real facades not present at {FACADES}")
    model = segmenter.load_or_train_segmenter(
        FACADES, size=64, filters=16, epochs=10, cache_dir=tmp_path_factory.mktemp("fcn"), verbose=0
    )
    return model, *segmenter.load_labelled(FACADES, "test", size=128)


def test_on_real_facades_real_photos_beat_the_mean_photo_and_a_blur(real_facades_segmenter):
    model, photos, labels = real_facades_segmenter
    train_photos = segmenter.load_labelled(FACADES, "train", size=128)[0]
    mean = np.broadcast_to(train_photos.mean(0), photos.shape)
    blurred = ndimage.uniform_filter(photos, size=(1, 9, 9, 1))  # a 9x9 box at 128 px
    real, blur, mean = (segmenter.fcn_score(x, labels, model) for x in (photos, blurred, mean))
    # Measured (per-pixel, class IoU): real 0.531, 0.172; blur 0.451, 0.102; mean 0.372, 0.052.
    for key, margin in (("per_pixel_acc", 0.05), ("class_iou", 0.04)):
        assert real[key] > blur[key] + margin, (key, real, blur)
        assert real[key] > mean[key] + 2 * margin, (key, real, mean)
