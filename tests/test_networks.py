"""The generator and discriminator: the paper's sizes, shapes and receptive fields."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from p2p_keras.discriminator import build_patchgan_discriminator, receptive_field
from p2p_keras.generator import build_unet_generator, unet_depth


def test_unet_256_has_the_official_parameter_count():
    generator = build_unet_generator((256, 256, 3))
    assert generator.count_params() == 54_423_811
    trainable = sum(int(np.prod(weight.shape)) for weight in generator.trainable_weights)
    assert trainable == 54_413_955
    assert generator.output_shape == (None, 256, 256, 3)
    # The official unet_128 at ngf 32 caps its width at 8 * ngf = 256, not at 512.
    assert build_unet_generator((128, 128, 3), filters=32).get_layer("down7_conv").filters == 256


def test_unet_has_no_norm_on_the_first_and_innermost_encoder_layers():
    generator = build_unet_generator((256, 256, 3))
    names = [layer.name for layer in generator.layers]
    assert "down1_batchnorm" not in names and "down8_batchnorm" not in names
    assert all(f"down{level}_batchnorm" in names for level in range(2, 8))
    assert generator.get_layer("down8_conv").output.shape[1:3] == (1, 1)
    dropouts = [layer for layer in generator.layers if isinstance(layer, layers.Dropout)]
    # The official code's: the three blocks after the innermost, at 4x4, 8x8 and 16x16.
    assert [layer.name for layer in dropouts] == ["up2_dropout", "up3_dropout", "up4_dropout"]
    assert [layer.output.shape[1] for layer in dropouts] == [4, 8, 16]


def test_the_decoder_sees_relu_of_the_skip_first_and_the_innermost_code_relud():
    """The official block: cat([skip, decoder]), then ReLU, then the transposed convolution."""
    generator = build_unet_generator((32, 32, 3), filters=4)
    skip = generator.get_layer("up2_skip")
    assert [t.name for t in skip.input] == [
        generator.get_layer("down4_batchnorm").output.name,
        generator.get_layer("up1_batchnorm").output.name,
    ]
    assert generator.get_layer("up2_relu").input.name == skip.output.name
    assert (
        generator.get_layer("up1_relu").input.name == generator.get_layer("down5_conv").output.name
    )
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    probe = keras.Model(generator.input, [skip.output, generator.get_layer("up2_relu").output])
    concatenated, activated = (keras.ops.convert_to_numpy(t) for t in probe(x, training=True))
    assert concatenated[..., :8].min() < 0  # the skip half: e before any activation
    np.testing.assert_allclose(activated, np.maximum(concatenated, 0))


def test_bottleneck_carries_information_at_batch_size_one():
    # With BatchNorm on a 1x1 map at batch 1 (TF tutorial) every input gives the same bottleneck.
    generator = build_unet_generator((64, 64, 3))
    bottleneck = keras.Model(generator.input, generator.get_layer("down6_conv").output)
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (1, 64, 64, 3)).astype("float32") for _ in range(2))
    difference = np.abs(bottleneck(a, training=True) - bottleneck(b, training=True)).max()
    assert difference > 1e-3


@pytest.mark.parametrize(
    ("shape", "depth"),
    [((128, 128, 3), 7), ((256, 256, 3), 8), ((512, 512, 3), 9), ((128, 256, 3), 7)],
)
def test_unet_depth_follows_the_size_and_output_matches_input(shape, depth):
    generator = build_unet_generator(shape)
    assert unet_depth(*shape[:2]) == depth
    convs = [layer for layer in generator.layers if isinstance(layer, layers.Conv2D)]
    assert len([c for c in convs if not isinstance(c, layers.Conv2DTranspose)]) == depth
    assert generator.output_shape == (None, *shape)


def test_unet_runs_on_non_square_images_in_range():
    generator = build_unet_generator((32, 64, 3), output_channels=1)
    output = generator(np.zeros((2, 32, 64, 3), "float32"))
    assert output.shape == (2, 32, 64, 1)
    assert float(np.abs(output).max()) <= 1.0


@pytest.mark.parametrize(
    ("shape", "nearest"),
    [((300, 300), "256x256"), ((640, 480), "512x512"), ((100, 300), "128x256"), ((3, 5), "4x4")],
)
def test_unet_rejects_sizes_that_do_not_divide_and_names_the_nearest(shape, nearest):
    with pytest.raises(ValueError, match=f"nearest valid size is {nearest}"):
        build_unet_generator((*shape, 3))
    height, width = (int(side) for side in nearest.split("x"))
    assert unet_depth(height, width) >= 2  # the suggestion is itself valid


def test_encoder_decoder_ablation_has_no_skips():
    unet = build_unet_generator((64, 64, 3))
    plain = build_unet_generator((64, 64, 3), skip_connections=False)
    assert plain.name == "encoder_decoder_generator"
    assert not any(isinstance(layer, layers.Concatenate) for layer in plain.layers)
    assert sum(isinstance(layer, layers.Concatenate) for layer in unet.layers) == 5
    assert plain.count_params() < unet.count_params()


def test_instance_and_no_norm_options():
    instance = build_unet_generator((64, 64, 3), norm="instance")
    assert any(isinstance(layer, layers.GroupNormalization) for layer in instance.layers)
    plain = build_unet_generator((64, 64, 3), norm=None)
    assert not any("norm" in layer.name for layer in plain.layers)
    assert plain.get_layer("down2_conv").use_bias
    with pytest.raises(ValueError, match="norm must be one of"):
        build_unet_generator((64, 64, 3), norm="layer")


def test_instance_norm_keeps_the_convolution_biases():
    """Instance norm has no shift, so (as in the official code) every convolution keeps its
    bias; batch norm's shift replaces it, except on the official outer convolutions."""
    models = (
        build_unet_generator((32, 32, 3), filters=8, norm="instance"),
        build_patchgan_discriminator((32, 32, 3), filters=8, norm="instance", patch_size=16),
    )
    for model in models:
        convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
        assert len(convs) >= 3 and all(conv.use_bias for conv in convs), model.name
    batch = build_unet_generator((32, 32, 3), filters=8)
    assert not batch.get_layer("down1_conv").use_bias and not batch.get_layer("up1_convT").use_bias
    assert batch.get_layer("output_convT").use_bias
    d = build_patchgan_discriminator((32, 32, 3), filters=8, patch_size=16)
    biased = [layer.name for layer in d.layers if getattr(layer, "use_bias", False)]
    assert biased == ["block1_conv", "patch_conv"]
    pixel = build_patchgan_discriminator((32, 32, 3), filters=8, patch_size=1)
    assert [layer.name for layer in pixel.layers if getattr(layer, "use_bias", False)] == [
        "pixel1_conv"
    ]


def test_patchgan_70_has_the_official_parameter_count_and_30x30_logits():
    discriminator = build_patchgan_discriminator((256, 256, 3))
    assert discriminator.count_params() == 2_770_497
    trainable = sum(int(np.prod(weight.shape)) for weight in discriminator.trainable_weights)
    assert trainable == 2_768_705
    assert discriminator.output_shape == (None, 30, 30, 1)
    assert receptive_field(discriminator) == 70


@pytest.mark.parametrize(("patch_size", "grid"), [(1, 256), (16, 126), (70, 30), (286, 6)])
def test_paper_patch_sizes_have_their_receptive_fields(patch_size, grid):
    discriminator = build_patchgan_discriminator((256, 256, 3), patch_size=patch_size)
    assert receptive_field(discriminator) == patch_size
    assert discriminator.output_shape == (None, grid, grid, 1)


def test_receptive_field_is_measured_not_looked_up():
    inputs = keras.Input((64, 64, 1))
    x = layers.Conv2D(1, 3, strides=2)(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(1, (5, 3))(x)
    # 1 + 2 = 3; + (2 - 1) * 2 = 5; + (5 - 1) * 4 = 21 rows and + (3 - 1) * 4 = 13 cols.
    assert receptive_field(keras.Model(inputs, x)) == (21, 13)


def test_patchgan_receptive_field_matches_a_gradient_probe():
    # The logit at the centre only depends on input pixels inside its receptive field.
    discriminator = build_patchgan_discriminator((64, 64, 1), 1, patch_size=16, norm=None)
    x = tf.Variable(np.random.default_rng(0).normal(size=(1, 64, 64, 1)).astype("float32"))
    with tf.GradientTape() as tape:
        logits = discriminator([x, x])
        centre = logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]
    grad = np.abs(tape.gradient(centre, x).numpy()[0, :, :, 0]) > 0
    rows, cols = np.nonzero(grad)
    assert rows.max() - rows.min() + 1 <= 16 and cols.max() - cols.min() + 1 <= 16
    assert rows.max() - rows.min() + 1 >= 14


def test_unconditional_discriminator_sees_the_target_only():
    discriminator = build_patchgan_discriminator((64, 64, 3), conditional=False)
    assert len(discriminator.inputs) == 1
    assert discriminator.input_shape == (None, 64, 64, 3)
    conditional = build_patchgan_discriminator((64, 64, 3))
    assert [tuple(i.shape) for i in conditional.inputs] == [(None, 64, 64, 3)] * 2


def test_unknown_patch_size_is_refused():
    with pytest.raises(ValueError, match="patch_size must be one of"):
        build_patchgan_discriminator((64, 64, 3), patch_size=50)
