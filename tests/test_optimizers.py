"""`FusedAdam` is Keras' Adam, step for step, with the same variables and configuration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from p2p_keras.optimizers import FusedAdam, default_optimizer


def run_updates(optimizer, steps=6, jit_compile=False):
    """Applies `steps` fixed pseudo-random gradients to two variables; returns every array."""
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="kernel")
    bias = keras.Variable(np.zeros(4, "float32"), name="bias")
    grads = [
        [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=4).astype("float32")]
        for _ in range(steps)
    ]
    optimizer.build([kernel, bias])

    @tf.function(jit_compile=jit_compile)
    def apply(g):
        optimizer.apply(g, [kernel, bias])

    for g in grads:
        apply([tf.constant(x) for x in g])
    return [kernel.numpy(), bias.numpy()] + [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("options", [{}, {"amsgrad": True}, {"weight_decay": 0.01}])
def test_fused_adam_matches_keras_adam(options):
    settings = dict(learning_rate=0.05, beta_1=0.5, **options)
    expected = run_updates(keras.optimizers.Adam(**settings))
    fused = run_updates(FusedAdam(**settings))
    assert len(fused) == len(expected)
    for a, b in zip(fused, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The updates did move the weights (~0.05 per step), so the comparison means something.
    assert np.abs(expected[0] - run_updates(FusedAdam(**settings), steps=1)[0]).max() > 0.05


def test_fused_adam_under_xla_matches_keras_adam():
    expected = run_updates(keras.optimizers.Adam(0.05, beta_1=0.5))
    fused = run_updates(FusedAdam(0.05, beta_1=0.5), jit_compile=True)
    for a, b in zip(fused, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_adam_keeps_adams_variables_and_config():
    fused, plain = FusedAdam(3e-4, beta_1=0.5), keras.optimizers.Adam(3e-4, beta_1=0.5)
    variables = [keras.Variable(np.ones((2, 2), "float32"))]
    fused.build(variables)
    plain.build(variables)
    assert [v.path.split("/")[-1] for v in fused.variables] == [
        v.path.split("/")[-1] for v in plain.variables
    ]
    config = fused.get_config()
    assert {k: v for k, v in config.items() if k != "name"} == {
        k: v for k, v in plain.get_config().items() if k != "name"
    }
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(fused))
    assert type(restored) is FusedAdam
    assert float(restored.learning_rate) == pytest.approx(3e-4) and restored.beta_1 == 0.5


def test_default_optimizer_is_the_papers_adam():
    optimizer = default_optimizer()
    assert isinstance(optimizer, FusedAdam) and isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(2e-4)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.999)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    assert default_optimizer(schedule).learning_rate is not None
