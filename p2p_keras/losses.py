"""The pix2pix objective: G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G), lambda = 100.

Each loss is a mean over the batch and the patches, in `keras.ops` (any backend, XLA).
"""

from keras import ops

GAN_LOSSES = ("vanilla", "lsgan")

# The paper's loss ablation (Table 1): the discriminator and the weights of each row.
LOSS_ABLATIONS = {
    "l1": {"conditional": True, "gan_weight": 0.0, "l1_weight": 100.0},
    "gan": {"conditional": False, "gan_weight": 1.0, "l1_weight": 0.0},
    "cgan": {"conditional": True, "gan_weight": 1.0, "l1_weight": 0.0},
    "l1+gan": {"conditional": False, "gan_weight": 1.0, "l1_weight": 100.0},
    "l1+cgan": {"conditional": True, "gan_weight": 1.0, "l1_weight": 100.0},
}


def check_gan_loss(gan_loss):
    """Raises a ValueError unless `gan_loss` is one of `GAN_LOSSES`."""
    if gan_loss not in GAN_LOSSES:
        raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")


def adversarial_loss(logits, is_real, gan_loss="vanilla"):
    """How far patch logits are from the label "real" (1) or "fake" (0).

    "vanilla" is binary cross-entropy on logits (the paper's), "lsgan" the mean squared error
    (Mao et al., 2017).

    Example:
    >>> float(adversarial_loss(ops.zeros((1, 30, 30, 1)), is_real=True))  # log 2
    0.6931471824645996
    """
    check_gan_loss(gan_loss)
    labels = ops.ones_like(logits) if is_real else ops.zeros_like(logits)
    if gan_loss == "lsgan":
        return ops.mean(ops.square(logits - labels))
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def discriminator_loss(real_logits, fake_logits, gan_loss="vanilla"):
    """The discriminator's loss: real pairs should score 1, generated pairs 0.

    Halved, as in the paper ("we divide the objective by 2 while optimizing D, which slows down
    the rate at which D learns relative to G") and the official code.
    """
    real = adversarial_loss(real_logits, True, gan_loss)
    return 0.5 * (real + adversarial_loss(fake_logits, False, gan_loss))


def generator_gan_loss(fake_logits, gan_loss="vanilla"):
    """The generator's adversarial loss in the paper's non-saturating form, -log D(x, G(x))."""
    return adversarial_loss(fake_logits, True, gan_loss)


def l1_loss(target, generated):
    """Mean absolute error between real and generated targets.

    The paper prefers L1 to L2 because it blurs less; weighted by lambda = 100 it keeps the
    output close to the target at low frequencies while the PatchGAN handles the high ones.
    """
    return ops.mean(ops.abs(ops.cast(target, generated.dtype) - generated))
