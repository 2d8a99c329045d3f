"""`FusedAdam` is Keras' Adam, step for step, and fails loudly if Keras' internals change."""

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

    history = []
    for g in grads:
        apply([tf.constant(x) for x in g])
        history.append([kernel.numpy(), bias.numpy()] + [v.numpy() for v in optimizer.variables])
    return history


@pytest.mark.parametrize("options", [{}, {"amsgrad": True}, {"weight_decay": 0.01}])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_adam_matches_keras_adam_step_by_step(options, jit_compile):
    settings = dict(learning_rate=0.05, beta_1=0.5, **options)
    expected = run_updates(keras.optimizers.Adam(**settings))
    fused = run_updates(FusedAdam(**settings), jit_compile=jit_compile)
    for step, (got, want) in enumerate(zip(fused, expected, strict=True)):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"step {step + 1}")
    # The updates did move the weights (~0.05 per step), so the comparison means something.
    assert np.abs(expected[-1][0] - expected[0][0]).max() > 0.05


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


def test_fused_adam_refuses_a_keras_without_the_internals_it_reads(monkeypatch):
    variables = [keras.Variable(np.ones(2, "float32"))]
    FusedAdam().build(variables)
    owner = next(c for c in keras.optimizers.Adam.__mro__ if "_get_variable_index" in vars(c))
    with monkeypatch.context() as patch:
        patch.delattr(owner, "_get_variable_index")
        with pytest.raises(RuntimeError, match="_get_variable_index.*use keras.optimizers.Adam"):
            FusedAdam().build(variables)
    # An Adam whose build() no longer creates the moment slots under their old names.
    monkeypatch.setattr(
        keras.optimizers.Adam,
        "build",
        lambda self, var_list: keras.optimizers.Optimizer.build(self, var_list),
    )
    with pytest.raises(RuntimeError, match="_momentums"):
        FusedAdam().build(variables)


def test_default_optimizer_is_the_papers_adam(monkeypatch):
    optimizer = default_optimizer()
    assert isinstance(optimizer, FusedAdam) and isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(2e-4)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.999)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    assert default_optimizer(schedule).learning_rate is not None
    # Other backends get Keras' own Adam with the same settings; FusedAdam refuses them.
    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    optimizer = default_optimizer()
    assert type(optimizer) is keras.optimizers.Adam
    assert float(optimizer.learning_rate) == pytest.approx(2e-4) and optimizer.beta_1 == 0.5
    with pytest.raises(RuntimeError, match="TensorFlow backend"):
        FusedAdam()
