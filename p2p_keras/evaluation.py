"""Measuring a generator: L1, PSNR, SSIM, KID and FID, an HTML report, failure cases.

The paper scores its Cityscapes results with an FCN ("FCN-score") and AMT studies; neither fits
a course on facades. Here a generator is scored against the target photos with per-pixel
metrics (L1, PSNR, SSIM) and with distribution metrics on InceptionV3 features (KID and FID).

Per-pixel metrics reward the blurry mean, which is exactly what the adversarial loss is there
to avoid, so read them together with KID/FID and with the pictures. FID is strongly biased on
small test sets (the facades test split has 106 images); KID is unbiased and preferred there.

The test-time mode matters (see `p2p_keras.inference.generate`): the paper keeps dropout on and
normalises with the test batch's statistics. Every result records the mode it was measured in.
"""

import functools
import html
import json
import pathlib
import warnings

import keras
import numpy as np
import tensorflow as tf
from scipy import linalg

from p2p_keras.data import denormalize
from p2p_keras.inference import atomic_path, generate, load_generator, write_png_atomic

METRICS = ("l1", "psnr", "ssim", "kid", "fid")
FEATURE_METRICS = ("kid", "fid")
PIXEL_METRICS = ("l1", "psnr", "ssim")
INCEPTION_SIZE = 299
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
SSIM_FILTER_SIZE = 11


# --------------------------------------------------------------------------- per-image metrics


def per_image_l1(generated, targets):
    """Mean absolute error of each image, on the [-1, 1] scale.

    Args:
        generated: (N, H, W, C) images in [-1, 1].
        targets: (N, H, W, C) images in [-1, 1].

    Returns:
        A float64 array of shape (N,).

    Example:
    >>> per_image_l1(np.zeros((2, 4, 4, 3)), np.full((2, 4, 4, 3), 0.5))
    array([0.5, 0.5])
    """
    generated, targets = _as_float_pair(generated, targets)
    return np.abs(generated - targets).reshape(len(generated), -1).mean(axis=1, dtype=np.float64)


def per_image_psnr(generated, targets):
    """Peak signal-to-noise ratio of each image, in dB, with `tf.image.psnr`.

    The peak is the range of [-1, 1], ``max_val=2.0``, which gives the same values as images
    in [0, 1] with ``max_val=1`` (or uint8 with 255). Identical images give ``inf``.

    Args:
        generated: (N, H, W, C) images in [-1, 1].
        targets: (N, H, W, C) images in [-1, 1].

    Returns:
        A float64 array of shape (N,).
    """
    generated, targets = _as_float_pair(generated, targets)
    return tf.image.psnr(generated, targets, max_val=2.0).numpy().astype(np.float64)


def ssim_filter_size(height, width):
    """The SSIM window: the usual 11 pixels, or the image's short side when that is smaller.

    Raises:
        ValueError: for images smaller than 3x3, where SSIM's local statistics are meaningless.
    """
    size = min(SSIM_FILTER_SIZE, height, width)
    if size < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return size


def per_image_ssim(generated, targets):
    """Structural similarity of each image, with `tf.image.ssim` (Gaussian window 11, sigma 1.5).

    Computed on images mapped to [0, 1] with ``max_val=1``, the usual convention (the same as
    uint8 with 255). SSIM's luminance term is not shift-invariant, so running it directly on
    [-1, 1] with ``max_val=2`` would give different values. Images smaller than 11 pixels use a
    window of their short side (see `ssim_filter_size`).

    Args:
        generated: (N, H, W, C) images in [-1, 1].
        targets: (N, H, W, C) images in [-1, 1].

    Returns:
        A float64 array of shape (N,); identical images score 1.
    """
    generated, targets = _as_float_pair(generated, targets)
    size = ssim_filter_size(*generated.shape[1:3])
    values = tf.image.ssim(
        (generated + 1.0) / 2.0, (targets + 1.0) / 2.0, max_val=1.0, filter_size=size
    )
    return values.numpy().astype(np.float64)


PER_IMAGE = {"l1": per_image_l1, "psnr": per_image_psnr, "ssim": per_image_ssim}


def _as_float_pair(generated, targets):
    generated = np.asarray(generated, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    if generated.shape != targets.shape or generated.ndim != 4:
        raise ValueError(
            f"expected two (N, H, W, C) batches of one shape, got {generated.shape} and "
            f"{targets.shape}"
        )
    return generated, targets


# --------------------------------------------------------------------------- FID and KID


FID_METHODS = ("sqrtm", "eigh")


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6, *, method="sqrtm"):
    """Fréchet distance between two Gaussians: the FID when they model Inception features.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``. With
    ``method="sqrtm"`` it is computed as in the reference implementations (TTUR,
    pytorch-fid): `scipy.linalg.sqrtm` of the product; when that is not finite or has a large
    imaginary part (singular covariances: fewer images than feature dimensions, as with 106
    facades and 2048 Inception features), ``eps`` is added to both diagonals and the root taken
    again; the remaining tiny imaginary part is numerical noise and dropped. ``method="eigh"``
    gives the same trace from the eigenvalues of the symmetric ``sigma1^(1/2) sigma2
    sigma1^(1/2)`` (similar to ``sigma1 sigma2``), about 3-4 times faster at 2048 dimensions
    (tens of seconds for `sqrtm` on a small CPU).

    Args:
        mu1: mean feature vector (D,) of the first set.
        sigma1: covariance (D, D) of the first set.
        mu2: mean (D,) of the second set.
        sigma2: covariance (D, D) of the second set.
        eps: diagonal offset used for singular products ("sqrtm").
        method: "sqrtm" (the reference) or "eigh".

    Returns:
        A float, >= 0 up to rounding.

    Example:
    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    2.0
    """
    if method not in FID_METHODS:
        raise ValueError(f"method must be one of {FID_METHODS}, got {method!r}")
    mu1, mu2 = np.atleast_1d(np.float64(mu1)), np.atleast_1d(np.float64(mu2))
    sigma1, sigma2 = np.atleast_2d(np.float64(sigma1)), np.atleast_2d(np.float64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two Gaussians must have the same dimension")
    if method == "eigh":
        trace_covmean = _trace_sqrt_product(sigma1, sigma2)
    else:
        covmean = _sqrtm_or_none(sigma1 @ sigma2)
        if covmean is None:
            offset = np.eye(len(sigma1)) * eps
            covmean = _sqrtm_or_none((sigma1 + offset) @ (sigma2 + offset), imaginary_atol=np.inf)
        trace_covmean = np.trace(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


def _trace_sqrt_product(sigma1, sigma2):
    """Tr((sigma1 sigma2)^(1/2)) from symmetric eigendecompositions (PSD inputs)."""
    values, vectors = linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    eigenvalues = linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def _sqrtm_or_none(matrix, imaginary_atol=1e-3):
    """The real part of sqrtm(matrix), or None when the root is unusable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular: handled by the caller
        root = linalg.sqrtm(matrix)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=imaginary_atol):
            return None
        root = root.real
    return root


def fid_from_features(a, b, *, method="sqrtm"):
    """Fréchet Inception Distance between two feature sets.

    Beware: FID is strongly biased upwards on small sets; its expected value falls as the
    number of images grows, so two FIDs are comparable only at the same number of images, and
    on ~100 images (facades test: 106) the bias can exceed the differences between models.
    Prefer `kernel_inception_distance` there.

    Args:
        a: (N, D) features, e.g. of the target photos.
        b: (M, D) features, e.g. of the generated images.
        method: see `frechet_distance`.

    Returns:
        A float.
    """
    a, b = _features(a, "a"), _features(b, "b")
    return frechet_distance(
        a.mean(axis=0),
        np.cov(a, rowvar=False),
        b.mean(axis=0),
        np.cov(b, rowvar=False),
        method=method,
    )


def polynomial_kernel(x, y):
    """The KID kernel ``k(x, y) = (x . y / d + 1) ** 3`` for (N, D) and (M, D) features."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y):
    """Unbiased estimate of the squared MMD between two equal-sized samples, polynomial kernel.

    The within-set sums leave out the diagonal (k(x, x) terms), which is what removes the bias;
    the estimate can therefore be slightly negative when the distributions match.

    Args:
        x: (m, D) features.
        y: (m, D) features.

    Returns:
        A float.
    """
    m = len(x)
    if len(y) != m or m < 2:
        raise ValueError("the unbiased MMD needs two samples of the same size, at least 2")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kernel_inception_distance(a, b, *, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance (Bińkowski et al., 2018): the unbiased MMD² of feature sets.

    As in the reference implementation, `subsets` random subsets of ``m = min(len(a),
    len(b), subset_size)`` features are drawn without replacement from each set and the
    unbiased MMD² (polynomial kernel ``(x . y / d + 1) ** 3``) averaged over them. Unlike FID
    it is unbiased, so it is the metric to trust on ~100 images (facades test: 106). When both
    sets have at most `subset_size` features every subset is the whole set and the std is 0.
    Two samples of one distribution score about 0 (slightly negative values are normal); the
    very same set twice scores ``2 / (m - 1) * (mean(K) - mean(diag K)) < 0``, a term of order
    1/m.

    Args:
        a: (N, D) features, e.g. of the target photos.
        b: (M, D) features, e.g. of the generated images.
        subsets: number of subsets.
        subset_size: features per subset (the reference's 1000).
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over the subsets.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> kid, _ = kernel_inception_distance(rng.normal(size=(200, 8)), rng.normal(2, 1, (200, 8)))
    >>> kid > 0
    True
    """
    a, b = _features(a, "a"), _features(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    m = min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _features(features, name):
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"{name}: expected (N, D) features with N >= 2, got {features.shape}")
    return features


# --------------------------------------------------------------------------- Inception features


@functools.lru_cache(maxsize=2)
def _inception(weights):
    return keras.applications.InceptionV3(
        include_top=False,
        pooling="avg",
        weights=weights,
        input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
    )


def to_inception_input(images):
    """Maps images in [-1, 1] to InceptionV3's input: 3 channels, 299x299, `preprocess_input`.

    Images go to [0, 255], are resized (bilinear) to 299x299 and then mapped with
    `keras.applications.inception_v3.preprocess_input`; gray images are repeated to RGB.
    """
    images = tf.clip_by_value(tf.convert_to_tensor(images, tf.float32), -1.0, 1.0)
    if images.shape[-1] == 1:
        images = tf.repeat(images, 3, axis=-1)
    pixels = (images + 1.0) * 127.5
    pixels = tf.image.resize(pixels, (INCEPTION_SIZE, INCEPTION_SIZE), "bilinear")
    return keras.applications.inception_v3.preprocess_input(pixels)


def inception_feature_extractor(weights="imagenet"):
    """A callable mapping images in [-1, 1] to InceptionV3's 2048 pool features.

    The network is built once per `weights` and kept for later calls.

    Args:
        weights: "imagenet" (downloaded once into ``~/.keras/models/``), the path of a local
            no-top weights file (``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``),
            or None for random weights (only to test the plumbing).

    Returns:
        A function ``images -> (N, 2048) numpy array``.

    Raises:
        Exception: whatever Keras raises when the weights cannot be had (offline download,
            missing file).
    """
    model = _inception(weights)

    def extract(images):
        return np.asarray(model.predict_on_batch(to_inception_input(images)))

    return extract


def weights_unavailable_reason(weights, error):
    """Says why Inception features are missing and how to get them."""
    return (
        f"InceptionV3 weights {weights!r} could not be loaded ({type(error).__name__}: {error}). "
        f"KID and FID need the ImageNet no-top InceptionV3 weights: pass inception_weights="
        f"'/path/to/{INCEPTION_WEIGHTS_FILE}' (a local copy), or put that file in "
        f"~/.keras/models/ (or $KERAS_HOME/models/) once, from a machine with internet."
    )


# --------------------------------------------------------------------------- evaluation


def translate_batches(generator, dataset, *, dropout=False, batch_stats=False, max_images=None):
    """Runs the generator over a dataset and yields ``(inputs, generated, targets)`` batches.

    Args:
        generator: a generator `keras.Model`.
        dataset: an iterable of ``(input, target)`` batches in [-1, 1], e.g. from
            `p2p_keras.data.load_paired(..., training=False)`.
        dropout: see `p2p_keras.inference.generate`.
        batch_stats: see `p2p_keras.inference.generate`. With True the results depend on the
            batch size; the paper uses batches of 1 (instance normalisation).
        max_images: stop after this many images (None: the whole dataset).

    Yields:
        Tuples of three float32 numpy arrays (n, H, W, C) in [-1, 1].
    """
    if max_images is not None and max_images < 1:
        return
    seen = 0
    for inputs, targets in dataset:
        inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
        if max_images is not None:
            inputs, targets = inputs[: max_images - seen], targets[: max_images - seen]
        generated = generate(generator, inputs, dropout=dropout, batch_stats=batch_stats)
        seen += len(inputs)
        yield inputs, np.asarray(generated, np.float32), targets
        if max_images is not None and seen >= max_images:
            return


def describe_mode(dropout, batch_stats):
    """One line naming the test-time mode, e.g. for a report's header."""
    dropout_text = "dropout on (the paper's noise)" if dropout else "dropout off"
    stats_text = (
        "batch normalisation with the test batch's statistics (the paper's protocol)"
        if batch_stats
        else "batch normalisation with the moving averages (Keras inference)"
    )
    return f"{dropout_text}; {stats_text}"


def evaluate(
    generator,
    dataset,
    *,
    metrics=METRICS,
    dropout=False,
    batch_stats=False,
    feature_extractor=None,
    inception_weights="imagenet",
    max_images=None,
    kid_subsets=100,
    kid_subset_size=1000,
    fid_method="sqrtm",
    on_batch=None,
):
    """Scores a generator on ``(input, target)`` batches.

    L1 (mean absolute error on [-1, 1]), PSNR (dB) and SSIM are computed per image and
    averaged. KID and FID compare InceptionV3 pool features of the generated images with those
    of the targets. FID is strongly biased on ~100 images (facades test = 106): compare FIDs
    only at equal image counts, and prefer KID, which is unbiased. When the Inception weights
    cannot be had (offline, missing file) KID and FID are None and ``result["unavailable"]``
    says why and how to fix it; the other metrics are still returned.

    Args:
        generator: a generator `keras.Model`.
        dataset: iterable of ``(input, target)`` batches in [-1, 1].
        metrics: any of "l1", "psnr", "ssim", "kid", "fid".
        dropout: keep dropout on (see `p2p_keras.inference.generate`).
        batch_stats: normalise with the batch's statistics (the paper's protocol).
        feature_extractor: a callable from images in [-1, 1] to (N, D) features, used instead
            of InceptionV3 (tests, other feature spaces).
        inception_weights: "imagenet", a local weights file path, or None (random weights).
        max_images: evaluate at most this many images.
        kid_subsets: see `kernel_inception_distance`.
        kid_subset_size: see `kernel_inception_distance`.
        fid_method: "sqrtm" (the reference) or "eigh" (same value, faster); see
            `frechet_distance`.
        on_batch: called with every ``(inputs, generated, targets)`` batch (numpy, [-1, 1]),
            e.g. a `ReportWriter` to save exactly the images that were scored.

    Returns:
        A dict with the requested metrics (floats, or None when unavailable), "kid_std" with
        "kid", "n_images", "dropout", "batch_stats", "mode" (in words), "features" (what KID
        and FID were computed on) and "unavailable" (metric -> reason; empty when complete).

    Raises:
        ValueError: for an unknown metric or an empty dataset.

    Example:
    >>> val_ds = load_paired("data/facades", "val", direction="BtoA", training=False)
    >>> evaluate(generator, val_ds, dropout=True, batch_stats=True)["kid"]
    """
    metrics = _check_metrics(metrics)
    result = {
        "n_images": 0,
        "dropout": bool(dropout),
        "batch_stats": bool(batch_stats),
        "mode": describe_mode(dropout, batch_stats),
        "unavailable": {},
    }
    wanted_features = [name for name in metrics if name in FEATURE_METRICS]
    extractor, result["features"] = None, None
    if wanted_features:
        extractor, result["features"], reason = _get_extractor(feature_extractor, inception_weights)
        if extractor is None:
            result["unavailable"].update(dict.fromkeys(wanted_features, reason))

    per_image = {name: [] for name in metrics if name in PIXEL_METRICS}
    real_features, fake_features = [], []
    for inputs, generated, targets in translate_batches(
        generator, dataset, dropout=dropout, batch_stats=batch_stats, max_images=max_images
    ):
        result["n_images"] += len(generated)
        if on_batch is not None:
            on_batch(inputs, generated, targets)
        for name, values in per_image.items():
            values.append(PER_IMAGE[name](generated, targets))
        if extractor is not None:
            real_features.append(np.asarray(extractor(targets)))
            fake_features.append(np.asarray(extractor(generated)))
    if result["n_images"] == 0:
        raise ValueError("the dataset yielded no images to evaluate")

    for name, values in per_image.items():
        result[name] = float(np.mean(np.concatenate(values)))
    if extractor is not None:
        real, fake = np.concatenate(real_features), np.concatenate(fake_features)
        result.update(
            _feature_metrics(
                real,
                fake,
                wanted_features,
                result["unavailable"],
                (kid_subsets, kid_subset_size),
                fid_method,
            )
        )
    for name in wanted_features:
        result.setdefault(name, None)
    if "kid" in wanted_features:
        result.setdefault("kid_std", None)
    return result


def _check_metrics(metrics):
    metrics = tuple(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
    return metrics


def _get_extractor(feature_extractor, inception_weights):
    """``(extractor, description, reason)``; the extractor is None when unavailable."""
    if feature_extractor is not None:
        description = getattr(feature_extractor, "name", None) or "custom feature extractor"
        return feature_extractor, description, None
    try:
        extractor = inception_feature_extractor(inception_weights)
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception on a failed download
        return None, None, weights_unavailable_reason(inception_weights, error)
    return extractor, f"InceptionV3 pool features (weights={inception_weights!r})", None


def _feature_metrics(real, fake, names, unavailable, kid_options, fid_method):
    if len(real) < 2:
        unavailable.update(dict.fromkeys(names, "KID and FID need at least 2 images"))
        return {}
    values = {}
    if "kid" in names:
        subsets, subset_size = kid_options
        values["kid"], values["kid_std"] = kernel_inception_distance(
            real, fake, subsets=subsets, subset_size=subset_size
        )
    if "fid" in names:
        values["fid"] = fid_from_features(real, fake, method=fid_method)
    return values


# --------------------------------------------------------------------------- failure cases


def rank_by_error(
    generator, dataset, *, metric="l1", dropout=False, batch_stats=False, max_images=None
):
    """Every image with its errors, worst first: the failure cases.

    Args:
        generator: a generator `keras.Model`.
        dataset: iterable of ``(input, target)`` batches in [-1, 1].
        metric: what "worst" means: "l1" (highest first), "psnr" or "ssim" (lowest first).
        dropout: see `p2p_keras.inference.generate`.
        batch_stats: see `p2p_keras.inference.generate`.
        max_images: look at most at this many images.

    Returns:
        A list of dicts, one per image, sorted worst first, each with "index" (position in the
        dataset, from 0), "l1", "psnr", "ssim" and the uint8 arrays "input", "output",
        "target".

    Example:
    >>> worst = rank_by_error(generator, test_ds, dropout=True, batch_stats=True)[:4]
    >>> [(case["index"], round(case["l1"], 3)) for case in worst]
    >>> row = np.concatenate([worst[0][k] for k in ("input", "output", "target")], axis=1)
    >>> plt.imshow(row)
    """
    if metric not in PIXEL_METRICS:
        raise ValueError(f"metric must be one of {PIXEL_METRICS}, got {metric!r}")
    cases = []
    for inputs, generated, targets in translate_batches(
        generator, dataset, dropout=dropout, batch_stats=batch_stats, max_images=max_images
    ):
        errors = {name: PER_IMAGE[name](generated, targets) for name in PIXEL_METRICS}
        for i in range(len(inputs)):
            cases.append(
                {
                    "index": len(cases),
                    **{name: float(values[i]) for name, values in errors.items()},
                    "input": denormalize(inputs[i]),
                    "output": denormalize(generated[i]),
                    "target": denormalize(targets[i]),
                }
            )
    return sorted(cases, key=lambda case: case[metric], reverse=metric == "l1")


# --------------------------------------------------------------------------- HTML report


class ReportWriter:
    """Writes a report's images batch by batch, then its ``index.html``; see `write_report`.

    Pass an instance as ``evaluate(..., on_batch=writer)`` to score and illustrate in one pass
    (with dropout on, a second pass would show other images than the ones scored), then call
    `write_index`.

    Args:
        out_dir: report folder (created).
        dropout: the test-time mode, stated on the page.
        batch_stats: the test-time mode, stated on the page.
    """

    def __init__(self, out_dir, *, dropout=False, batch_stats=False):
        self.out_dir = pathlib.Path(out_dir)
        self.mode = describe_mode(dropout, batch_stats)
        self.cases = []

    def __call__(self, inputs, generated, targets):
        errors = {name: PER_IMAGE[name](generated, targets) for name in PIXEL_METRICS}
        for i, images in enumerate(zip(inputs, generated, targets, strict=True)):
            index = len(self.cases)
            for kind, image in zip(("input", "output", "target"), images, strict=True):
                write_png_atomic(
                    denormalize(image), self.out_dir / "images" / _image_name(index, kind)
                )
            self.cases.append({"index": index, **{k: float(v[i]) for k, v in errors.items()}})

    def write_index(self, metrics=None, *, sort_by_error=False, title="pix2pix evaluation"):
        """Writes ``index.html`` for the images seen so far and returns its path."""
        cases = sorted(self.cases, key=lambda case: -case["l1"] if sort_by_error else case["index"])
        page = _report_html(cases, title, self.mode, metrics, sort_by_error)
        index = self.out_dir / "index.html"
        with atomic_path(index) as temporary:
            temporary.write_text(page, encoding="utf-8")
        return index


def write_report(
    generator,
    dataset,
    out_dir,
    *,
    dropout=False,
    batch_stats=False,
    metrics=None,
    max_images=None,
    sort_by_error=False,
    title="pix2pix evaluation",
):
    """Writes an HTML page of every result, like the official ``test.py``'s ``index.html``.

    Writes ``out_dir/images/NNNN_{input,output,target}.png`` (NNNN counts from 0001 in dataset
    order) and ``out_dir/index.html``: the test-time mode and the metrics at the top, then one
    row per image: input | output | target with the image's L1, PSNR and SSIM. Files are
    written atomically. To report exactly the images that were scored, use `ReportWriter` as
    `evaluate`'s ``on_batch`` instead (as `evaluate_command` does).

    Args:
        generator: a generator `keras.Model`.
        dataset: iterable of ``(input, target)`` batches in [-1, 1].
        out_dir: report folder (created).
        dropout: see `p2p_keras.inference.generate`.
        batch_stats: see `p2p_keras.inference.generate`.
        metrics: a result of `evaluate` to show at the top, or None.
        max_images: report at most this many images.
        sort_by_error: order the rows worst L1 first (failure cases first).
        title: page title.

    Returns:
        The path of ``index.html``.

    Example:
    >>> write_report(generator, test_ds, "runs/facades/report", dropout=True, batch_stats=True)
    PosixPath('runs/facades/report/index.html')
    """
    writer = ReportWriter(out_dir, dropout=dropout, batch_stats=batch_stats)
    for batch in translate_batches(
        generator, dataset, dropout=dropout, batch_stats=batch_stats, max_images=max_images
    ):
        writer(*batch)
    return writer.write_index(metrics, sort_by_error=sort_by_error, title=title)


def _image_name(index, kind):
    return f"{index + 1:04d}_{kind}.png"


def _format_value(value):
    if value is None:
        return "unavailable"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_html(metrics):
    if not metrics:
        return ""
    rows = [
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(_format_value(metrics[name]))}</td></tr>"
        for name in (*METRICS, "kid_std", "n_images", "features")
        if name in metrics
    ]
    notes = [
        f"<li>{html.escape(name)}: {html.escape(reason)}</li>"
        for name, reason in metrics.get("unavailable", {}).items()
    ]
    notes_html = f"<ul class='unavailable'>{''.join(notes)}</ul>" if notes else ""
    return f"<h2>Metrics</h2>\n<table class='metrics'>{''.join(rows)}</table>\n{notes_html}\n"


def _report_html(cases, title, mode, metrics, sort_by_error):
    order = "worst L1 first" if sort_by_error else "dataset order"
    rows = []
    for case in cases:
        cells = "".join(
            f"<td><img src='images/{_image_name(case['index'], kind)}' alt='{kind}'></td>"
            for kind in ("input", "output", "target")
        )
        scores = f"L1 {case['l1']:.4f}<br>PSNR {case['psnr']:.2f} dB<br>SSIM {case['ssim']:.3f}"
        rows.append(
            f"<tr class='case'><td>{case['index'] + 1:04d}</td>{cells}<td>{scores}</td></tr>"
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif} td{padding:4px;vertical-align:middle}"
        " img{max-width:256px}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p class='mode'>Test-time mode: {html.escape(mode)}.</p>\n"
        f"{_metrics_html(metrics)}"
        f"<h2>Images ({len(cases)}, {order})</h2>\n"
        "<table class='images'><tr><th>#</th><th>input</th><th>output</th><th>target</th>"
        "<th>errors</th></tr>\n" + "\n".join(rows) + "\n</table>\n</body></html>\n"
    )


# --------------------------------------------------------------------------- command


def evaluate_command(
    model_path,
    data=None,
    *,
    split="val",
    out=None,
    dropout=False,
    batch_stats=False,
    data_dir="data",
    image_size=None,
    direction=None,
    metrics=METRICS,
    inception_weights="imagenet",
    max_images=None,
    batch_size=None,
):
    """Everything ``python -m p2p_keras evaluate`` does: load, evaluate, write the report.

    The generator is loaded with `p2p_keras.inference.load_generator`, the data found with
    `p2p_keras.jobs.train.resolve_data` and read at the generator's input size without jitter.
    The direction is, in order: `direction`, the ``config.json`` that `train` wrote beside the
    model, the dataset's natural one, "AtoB". If ``split="val"`` is missing, "test" is used
    (the result's "split" says which).

    Args:
        model_path: a ``generator.keras`` or ``pix2pix.keras`` file.
        data: None (the embedded synthetic facades), a dataset name or a folder.
        split: the split to evaluate.
        out: folder for ``metrics.json`` and the HTML report (``index.html``, ``images/``);
            None writes nothing.
        dropout: see `p2p_keras.inference.generate`.
        batch_stats: see `p2p_keras.inference.generate`.
        data_dir: where datasets are generated or downloaded.
        image_size: evaluation size; default the generator's input size.
        direction: "AtoB" or "BtoA"; see above for the default.
        metrics: see `evaluate`.
        inception_weights: see `evaluate`.
        max_images: evaluate at most this many images.
        batch_size: default 1 with `batch_stats` (the paper's instance-norm-like protocol, so
            results do not depend on which images share a batch), else 8.

    Returns:
        The `evaluate` result plus "model", "data", "split", "direction", "image_size" and,
        with `out`, "metrics_file" and "report".
    """
    from p2p_keras.data import load_paired
    from p2p_keras.jobs.train import resolve_data

    generator = load_generator(model_path)
    root, natural_direction = resolve_data(data, data_dir)
    direction = direction or _trained_direction(model_path) or natural_direction or "AtoB"
    image_size = image_size or _input_size(generator)
    batch_size = batch_size or (1 if batch_stats else 8)
    dataset, split = _evaluation_split(
        load_paired,
        root,
        split,
        direction=direction,
        image_size=image_size,
        training=False,
        batch_size=batch_size,
        cache=False,
    )
    writer = None if out is None else ReportWriter(out, dropout=dropout, batch_stats=batch_stats)
    result = evaluate(
        generator,
        dataset,
        metrics=metrics,
        dropout=dropout,
        batch_stats=batch_stats,
        inception_weights=inception_weights,
        max_images=max_images,
        on_batch=writer,
    )
    result.update(
        model=str(model_path),
        data=str(root),
        split=split,
        direction=direction,
        image_size=list(image_size) if isinstance(image_size, tuple) else image_size,
    )
    if writer is not None:
        result["metrics_file"] = str(writer.out_dir / "metrics.json")
        title = f"pix2pix evaluation: {pathlib.Path(model_path).name} on {root.name}/{split}"
        result["report"] = str(writer.write_index(result, title=title))
        write_json_atomic(result, writer.out_dir / "metrics.json")
    return result


def write_json_atomic(value, path):
    """Writes `value` as indented JSON through a temporary file (other objects as `str`)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    return pathlib.Path(path)


def _trained_direction(model_path):
    """The direction in the ``config.json`` written by `train` beside the model, if any."""
    config = pathlib.Path(model_path).with_name("config.json")
    try:
        return json.loads(config.read_text()).get("direction")
    except (OSError, ValueError, AttributeError):
        return None


def _input_size(generator):
    height, width = generator.input_shape[1:3]
    if height is None or width is None:
        raise ValueError("the generator has no fixed input size; pass image_size")
    return height if height == width else (height, width)


def _evaluation_split(load_paired, root, split, **options):
    """``(dataset, split)``; "val" falls back to "test" when the dataset has no val split."""
    try:
        return load_paired(root, split, **options), split
    except FileNotFoundError:
        if split != "val":
            raise
        return load_paired(root, "test", **options), "test"
