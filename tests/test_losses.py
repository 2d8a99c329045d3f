"""The losses against values computed by hand."""

import math

import numpy as np
import pytest

from p2p_keras.losses import (
    LOSS_ABLATIONS,
    adversarial_loss,
    discriminator_loss,
    generator_gan_loss,
    l1_loss,
)


def softplus(x):
    return math.log1p(math.exp(x))


def test_vanilla_loss_is_binary_cross_entropy_on_logits():
    logits = np.array([[2.0], [-1.0]], "float32")
    # -log(sigmoid(z)) = softplus(-z) for real labels, -log(1 - sigmoid(z)) = softplus(z) for fake.
    assert float(adversarial_loss(logits, True)) == pytest.approx(
        (softplus(-2.0) + softplus(1.0)) / 2, abs=1e-6
    )
    assert float(adversarial_loss(logits, False)) == pytest.approx(
        (softplus(2.0) + softplus(-1.0)) / 2, abs=1e-6
    )


def test_undecided_discriminator_scores_log_2():
    zeros = np.zeros((2, 30, 30, 1), "float32")
    assert float(discriminator_loss(zeros, zeros)) == pytest.approx(math.log(2), abs=1e-6)
    assert float(generator_gan_loss(zeros)) == pytest.approx(math.log(2), abs=1e-6)


def test_discriminator_loss_is_half_the_sum():
    real = np.array([3.0, 0.5], "float32")
    fake = np.array([-2.0, 1.0], "float32")
    expected = 0.5 * ((softplus(-3.0) + softplus(-0.5)) / 2 + (softplus(-2.0) + softplus(1.0)) / 2)
    assert float(discriminator_loss(real, fake)) == pytest.approx(expected, abs=1e-6)


def test_lsgan_is_mean_squared_distance_to_the_label():
    logits = np.array([0.5, 3.0], "float32")
    assert float(adversarial_loss(logits, True, "lsgan")) == pytest.approx(2.125)
    assert float(adversarial_loss(logits, False, "lsgan")) == pytest.approx(4.625)
    assert float(discriminator_loss(logits, logits, "lsgan")) == pytest.approx(3.375)


def test_generator_loss_is_non_saturating():
    # -log D(G(x)): large when D confidently rejects the fake, not log(1 - D) which would vanish.
    confident_reject = np.full((1, 4), -5.0, "float32")
    assert float(generator_gan_loss(confident_reject)) == pytest.approx(softplus(5.0), abs=1e-5)


def test_l1_is_the_mean_absolute_difference():
    target = np.array([[0.0, 1.0], [-1.0, 0.5]], "float32")
    generated = np.array([[0.5, 1.0], [1.0, 0.0]], "float32")
    assert float(l1_loss(target, generated)) == pytest.approx((0.5 + 0 + 2 + 0.5) / 4)


def test_unknown_gan_loss_is_refused():
    with pytest.raises(ValueError, match="gan_loss must be one of"):
        adversarial_loss(np.zeros(2, "float32"), True, "wgan")


def test_loss_ablations_match_the_paper_rows():
    assert set(LOSS_ABLATIONS) == {"l1", "gan", "cgan", "l1+gan", "l1+cgan"}
    assert LOSS_ABLATIONS["l1"]["gan_weight"] == 0
    assert not LOSS_ABLATIONS["gan"]["conditional"] and LOSS_ABLATIONS["cgan"]["conditional"]
    assert LOSS_ABLATIONS["l1+cgan"] == {"conditional": True, "gan_weight": 1.0, "l1_weight": 100.0}
