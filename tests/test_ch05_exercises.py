"""The exercise checks of notebook 05 accept the solutions and reject wrong answers with a hint that names
the mistake."""

import numpy as np
import pytest
import torch
from exercise_checks import UpdatesInEval, refused, stub

import bnlib
from bnlib.course.ch05 import exercises as ch05


def step_solution(running_mean, running_var, batch, momentum):
    return ((1 - momentum) * running_mean + momentum * batch.mean(axis=0),
            (1 - momentum) * running_var + momentum * batch.var(axis=0, ddof=1))


def step_as_the_notebook(running_mean, running_var, batch, momentum):
    n = len(batch)
    batch_var = batch.var(axis=0) * n / (n - 1)
    return ((1 - momentum) * running_mean + momentum * batch.mean(axis=0),
            (1 - momentum) * running_var + momentum * batch_var)


def step_by_lerp(running_mean, running_var, batch, momentum):
    t = torch.from_numpy(batch)
    return (torch.lerp(torch.from_numpy(running_mean), t.mean(0), momentum),
            torch.lerp(torch.from_numpy(running_var), t.var(0, unbiased=True), momentum))


def step_by_a_torch_layer(running_mean, running_var, batch, momentum):
    layer = torch.nn.BatchNorm1d(batch.shape[1], momentum=momentum, dtype=torch.float64)
    layer.running_mean.copy_(torch.from_numpy(running_mean))
    layer.running_var.copy_(torch.from_numpy(running_var))
    layer(torch.from_numpy(batch))
    return np.stack([layer.running_mean.numpy(), layer.running_var.numpy()])


def step_in_increments(running_mean, running_var, batch, momentum):
    mean = running_mean + momentum * (batch.mean(0) - running_mean)
    var = running_var + momentum * (((batch - batch.mean(0)) ** 2).sum(0) / (len(batch) - 1) - running_var)
    return [mean, var]


@pytest.mark.parametrize("answer", [step_solution, step_as_the_notebook, step_by_lerp, step_by_a_torch_layer,
                                    step_in_increments])
def test_running_stats_step_accepts_every_correct_form(answer, capsys):
    assert ch05.check_running_stats_step(answer) is None
    assert capsys.readouterr().out.count("Correct.") == 1


def blend(spread=lambda batch: batch.var(axis=0, ddof=1), center=lambda batch: batch.mean(axis=0), fixed=None,
          var_weight=None):
    """A running-statistics step with the batch's ``spread`` and ``center``, a ``fixed`` momentum if given."""
    def step(running_mean, running_var, batch, momentum):
        m = momentum if fixed is None else fixed
        w = m if var_weight is None else var_weight(m)
        return ((1 - m) * running_mean + m * center(batch), (1 - w) * running_var + w * spread(batch))
    return step


@pytest.mark.parametrize("wrong, hint", [
    (blend(spread=lambda batch: batch.var(axis=0)), "UNBIASED"),
    (blend(spread=lambda batch: batch.std(axis=0, ddof=1)), "running_var is not"),
    (lambda mean, var, batch, m: step_solution(mean, var, batch, 1 - m), "NEW batch"),
    (lambda mean, var, batch, m: (batch.mean(0), batch.var(0, ddof=1)), "must not jump"),
    (blend(fixed=0.1), "ignored the momentum argument"),
    (blend(var_weight=lambda m: 0.1), "running_var moves as with 0.1"),
    (blend(var_weight=lambda m: 1 - m), "running_var's weights are the wrong way round"),
    (blend(center=lambda batch: np.median(batch, axis=0)), "running_mean is wrong"),
    (blend(center=lambda batch: batch.mean(axis=1).mean()), "one mean per channel"),
    (lambda mean, var, batch, m: np.float32(step_solution(mean, var, batch, m)), "float32"),
])
def test_running_stats_step_names_the_mistake(wrong, hint):
    refused(ch05.check_running_stats_step, wrong, hint)


def step_in_place(running_mean, running_var, batch, momentum):
    running_mean *= 1 - momentum
    running_mean += momentum * batch.mean(axis=0)
    return running_mean, (1 - momentum) * running_var + momentum * batch.var(axis=0, ddof=1)


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda mean, var, batch, m: None, "returned None"),
    (lambda mean, var, batch, m: (mean, var), "running_mean is wrong"),
    (lambda mean, var, batch, m: (np.zeros(3), np.ones(3)), "running_mean is wrong"),
    (lambda mean, var, batch, m: (mean * np.nan, var), "NaN"),
    (lambda mean, var, batch, m: (np.full_like(mean, np.nan), var), "NaN"),
    (lambda mean, var, batch, m: 1 / 0, "raised ZeroDivisionError"),
    (lambda mean, var, batch, m: mean, "pair"),
    (lambda mean, var, batch, m: (mean[:2], var[:2]), "pair"),
    (step_in_place, "changed its argument 1 (ndarray) in place"),
    (lambda mean, var, batch, m: (batch.sort(axis=0), step_solution(mean, var, batch, m))[1],
     "changed its argument 3 (ndarray) in place"),
    (lambda mean, var, batch, m: "mean", "return numbers"),
    (step_solution(np.zeros(3), np.ones(3), np.ones((2, 3)), 0.1), "Pass your function itself"),
])
def test_running_stats_step_refuses_hostile_answers(hostile, hint):
    refused(ch05.check_running_stats_step, hostile, hint)


def test_the_solution_is_also_what_bnlib_batchnorm1d_does():
    layer = bnlib.BatchNorm1d(2, momentum=0.3, dtype=torch.float64)
    batch = np.random.default_rng(0).normal(size=(5, 2))
    mean, var = step_solution(layer.running_mean.numpy().copy(), layer.running_var.numpy().copy(), batch, 0.3)
    layer(torch.from_numpy(batch))
    np.testing.assert_allclose(layer.running_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var.numpy(), var, rtol=1e-12)


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


def keras_by_state_dict(keras):
    layer = torch.nn.BatchNorm1d(len(keras["gamma"]), eps=keras["epsilon"], momentum=1 - keras["momentum"],
                                 dtype=torch.float64)
    layer.load_state_dict({"weight": torch.tensor(keras["gamma"]), "bias": torch.tensor(keras["beta"]),
                           "running_mean": torch.tensor(keras["moving_mean"]),
                           "running_var": torch.tensor(keras["moving_variance"]),
                           "num_batches_tracked": torch.tensor(0)})
    return layer


def keras_by_bnlib(keras):
    layer = bnlib.BatchNorm1d(len(keras["gamma"]), eps=keras["epsilon"], momentum=round(1 - keras["momentum"], 12),
                              dtype=torch.float64)
    with torch.no_grad():
        for name, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                          ("running_var", "moving_variance")):
            getattr(layer, name).copy_(torch.from_numpy(keras[key]))
    return layer


@pytest.mark.parametrize("answer", [keras_solution, lambda keras: keras_solution(keras).float(), keras_by_state_dict,
                                    keras_by_bnlib])
def test_keras_to_torch_accepts_every_correct_form(answer, capsys):
    assert ch05.check_keras_to_torch(answer) is None
    assert capsys.readouterr().out.count("Correct.") == 1


class UpdatingInEval(UpdatesInEval, torch.nn.BatchNorm1d):
    pass


def keras_updating_in_eval(keras):
    layer = UpdatingInEval(4, eps=keras["epsilon"], momentum=1 - keras["momentum"], dtype=torch.float64)
    layer.load_state_dict(keras_solution(keras).state_dict())
    return layer


def keras_dividing_by_the_variance(keras):
    return keras_solution(keras, moving_variance=np.sqrt(keras["moving_variance"] + keras["epsilon"]) ** 4
                          - keras["epsilon"])


@pytest.mark.parametrize("wrong, hint", [
    (lambda keras: keras_solution(keras, epsilon=1e-5), "torch's default 1e-5"),
    (lambda keras: keras_solution(keras, epsilon=1e-3), "read it from keras['epsilon']"),
    (lambda keras: keras_solution(keras, momentum=1 - keras["momentum"]), "OLD"),
    (lambda keras: keras_solution(keras, momentum=0.99), "read it from keras['momentum']"),
    (lambda keras: keras_solution(keras, moving_mean=np.zeros(4), moving_variance=np.ones(4)), "fresh layer"),
    (lambda keras: keras_solution(keras, gamma=keras["beta"], beta=keras["gamma"]), "swapped"),
    (lambda keras: keras_solution(keras, momentum=0.0), "check the momentum you set"),
    (keras_dividing_by_the_variance, "check which of the layer's parameters"),
    (keras_updating_in_eval, "Predicting changed the layer's running statistics"),
    (lambda keras: keras_solution({key: np.float32(value) for key, value in keras.items()}), "float32"),
])
def test_keras_to_torch_names_the_mistake(wrong, hint):
    refused(ch05.check_keras_to_torch, wrong, hint)


def keras_without_affine(keras):
    layer = torch.nn.BatchNorm1d(4, eps=keras["epsilon"], momentum=1 - keras["momentum"], affine=False,
                                 dtype=torch.float64)
    layer.running_mean.copy_(torch.from_numpy(keras["moving_mean"]))
    layer.running_var.copy_(torch.from_numpy(keras["moving_variance"]))
    return layer


def keras_in_place(keras):
    keras["moving_variance"] += keras["epsilon"]
    return keras_solution(keras, epsilon=0.0, moving_variance=keras["moving_variance"])


@pytest.mark.parametrize("hostile, hint", [
    (None, "still None"),
    (stub, "not written yet"),
    (lambda keras: None, "returned None"),
    (lambda keras: keras["gamma"], "BatchNorm1d"),
    (lambda keras: torch.nn.Identity(), "BatchNorm1d"),
    (lambda keras: torch.nn.BatchNorm1d(4, track_running_stats=False), "BatchNorm1d that tracks"),
    (lambda keras: torch.nn.Sequential(keras_solution(keras)), "BatchNorm1d"),
    (lambda keras: torch.nn.BatchNorm1d(4, dtype=torch.float64), "check which of the layer's parameters"),
    (lambda keras: keras_solution(keras, gamma=keras["gamma"] * np.nan), "NaN"),
    (lambda keras: 1 / 0, "raised ZeroDivisionError"),
    (lambda keras: torch.nn.BatchNorm1d(3, dtype=torch.float64), "raised RuntimeError"),
    (keras_without_affine, "check which of the layer's parameters"),
    (keras_in_place, "changed its argument 1 (dict) in place"),
    (lambda keras: (keras.update(epsilon=1e-5), keras_solution(keras))[1], "changed its argument 1 (dict)"),
    (keras_solution(ch05.keras_layer()), "itself"),
])
def test_keras_to_torch_refuses_hostile_answers(hostile, hint):
    refused(ch05.check_keras_to_torch, hostile, hint)


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


@pytest.mark.parametrize("answer, hint", [
    ("shorter", "explorer"), ("about the same", "explorer"), ("about 100 times longer", "explorer"),
    (None, "still None"), ("longer", "Answer with one of"), (10, "Answer with one of"),
    (float("nan"), "Answer with one of"), (np.float64(10.0), "Answer with one of"),
])
def test_lag_refuses(answer, hint):
    refused(ch05.check_lag, answer, hint)


def test_best_momentum(capsys):
    assert ch05.best_momentum(0.6) < 0.8 * ch05.best_momentum(0.3)
    ch05.check_best_momentum("smaller")
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("answer, hint", [
    ("larger", "explorer"), ("the same", "explorer"), (None, "still None"), ("lower", "Answer with one of"),
    (0.05, "Answer with one of"), (float("nan"), "Answer with one of"), (["smaller"], "Answer with one of"),
])
def test_best_momentum_refuses(answer, hint):
    refused(ch05.check_best_momentum, answer, hint)
