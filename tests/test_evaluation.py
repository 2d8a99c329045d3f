"""Metrics against direct computation, baselines beside the scores, KID/FID offline, the job."""

import inspect
import json
import shutil
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import linalg

import p2p_keras
from p2p_keras import metrics as m
from p2p_keras.data import load_paired
from p2p_keras.generator import build_unet_generator
from p2p_keras.jobs import cli
from p2p_keras.jobs import evaluate as ev
from p2p_keras.jobs.cli import build_parser
from p2p_keras.jobs.synthetic import make_synthetic_facades

SIZE = 32


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")
    b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1).astype("float32")
    return a, b


@pytest.fixture(scope="module")
def images():
    """(inputs, generated, targets) with generated = inputs / 2: every score has a numpy answer."""
    rng = np.random.default_rng(1)
    inputs, targets = rng.uniform(-1, 1, (2, 6, SIZE, SIZE, 3)).astype("float32")
    return inputs, inputs / 2, targets


@pytest.fixture(scope="module")
def random_features():
    """A small random-weight feature extractor: images -> (N, 8)."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    return lambda images: keras.ops.convert_to_numpy(model(images))


# --------------------------------------------------------------------------- per-image metrics


def test_l1_is_the_mean_absolute_error_of_each_image(pair):
    a, b = pair
    expected = [np.mean(np.abs(a[i] - b[i])) for i in range(3)]
    np.testing.assert_allclose(m.per_image_l1(a, b), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        m.per_image_l1(a, b[:2])


def test_psnr_follows_the_mse_formula_on_the_two_unit_range(pair):
    a, b = pair
    mse = ((a - b) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(m.per_image_psnr(a, b), 10 * np.log10(2.0**2 / mse), rtol=1e-5)
    # the same as [0, 1] images with a peak of 1
    unit = 10 * np.log10(1.0 / (((a - b) / 2) ** 2).reshape(3, -1).mean(axis=1))
    np.testing.assert_allclose(m.per_image_psnr(a, b), unit, rtol=1e-5)


def test_ssim_of_identical_images_is_one(pair):
    np.testing.assert_allclose(m.per_image_ssim(pair[0], pair[0]), 1.0, atol=1e-6)


def test_ssim_is_the_usual_one_on_uint8_images(pair):
    a, b = (np.round((x + 1) * 127.5) for x in pair)
    expected = tf.image.ssim(tf.constant(a, tf.float32), tf.constant(b, tf.float32), 255.0)
    ours = m.per_image_ssim(a / 127.5 - 1, b / 127.5 - 1)
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)
    assert 0.2 < ours.mean() < 0.99
    # the pitfall the [0, 1] mapping avoids: SSIM on [-1, 1] with max_val=2 differs
    shifted = tf.image.ssim(tf.constant(pair[0]), tf.constant(pair[1]), 2.0).numpy()
    assert np.abs(shifted - ours).max() > 1e-4


def test_ssim_shrinks_its_window_for_small_images_and_refuses_tiny_ones():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, (2, 1, 8, 8, 3)).astype("float32")
    expected = tf.image.ssim((a + 1) / 2, (b + 1) / 2, 1.0, filter_size=8).numpy()
    np.testing.assert_allclose(m.per_image_ssim(a, b), expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least 3x3"):
        m.per_image_ssim(a[:, :2, :2], b[:, :2, :2])


# --------------------------------------------------------------------------- FID and KID


def _fid_reference(a, b):
    """pytorch-fid's formula, with scipy's matrix square root."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    diff = a.mean(0) - b.mean(0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_fid_agrees_with_the_reference_formula():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(40, 12)), rng.normal(0.2, 1.3, (30, 12)) @ rng.normal(size=(12, 12))
    assert m.fid(a, b) == pytest.approx(_fid_reference(a, b), rel=1e-8)
    assert abs(m.fid(a, a)) < 1e-8


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 1.0, (20000, 4))
    b = rng.normal(0.5, 2.0, (20000, 4))
    expected = 4 * 0.5**2 + 4 * (1 + 4 - 2 * 2)  # |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))
    assert m.fid(a, b) == pytest.approx(expected, rel=0.05)


def test_fid_with_singular_covariances_is_finite():
    # 5 images, 20 features: rank-deficient covariances, as 106 facades with 2048 features
    x = np.random.default_rng(6).normal(size=(5, 20))
    assert m.fid(x, x + 0.1) == pytest.approx(20 * 0.1**2, abs=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        m.fid(x[:1], x)


def _mmd2_by_loops(x, y):
    def k(u, v):
        return (u @ v / len(u) + 1) ** 3

    n = len(x)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / n**2
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.3, 1.0, (6, 3))
    mean, std = m.kid(x, y, subsets=5)  # every subset is the whole set
    assert mean == pytest.approx(_mmd2_by_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 200, 16))
    shifted = rng.normal(0.5, 1.0, (200, 16))
    same, _ = m.kid(a, b, subsets=20, subset_size=100)
    different, _ = m.kid(a, shifted, subsets=20, subset_size=100)
    assert different > 0.5
    assert abs(same) < 0.05 * different


def test_kid_of_identical_sets_is_the_small_negative_diagonal_term():
    a = np.random.default_rng(9).normal(size=(50, 16))
    kernel = (a @ a.T / 16 + 1) ** 3
    expected = 2 / (len(a) - 1) * (kernel.mean() - np.diag(kernel).mean())
    assert m.kid(a, a, subsets=2)[0] == pytest.approx(expected)


# --------------------------------------------------------------------------- Inception features


def test_inception_features_of_gray_images_with_random_weights():
    m._inception.cache_clear()
    gray = np.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16, 1).astype("float32")
    features = m.inception_features(None)(gray, batch_size=2)  # two batches
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    m._inception.cache_clear()


def test_missing_weights_file_says_how_to_get_them():
    with pytest.raises(RuntimeError, match="/nonexistent/w.h5") as error:
        m.inception_features("/nonexistent/w.h5")
    assert "~/.keras/models/" in str(error.value) and "--inception-weights" in str(error.value)


def test_offline_download_failure_is_reported(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: no network")

    m._inception.cache_clear()
    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    with pytest.raises(RuntimeError, match="URL fetch failure") as error:
        m.inception_features("imagenet")
    assert m.INCEPTION_WEIGHTS_FILE in str(error.value)
    m._inception.cache_clear()


# --------------------------------------------------------------------------- baselines


def test_every_row_is_scored_as_numpy_says(images, random_features):
    inputs, generated, targets = images
    mean = targets.mean(axis=0) + 0.1
    rows = ev.score(*images, mean=mean, features=random_features)
    assert list(rows) == ["generator", "mean photo", "input as output"]
    for row, predicted in zip(rows, (generated, mean, inputs), strict=True):
        predicted = np.broadcast_to(predicted, targets.shape)
        assert rows[row]["l1"] == pytest.approx(np.abs(predicted - targets).mean(), rel=1e-5)
        mse = ((predicted - targets) ** 2).reshape(6, -1).mean(axis=1)
        assert rows[row]["psnr"] == pytest.approx(np.mean(10 * np.log10(4 / mse)), rel=1e-5)
        assert rows[row]["ssim"] == pytest.approx(m.per_image_ssim(predicted, targets).mean())
        real, fake = random_features(targets), random_features(predicted)
        assert rows[row]["fid"] == pytest.approx(m.fid(real, fake), rel=1e-4, abs=1e-6)
        assert rows[row]["kid"] == pytest.approx(m.kid(real, fake)[0], rel=1e-4, abs=1e-6)
    json.dumps(rows)  # what metrics.json holds


def test_missing_baselines_are_left_out(images):
    inputs, generated, targets = images
    rows = ev.score(inputs[..., :1], generated, targets, metrics=("l1",))
    assert rows == {"generator": {"l1": pytest.approx(np.abs(generated - targets).mean())}}


def test_fcn_scores_generated_mean_and_real_photos(images):
    def fcn(photos):  # a stand-in for segmenter.fcn_score(photos, labels, model)
        return {"per_pixel_acc": float(np.mean(photos > 0)), "class_iou": 0.25}

    inputs, generated, targets = images
    rows = ev.score(*images, metrics=("l1",), mean=np.full(targets.shape[1:], 0.5), fcn=fcn)
    assert list(rows) == ["generator", "mean photo", "input as output", "real photos"]
    assert rows["real photos"]["per_pixel_acc"] == pytest.approx(np.mean(targets > 0))
    assert rows["real photos"]["class_iou"] == 0.25
    assert rows["generator"]["per_pixel_acc"] == pytest.approx(np.mean(generated > 0))
    assert rows["mean photo"]["per_pixel_acc"] == 1.0 and "class_iou" not in rows["input as output"]


def test_fcn_scorer_reads_the_label_maps_and_says_why_it_is_missing(tmp_path, monkeypatch):
    calls = {}

    def load_or_train_segmenter(root, dataset):
        calls["load"] = (root, dataset)
        return "model"

    def load_labelled(root, split, dataset, size):
        if dataset != "facades":
            raise ValueError(f"{dataset!r} has no label side")
        return None, np.ones((3, size, size), bool)

    def fcn_score(photos, labels, model, class_names):
        calls["score"] = (photos, labels, model, class_names)
        return {"per_pixel_acc": 0.5}

    fake = types.SimpleNamespace(
        load_or_train_segmenter=load_or_train_segmenter,
        load_labelled=load_labelled,
        fcn_score=fcn_score,
        class_names=lambda dataset: ("wall", "window"),
    )
    monkeypatch.setitem(sys.modules, "p2p_keras.segmenter", fake)
    monkeypatch.setattr(p2p_keras, "segmenter", fake, raising=False)
    inputs, unavailable = np.ones((2, 4, 4, 3)), {}
    scorer = ev.fcn_scorer(tmp_path / "my_facades", "test", inputs, unavailable)
    assert scorer("photos") == {"per_pixel_acc": 0.5} and unavailable == {}
    assert calls["load"] == (tmp_path / "my_facades", "facades")
    assert calls["score"][0] == "photos" and calls["score"][1].shape == (2, 4, 4)
    assert calls["score"][3] == ("wall", "window")
    assert ev.fcn_scorer(tmp_path / "maps", "test", inputs, unavailable) is None
    assert "no FCN-score for maps: 'maps' has no label side" == unavailable["fcn"]
    assert ev.fcn_scorer(tmp_path / "facades", "val", inputs, unavailable, label_side=False) is None
    assert "label maps" in unavailable["fcn"]


# --------------------------------------------------------------------------- the job


def test_translate_split_refuses_an_empty_dataset(images):
    inputs, _, targets = images
    image = keras.Input((SIZE, SIZE, 3))
    halving = keras.Model(image, keras.layers.Rescaling(0.5)(image))
    batches = [(inputs[i : i + 2], targets[i : i + 2]) for i in (0, 2, 4)]
    x, generated, y = ev.translate_split(halving, batches)
    np.testing.assert_array_equal(x, inputs)
    np.testing.assert_array_equal(y, targets)
    np.testing.assert_allclose(generated, inputs / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        ev.translate_split(halving, [])


@pytest.fixture(scope="module")
def saved_generator(tmp_path_factory):
    """A random 64x64 generator saved as a run saves it (direction in config.json), and data."""
    base = tmp_path_factory.mktemp("evaluate")
    root = make_synthetic_facades(base / "data", train=8, val=4, test=4, size=64)
    keras.utils.set_random_seed(0)
    (base / "run").mkdir()
    build_unet_generator((64, 64, 3), filters=8).save(base / "run" / "g.keras")
    (base / "run" / "config.json").write_text(json.dumps({"direction": "BtoA"}))
    return root, base / "run" / "g.keras"


def test_evaluate_scores_the_generator_beside_its_baselines(saved_generator, tmp_path):
    root, model = saved_generator
    missing = str(tmp_path / "missing.h5")
    result = ev.evaluate(model, root, out=tmp_path / "eval", inception_weights=missing, fcn=False)
    assert (result["dropout"], result["batch_stats"], result["seed"]) == (True, True, 0)
    assert (result["split"], result["direction"], result["n_images"]) == ("val", "BtoA", 4)
    assert list(result["rows"]) == ["generator", "mean photo", "input as output"]
    assert 0 < result["rows"]["generator"]["l1"] < 2 and "kid" not in result["rows"]["generator"]
    assert missing in result["unavailable"]["kid"] and missing in result["unavailable"]["fid"]
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["rows"]["mean photo"] == pytest.approx(result["rows"]["mean photo"])
    assert np.asarray(Image.open(tmp_path / "eval" / "samples.png")).shape == (4 * 64, 3 * 64, 3)
    table = ev.format_table(result)
    for text in ("generator", "mean photo", "input as output", "kid unavailable", "dropout on"):
        assert text in table
    assert f"{result['rows']['mean photo']['psnr']:.4f}" in table


def test_the_mean_photo_is_the_mean_training_target(saved_generator):
    root, _ = saved_generator
    mean = ev.mean_photo(root, direction="BtoA", image_size=64, batch_size=3)
    train = load_paired(root, "train", image_size=64, direction="BtoA", training=False)
    targets = np.concatenate([y for _, y in train])
    assert len(targets) == 8
    np.testing.assert_allclose(mean, targets.mean(axis=0), atol=1e-6)


def test_evaluate_in_the_paper_mode_falls_back_to_test(saved_generator, tmp_path):
    root, model = saved_generator
    only_test = tmp_path / "only_test"
    shutil.copytree(root / "test", only_test / "test")
    result = ev.evaluate(
        str(model), only_test, dropout=True, batch_stats=True, metrics=("l1",), max_images=3
    )
    assert (result["split"], result["n_images"]) == ("test", 3)
    assert (result["dropout"], result["batch_stats"]) == (True, True)
    assert "mean photo" not in result["rows"] and "train" in result["unavailable"]["mean photo"]
    assert "fcn" in result["unavailable"]  # "only_test" names no dataset with labels
    with pytest.raises(ValueError, match="unknown metrics"):
        ev.evaluate(model, only_test, metrics=("lpips",))


def test_evaluate_is_seeded_and_the_command_defaults_to_the_same_mode(saved_generator):
    root, model = saved_generator
    first, again = (ev.evaluate(model, root, metrics=("l1",), fcn=False) for _ in range(2))
    assert first["rows"] == again["rows"]  # identical, not approximately equal
    other = ev.evaluate(model, root, metrics=("l1",), fcn=False, seed=1)
    assert other["rows"]["generator"] != first["rows"]["generator"]  # dropout is on
    defaults = inspect.signature(ev.evaluate).parameters
    args = build_parser().parse_args(["evaluate", "--model", str(model)])
    assert cli._test_time(args) == {k: defaults[k].default for k in ("dropout", "batch_stats")}
    assert args.seed == defaults["seed"].default == 0


def test_evaluate_reads_the_two_folder_layout_as_the_aligned_one(saved_generator, tmp_path):
    root, model = saved_generator
    two_folder = tmp_path / "two_folder"
    for split in ("train", "val"):
        for path in sorted((root / split).glob("*.jpg")):
            pair = np.asarray(Image.open(path))
            for side, half in (("A", pair[:, :64]), ("B", pair[:, 64:])):
                (two_folder / side / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(half).save(two_folder / side / split / f"{path.stem}.png")
            (tmp_path / "aligned" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pair).save(tmp_path / "aligned" / split / f"{path.stem}.png")
    aligned, split_sides = (
        ev.evaluate(model, folder, metrics=("l1", "psnr"), fcn=False)
        for folder in (tmp_path / "aligned", two_folder)
    )
    assert (split_sides["split"], split_sides["n_images"]) == ("val", 4)  # not the test fallback
    assert list(split_sides["rows"]) == ["generator", "mean photo", "input as output"]
    assert split_sides["rows"] == aligned["rows"]


def test_the_per_class_table_lists_each_class_of_each_row():
    row = {"per_pixel_acc": 0.5, "acc/wall": 0.75, "iou/wall": 0.5, "acc/sky": 0.25, "iou/sky": 0}
    result = {"n_images": 2, "data": "d", "split": "test", "direction": "BtoA", "dropout": True}
    result.update(batch_stats=True, unavailable={}, rows={"generator": row, "real photos": row})
    short, table = ev.format_table(result), ev.format_table(result, per_class=True)
    assert "wall" not in short and "per_pixel_acc" in short
    lines = table.splitlines()
    assert lines[-2].split() == ["wall", "0.5000", "0.7500", "0.5000", "0.7500"]
    assert lines[-1].split() == ["sky", "0.0000", "0.2500", "0.0000", "0.2500"]
