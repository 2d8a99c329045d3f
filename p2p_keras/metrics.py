"""Scoring translations: per-image L1, PSNR, SSIM of (N, H, W, C) images in [-1, 1]; KID, FID.

Per-pixel metrics reward a blurry average: read them next to a baseline and the FCN-score
(`p2p_keras.segmenter`). FID is strongly biased on ~100 images; KID is unbiased.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _pair(generated, targets):
    generated, targets = np.asarray(generated, np.float32), np.asarray(targets, np.float32)
    if generated.shape != targets.shape or generated.ndim != 4:
        shapes = f"{generated.shape} and {targets.shape}"
        raise ValueError(f"expected two (N, H, W, C) batches of one shape, got {shapes}")
    return generated, targets


def per_image_l1(generated, targets):
    """Mean absolute error of each image, on the [-1, 1] scale, as a float64 (N,) array."""
    generated, targets = _pair(generated, targets)
    return np.abs(generated - targets).mean(axis=(1, 2, 3), dtype=np.float64)


def per_image_psnr(generated, targets):
    """Peak signal-to-noise ratio of each image in dB; the peak is [-1, 1]'s width (2).

    The same values as [0, 1] images with a peak of 1; identical images score ``inf``.
    """
    generated, targets = _pair(generated, targets)
    return tf.image.psnr(generated, targets, max_val=2.0).numpy().astype(np.float64)


def per_image_ssim(generated, targets):
    """Structural similarity of each image, with `tf.image.ssim` (Gaussian window 11, sigma 1.5).

    On images mapped to [0, 1], the usual convention (SSIM is not shift-invariant). Images under
    11 pixels use a window of their short side; under 3, `ValueError`.
    """
    generated, targets = _pair(generated, targets)
    size = min(11, *generated.shape[1:3])
    if size < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {generated.shape[1:3]}")
    values = tf.image.ssim((generated + 1) / 2, (targets + 1) / 2, max_val=1.0, filter_size=size)
    return values.numpy().astype(np.float64)


PER_IMAGE = {"l1": per_image_l1, "psnr": per_image_psnr, "ssim": per_image_ssim}


def get_scores(confusion):
    """phillipi/pix2pix's `get_scores` of a `(C, C)` confusion matrix (rows: the true classes).

    Returns `(per_pixel_acc, class_acc, class_iou)`, a float and two `(C,)` arrays. As there, a
    class absent from the labels and the predictions scores 0 (and counts in the means).
    """
    confusion = np.asarray(confusion, np.float64)
    hits, truths, predictions = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    accuracy = hits.sum() / (confusion.sum() + 1e-12)
    return accuracy, hits / (truths + 1e-12), hits / (truths + predictions - hits + 1e-12)


def _features(features):
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"expected (N, D) features with N >= 2, got {features.shape}")
    return features


def fid(real, fake):
    """Fréchet Inception Distance between two feature sets, (N, D) and (M, D), as pytorch-fid.

    The root's trace comes from the symmetric ``S1^(1/2) S2 S1^(1/2)``: finite for singular
    covariances (fewer images than features). Compare FIDs only at equal image counts.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> round(fid(rng.normal(size=(5000, 2)), rng.normal(1, 1, (5000, 2))), 1)
    2.0
    """
    real, fake = _features(real), _features(fake)
    sigma1, sigma2 = (np.atleast_2d(np.cov(x, rowvar=False)) for x in (real, fake))
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S1^(1/2)
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    diff = real.mean(axis=0) - fake.mean(axis=0)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def kid(real, fake, *, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance (Bińkowski et al., 2018): unbiased MMD² of two feature sets.

    The mean and std over `subsets` random subsets of ``min(N, M, subset_size)`` features per
    set, kernel ``(x . y / D + 1) ** 3``, as the reference code; one distribution twice: about 0.
    """
    real, fake = _features(real), _features(fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    m = min(len(real), len(fake), subset_size)
    rng = np.random.default_rng(seed)

    def kernel(x, y):
        return (x @ y.T / x.shape[1] + 1) ** 3

    def mmd2(x, y):
        k_xx, k_yy = kernel(x, x), kernel(y, y)
        within = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
        return within / (m * (m - 1)) - 2 * kernel(x, y).mean()

    draws = [[rng.choice(len(x), m, False) for x in (real, fake)] for _ in range(subsets)]
    values = [mmd2(real[i], fake[j]) for i, j in draws]
    return float(np.mean(values)), float(np.std(values))


@functools.lru_cache(maxsize=2)
def _inception(weights):
    return keras.applications.InceptionV3(
        include_top=False, pooling="avg", weights=weights, input_shape=(299, 299, 3)
    )


def inception_features(weights="imagenet"):
    """A function ``images in [-1, 1] -> (N, 2048)`` array of InceptionV3's pool features.

    `weights`: "imagenet" (downloaded once), a local no-top weights file or None (random: to
    test the plumbing); missing weights raise `RuntimeError` saying how to get them.
    """
    try:
        model = _inception(weights)
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception offline
        raise RuntimeError(
            f"InceptionV3 weights {weights!r} could not be loaded ({type(error).__name__}: "
            f"{error}). KID and FID need them: pass --inception-weights /path/to/"
            f"{INCEPTION_WEIGHTS_FILE}, or put that file in ~/.keras/models/ once."
        ) from error

    def extract(images, batch_size=32):
        features = []
        for start in range(0, len(images), batch_size):  # 299x299 copies of a batch at a time
            batch = keras.ops.convert_to_tensor(images[start : start + batch_size], "float32")
            batch = keras.ops.clip(batch, -1.0, 1.0)
            if batch.shape[-1] == 1:
                batch = keras.ops.repeat(batch, 3, axis=-1)
            batch = keras.ops.image.resize(batch, (299, 299), interpolation="bilinear")
            features.append(keras.ops.convert_to_numpy(model.predict_on_batch(batch)))
        return np.concatenate(features)

    return extract
