"""Metrics against direct computation, graceful loss of KID/FID offline, reports, the command."""

import json
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from p2p_keras import evaluation as ev
from p2p_keras.jobs import train as training
from p2p_keras.generator import build_unet_generator
from p2p_keras.jobs.synthetic import make_synthetic_facades

SIZE = 32


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")
    b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1).astype("float32")
    return a, b


@pytest.fixture(scope="module")
def halving_generator():
    """A deterministic "generator": output = input / 2, so every metric has a numpy answer."""
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, keras.layers.Rescaling(0.5)(inputs))


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(1)
    return [
        (
            rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32"),
            rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32"),
        )
        for _ in range(3)
    ]


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
    np.testing.assert_allclose(ev.per_image_l1(a, b), expected, rtol=1e-6)


def test_psnr_follows_the_mse_formula_on_the_two_unit_range(pair):
    a, b = pair
    mse = ((a - b) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(ev.per_image_psnr(a, b), 10 * np.log10(2.0**2 / mse), rtol=1e-5)
    # the same as [0, 1] images with a peak of 1
    unit = 10 * np.log10(1.0 / (((a - b) / 2) ** 2).reshape(3, -1).mean(axis=1))
    np.testing.assert_allclose(ev.per_image_psnr(a, b), unit, rtol=1e-5)


def test_ssim_of_identical_images_is_one(pair):
    np.testing.assert_allclose(ev.per_image_ssim(pair[0], pair[0]), 1.0, atol=1e-6)


def test_ssim_is_the_usual_one_on_uint8_images(pair):
    a, b = (np.round((x + 1) * 127.5) for x in pair)
    expected = tf.image.ssim(tf.constant(a, tf.float32), tf.constant(b, tf.float32), 255.0)
    ours = ev.per_image_ssim(a / 127.5 - 1, b / 127.5 - 1)
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)
    assert 0.2 < ours.mean() < 0.99
    # the pitfall the [0, 1] mapping avoids: SSIM on [-1, 1] with max_val=2 differs
    shifted = tf.image.ssim(tf.constant(pair[0]), tf.constant(pair[1]), 2.0).numpy()
    assert np.abs(shifted - ours).max() > 1e-4


def test_ssim_shrinks_its_window_for_small_images_and_refuses_tiny_ones():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, (2, 1, 8, 8, 3)).astype("float32")
    expected = tf.image.ssim((a + 1) / 2, (b + 1) / 2, 1.0, filter_size=8).numpy()
    np.testing.assert_allclose(ev.per_image_ssim(a, b), expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least 3x3"):
        ev.per_image_ssim(a[:, :2, :2], b[:, :2, :2])


# --------------------------------------------------------------------------- FID and KID


def test_frechet_distance_of_identical_sets_is_zero():
    features = np.random.default_rng(4).normal(size=(300, 8))
    assert abs(ev.fid_from_features(features, features)) < 1e-6


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    value = ev.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 1.0, (20000, 4))
    b = rng.normal(0.5, 2.0, (20000, 4))
    expected = 4 * 0.5**2 + 4 * (1 + 4 - 2 * 2)
    assert ev.fid_from_features(a, b) == pytest.approx(expected, rel=0.05)


def test_fid_with_singular_covariances_is_finite():
    # 5 images, 20 features: rank-deficient covariances, as 106 facades with 2048 features
    x = np.random.default_rng(6).normal(size=(5, 20))
    assert ev.fid_from_features(x, x + 0.1) == pytest.approx(20 * 0.1**2, abs=1e-4)


def test_fid_eigh_method_agrees_with_sqrtm():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(40, 12)), rng.normal(0.2, 1.3, (30, 12)) @ rng.normal(size=(12, 12))
    reference = ev.fid_from_features(a, b)
    assert ev.fid_from_features(a, b, method="eigh") == pytest.approx(reference, rel=1e-8)
    singular = ev.fid_from_features(a[:5], b[:5], method="eigh")
    assert singular == pytest.approx(ev.fid_from_features(a[:5], b[:5]), rel=1e-4)
    with pytest.raises(ValueError, match="method"):
        ev.fid_from_features(a, b, method="svd")


def _mmd2_by_loops(x, y):
    def k(u, v):
        return (u @ v / len(u) + 1) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.3, 1.0, (6, 3))
    mean, std = ev.kernel_inception_distance(x, y, subsets=5)  # every subset is the whole set
    assert mean == pytest.approx(_mmd2_by_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 200, 16))
    shifted = rng.normal(0.5, 1.0, (200, 16))
    same, _ = ev.kernel_inception_distance(a, b, subsets=20, subset_size=100)
    different, _ = ev.kernel_inception_distance(a, shifted, subsets=20, subset_size=100)
    assert different > 0.5
    assert abs(same) < 0.05 * different


def test_kid_of_identical_sets_is_the_small_negative_diagonal_term():
    a = np.random.default_rng(9).normal(size=(50, 16))
    kernel = ev.polynomial_kernel(a, a)
    expected = 2 / (len(a) - 1) * (kernel.mean() - np.diag(kernel).mean())
    assert ev.kernel_inception_distance(a, a, subsets=2)[0] == pytest.approx(expected)


def test_inception_input_is_rgb_299_in_minus_one_one():
    gray = np.linspace(-1, 1, 2 * 16 * 16).reshape(2, 16, 16, 1).astype("float32")
    x = ev.to_inception_input(gray).numpy()
    assert x.shape == (2, 299, 299, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.max() - x.min() > 1.5
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


# --------------------------------------------------------------------------- evaluate


def test_evaluate_matches_numpy_and_returns_every_key(halving_generator, dataset, random_features):
    result = ev.evaluate(halving_generator, dataset, feature_extractor=random_features)
    fast = ev.evaluate(
        halving_generator, dataset, feature_extractor=random_features, fid_method="eigh"
    )
    assert fast["fid"] == pytest.approx(result["fid"], rel=1e-6)
    inputs = np.concatenate([x for x, _ in dataset])
    targets = np.concatenate([y for _, y in dataset])
    generated = inputs / 2
    assert result["n_images"] == 6
    assert result["l1"] == pytest.approx(np.abs(generated - targets).mean(), rel=1e-5)
    mse = ((generated - targets) ** 2).reshape(6, -1).mean(axis=1)
    assert result["psnr"] == pytest.approx(np.mean(10 * np.log10(4 / mse)), rel=1e-5)
    assert result["ssim"] == pytest.approx(ev.per_image_ssim(generated, targets).mean())
    real, fake = random_features(targets), random_features(generated)
    assert result["fid"] == pytest.approx(ev.fid_from_features(real, fake), rel=1e-4)
    assert result["kid"] == pytest.approx(ev.kernel_inception_distance(real, fake)[0], rel=1e-4)
    expected = {"l1", "psnr", "ssim", "kid", "kid_std", "fid", "n_images", "dropout"}
    assert expected | {"batch_stats", "mode", "features", "unavailable"} <= set(result)
    assert result["unavailable"] == {}
    assert (result["dropout"], result["batch_stats"]) == (False, False)
    json.dumps(result)  # what metrics.json will hold


def test_evaluate_max_images_and_metric_selection(halving_generator, dataset):
    result = ev.evaluate(halving_generator, dataset, metrics=("l1",), max_images=3)
    assert result["n_images"] == 3
    expected = np.abs(dataset[0][0] / 2 - dataset[0][1]).mean(axis=(1, 2, 3)).tolist()
    expected.append(np.abs(dataset[1][0][0] / 2 - dataset[1][1][0]).mean())
    assert result["l1"] == pytest.approx(np.mean(expected), rel=1e-5)
    assert "psnr" not in result and "kid" not in result
    with pytest.raises(ValueError, match="unknown metrics"):
        ev.evaluate(halving_generator, dataset, metrics=("lpips",))


def test_missing_inception_weights_file_gives_the_other_metrics(halving_generator, dataset):
    result = ev.evaluate(halving_generator, dataset, inception_weights="/nonexistent/w.h5")
    assert result["kid"] is None and result["fid"] is None
    assert set(result["unavailable"]) == {"kid", "fid"}
    assert "/nonexistent/w.h5" in result["unavailable"]["kid"]
    assert "~/.keras/models/" in result["unavailable"]["fid"]
    assert result["l1"] > 0 and result["psnr"] > 0 and result["ssim"] is not None


def test_offline_download_failure_is_reported(halving_generator, dataset, monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: no network")

    ev._inception.cache_clear()
    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    result = ev.evaluate(halving_generator, dataset, metrics=("psnr", "kid"))
    assert result["kid"] is None and "URL fetch failure" in result["unavailable"]["kid"]
    assert ev.INCEPTION_WEIGHTS_FILE in result["unavailable"]["kid"]
    assert result["psnr"] > 0
    ev._inception.cache_clear()


def test_inception_features_end_to_end_with_random_weights(halving_generator, dataset):
    ev._inception.cache_clear()
    result = ev.evaluate(
        halving_generator, dataset[:1], metrics=("kid",), inception_weights=None
    )  # no FID here: a 2048x2048 matrix root takes tens of seconds on a small CPU
    assert isinstance(result["kid"], float)
    assert result["features"] == "InceptionV3 pool features (weights=None)"
    assert ev._inception(None).output_shape == (None, 2048)
    ev._inception.cache_clear()


def test_evaluate_records_the_paper_test_time_mode(dataset):
    keras.utils.set_random_seed(0)
    generator = build_unet_generator((SIZE, SIZE, 3), filters=8, max_filters=32)
    paper = ev.evaluate(generator, dataset, metrics=("l1",), dropout=True, batch_stats=True)
    keras_mode = ev.evaluate(generator, dataset, metrics=("l1",))
    assert (paper["dropout"], paper["batch_stats"]) == (True, True)
    assert "dropout on" in paper["mode"] and "test batch's statistics" in paper["mode"]
    assert "dropout off" in keras_mode["mode"] and "moving averages" in keras_mode["mode"]
    assert paper["l1"] != keras_mode["l1"]


def test_evaluate_rejects_an_empty_dataset(halving_generator):
    with pytest.raises(ValueError, match="no images"):
        ev.evaluate(halving_generator, [], metrics=("l1",))


# --------------------------------------------------------------------------- failure cases, report


def test_rank_by_error_puts_the_worst_first(halving_generator, dataset):
    cases = ev.rank_by_error(halving_generator, dataset)
    errors = [case["l1"] for case in cases]
    assert len(cases) == 6 and errors == sorted(errors, reverse=True)
    worst = cases[0]
    x, y = np.concatenate([b[0] for b in dataset]), np.concatenate([b[1] for b in dataset])
    assert worst["l1"] == pytest.approx(np.abs(x[worst["index"]] / 2 - y[worst["index"]]).mean())
    assert worst["output"].dtype == np.uint8 and worst["output"].shape == (SIZE, SIZE, 3)
    psnr = [case["psnr"] for case in ev.rank_by_error(halving_generator, dataset, metric="psnr")]
    assert psnr == sorted(psnr)


def _row_errors(page):
    return [float(value) for value in re.findall(r"<td>L1 ([0-9.]+)<br>", page)]


def test_write_report_has_one_row_per_image_and_states_the_mode(
    halving_generator, dataset, tmp_path
):
    metrics = ev.evaluate(halving_generator, dataset, metrics=("l1", "kid"), inception_weights="x")
    index = ev.write_report(
        halving_generator, dataset, tmp_path / "report", batch_stats=True, metrics=metrics
    )
    page = index.read_text()
    assert page.count("<tr class='case'>") == 6
    assert len(list((tmp_path / "report" / "images").glob("*.png"))) == 18
    for kind in ("input", "output", "target"):
        assert f"images/0006_{kind}.png" in page
        assert (tmp_path / "report" / "images" / f"0001_{kind}.png").is_file()
    assert "Test-time mode: dropout off; batch normalisation with the test batch" in page
    assert f"{metrics['l1']:.4g}" in page and "unavailable" in page
    errors = _row_errors(page)
    assert errors != sorted(errors, reverse=True)  # dataset order by default


def test_write_report_sorted_by_error(halving_generator, dataset, tmp_path):
    page = ev.write_report(
        halving_generator, dataset, tmp_path, sort_by_error=True, max_images=5
    ).read_text()
    errors = _row_errors(page)
    assert len(errors) == 5 and errors == sorted(errors, reverse=True)
    assert "worst L1 first" in page and "dropout off" in page


# --------------------------------------------------------------------------- command


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A freshly trained model with 8-filter networks on a tiny synthetic facades set (64x64).

    No direction is given: the synthetic facades folder resolves to "BtoA" by itself, and
    `evaluate_command` must read it back from the run's ``config.json``."""
    base = tmp_path_factory.mktemp("evaluate_command")
    root = make_synthetic_facades(base / "data", train=8, val=4, test=4, size=64)
    training.train(
        str(root),
        base / "run",
        epochs=1,
        steps_per_epoch=3,
        image_size=64,
        filters=8,
        seed=0,
        samples=2,
        verbose=0,
    )
    return root, base / "run" / "generator.keras"


def test_evaluate_command_end_to_end(trained_run, tmp_path):
    root, model = trained_run
    result = ev.evaluate_command(
        model,
        str(root),
        out=tmp_path / "eval",
        metrics=("l1", "psnr", "ssim", "kid", "fid"),
        inception_weights=str(tmp_path / "missing.h5"),
    )
    assert (result["split"], result["direction"], result["image_size"]) == ("val", "BtoA", 64)
    assert result["n_images"] == 4 and 0 < result["l1"] < 2 and result["kid"] is None
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["l1"] == pytest.approx(result["l1"]) and "kid" in saved["unavailable"]
    page = (tmp_path / "eval" / "index.html").read_text()
    assert page.count("<tr class='case'>") == 4 and "dropout off" in page
    assert result["report"] == str(tmp_path / "eval" / "index.html")


def test_evaluate_command_paper_mode_and_test_fallback(trained_run, tmp_path):
    root, model = trained_run
    only_test = tmp_path / "only_test"
    shutil.copytree(root / "test", only_test / "test")
    result = ev.evaluate_command(
        model, str(only_test), dropout=True, batch_stats=True, metrics=("l1",)
    )
    assert result["split"] == "test" and result["n_images"] == 4
    assert (result["dropout"], result["batch_stats"]) == (True, True)
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(FileNotFoundError):
        ev.evaluate_command(model, str(only_test), split="train", metrics=("l1",))
