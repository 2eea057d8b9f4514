"""The exercise checks of notebook 05 accept the solutions and reject wrong answers with a hint that names
the mistake."""

import numpy as np
import pytest
import torch

import bnlib
from bnlib.course.ch05 import exercises as ch05
from bnlib.course.checks import NotYet


def step_solution(running_mean, running_var, batch, momentum):
    return ((1 - momentum) * running_mean + momentum * batch.mean(axis=0),
            (1 - momentum) * running_var + momentum * batch.var(axis=0, ddof=1))


def keras_solution(keras, **changes):
    keras = {**keras, **changes}
    layer = torch.nn.BatchNorm1d(len(keras["gamma"]), eps=keras["epsilon"], momentum=1 - keras["momentum"],
                                 dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(keras["gamma"]))
        layer.bias.copy_(torch.as_tensor(keras["beta"]))
        layer.running_mean.copy_(torch.as_tensor(keras["moving_mean"]))
        layer.running_var.copy_(torch.as_tensor(keras["moving_variance"]))
    return layer


def not_yet(check, answer):
    with pytest.raises(NotYet) as raised:
        check(answer)
    return str(raised.value)


def blend(spread):
    """A running-statistics step that blends the batch's ``spread(batch)`` into running_var."""
    def step(running_mean, running_var, batch, momentum):
        return ((1 - momentum) * running_mean + momentum * batch.mean(axis=0),
                (1 - momentum) * running_var + momentum * spread(batch))
    return step


def test_running_stats_step(capsys):
    ch05.check_running_stats_step(step_solution)
    assert capsys.readouterr().out.count("Correct.") == 1
    assert "UNBIASED" in not_yet(ch05.check_running_stats_step, blend(lambda batch: batch.var(axis=0)))
    assert "running_var is not" in not_yet(ch05.check_running_stats_step, blend(lambda batch: batch.std(axis=0)))
    reversed_ = lambda mean, var, batch, m: step_solution(mean, var, batch, 1 - m)
    assert "NEW batch" in not_yet(ch05.check_running_stats_step, reversed_)
    jumps = lambda mean, var, batch, m: (batch.mean(0), batch.var(0, ddof=1))
    assert "must not jump" in not_yet(ch05.check_running_stats_step, jumps)
    assert "pair" in not_yet(ch05.check_running_stats_step, lambda mean, var, batch, m: mean)
    assert "None" in not_yet(ch05.check_running_stats_step, None)


def test_the_solution_is_also_what_bnlib_batchnorm1d_does():
    layer = bnlib.BatchNorm1d(2, momentum=0.3, dtype=torch.float64)
    batch = np.random.default_rng(0).normal(size=(5, 2))
    mean, var = step_solution(layer.running_mean.numpy().copy(), layer.running_var.numpy().copy(), batch, 0.3)
    layer(torch.from_numpy(batch))
    np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-12)


def test_keras_to_torch(capsys):
    ch05.check_keras_to_torch(keras_solution)
    ch05.check_keras_to_torch(lambda keras: keras_solution(keras).float())        # float32 is fine too
    assert capsys.readouterr().out.count("Correct.") == 2
    assert "1e-3" in not_yet(ch05.check_keras_to_torch, lambda keras: keras_solution(keras, epsilon=1e-5))
    assert "OLD" in not_yet(ch05.check_keras_to_torch, lambda keras: keras_solution(keras, momentum=0.01))
    fresh = lambda keras: keras_solution(keras, moving_mean=np.zeros(4), moving_variance=np.ones(4))
    assert "fresh layer" in not_yet(ch05.check_keras_to_torch, fresh)
    swapped = lambda keras: keras_solution(keras, gamma=keras["beta"], beta=keras["gamma"])
    assert "swapped" in not_yet(ch05.check_keras_to_torch, swapped)
    assert "BatchNorm1d" in not_yet(ch05.check_keras_to_torch, lambda keras: keras["gamma"])
    assert "None" in not_yet(ch05.check_keras_to_torch, lambda keras: None)
    assert "itself" in not_yet(ch05.check_keras_to_torch, keras_solution(ch05.keras_layer()))
    assert "None" in not_yet(ch05.check_keras_to_torch, None)


def test_the_keras_reference_is_the_converted_layers_eval_output():
    """Keras' BatchNormalization at inference, gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta,
    is the converted layer's eval output."""
    keras = ch05.keras_layer()
    x = np.random.default_rng(1).normal(size=(3, 4))
    with torch.no_grad():
        out = keras_solution(keras).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ch05.keras_inference(keras, x), rtol=1e-12)


def test_lag(capsys):
    assert ch05.explorer_lag(0.1) == pytest.approx(9.0, rel=0.01)
    assert ch05.explorer_lag(0.01) == pytest.approx(99.0, rel=0.02)
    ch05.check_lag("about 10 times longer")
    assert capsys.readouterr().out.startswith("Correct.")
    for wrong in ("shorter", "about the same", "about 100 times longer"):
        assert "explorer" in not_yet(ch05.check_lag, wrong)
    assert "Answer with one of" in not_yet(ch05.check_lag, "longer")


def test_best_momentum(capsys):
    assert ch05.best_momentum(0.6) < 0.8 * ch05.best_momentum(0.3)
    ch05.check_best_momentum("smaller")
    assert capsys.readouterr().out.startswith("Correct.")
    assert "explorer" in not_yet(ch05.check_best_momentum, "larger")
    assert "None" in not_yet(ch05.check_best_momentum, None)
