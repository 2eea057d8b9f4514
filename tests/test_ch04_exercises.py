"""The exercise checks of notebook 04 accept the solutions and reject wrong answers with a hint that names
the mistake."""

import numpy as np
import pytest
import torch

from bnlib.course.ch04 import exercises as ch04
from bnlib.course.checks import NotYet


def identity_solution(running_mean, running_var, eps):
    return np.sqrt(running_var + eps), running_mean


def fold_solution(linear, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = torch.nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(scale[:, None] * linear.weight)
        folded.bias.copy_(scale * (linear.bias - bn.running_mean) + bn.bias)
    return folded


def stub(*args):
    raise NotImplementedError()


def not_yet(check, answer):
    with pytest.raises(NotYet) as raised:
        check(answer)
    return str(raised.value)


def test_eval_identity(capsys):
    ch04.check_eval_identity(identity_solution)
    assert capsys.readouterr().out.startswith("Correct.")
    assert "eps" in not_yet(ch04.check_eval_identity, lambda mean, var, eps: (np.sqrt(var), mean))
    assert "swapped" in not_yet(ch04.check_eval_identity, lambda mean, var, eps: (mean, np.sqrt(var + eps)))
    assert "variance" in not_yet(ch04.check_eval_identity, lambda mean, var, eps: (var + eps, mean))
    assert "Which gamma" in not_yet(ch04.check_eval_identity, lambda mean, var, eps: (np.ones(3), np.zeros(3)))
    assert "pair" in not_yet(ch04.check_eval_identity, lambda mean, var, eps: np.ones(3))
    assert "None" in not_yet(ch04.check_eval_identity, None)
    assert "not written yet" in not_yet(ch04.check_eval_identity, stub)


def test_the_identity_holds_for_any_batch_only_with_fixed_statistics():
    """What exercise 1 corrects: gamma = sqrt(var + eps), beta = mu taken from one batch give back that batch
    in training mode, but not another batch; in eval mode (fixed statistics) they give back every input."""
    generator = torch.Generator().manual_seed(0)
    first, second = (5 + 3 * torch.randn(64, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    layer = torch.nn.BatchNorm1d(4, momentum=1.0, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.sqrt(first.var(0, correction=0) + layer.eps))
        layer.bias.copy_(first.mean(0))
        assert (layer(first) - first).abs().max() < 1e-12                       # and the running stats = first's
        assert (layer(second) - second).abs().max() > 0.1                       # batch statistics of another batch
        layer.running_var.copy_(first.var(0, correction=0))
        layer.running_mean.copy_(first.mean(0))
        layer.eval()
        assert (layer(second) - second).abs().max() < 1e-12


def test_fold_linear_bn(capsys):
    ch04.check_fold_linear_bn(fold_solution)
    assert capsys.readouterr().out.startswith("Correct.")

    def forgetting(which):
        def fold(linear, bn):
            folded = fold_solution(linear, bn)
            with torch.no_grad():
                if which == "bias":
                    folded.bias.sub_(bn.weight / torch.sqrt(bn.running_var + bn.eps) * linear.bias)
                else:
                    ratio = torch.sqrt((bn.running_var + bn.eps) / bn.running_var)
                    folded.weight.mul_(ratio[:, None])
                    folded.bias.copy_(ratio * (folded.bias - bn.bias) + bn.bias)
            return folded
        return fold

    assert "own bias" in not_yet(ch04.check_fold_linear_bn, forgetting("bias"))
    assert "eps" in not_yet(ch04.check_fold_linear_bn, forgetting("eps"))
    assert "row k" in not_yet(ch04.check_fold_linear_bn, lambda linear, bn: linear)
    assert "torch.nn.Linear" in not_yet(ch04.check_fold_linear_bn, lambda linear, bn: 3.0)
    assert "None" in not_yet(ch04.check_fold_linear_bn, lambda linear, bn: None)
    assert "function fold_linear_bn itself" in not_yet(ch04.check_fold_linear_bn, torch.nn.Linear(6, 3))
    assert "None" in not_yet(ch04.check_fold_linear_bn, None)


def test_scaled_gradient(capsys):
    assert ch04.measured_gradient_factor() == pytest.approx(1 / ch04.SCALE, rel=1e-5)
    ch04.check_scaled_gradient("4 times smaller")
    assert capsys.readouterr().out.startswith("Correct.")
    for wrong in ("4 times larger", "the same", "16 times smaller"):
        assert "chain rule" in not_yet(ch04.check_scaled_gradient, wrong)
    assert "Answer with one of" in not_yet(ch04.check_scaled_gradient, "smaller")
    assert "None" in not_yet(ch04.check_scaled_gradient, None)


def test_saturation(capsys):
    """A shift of 5 saturates most of the unit, a scale of 4 about a quarter (the explorer's sample)."""
    assert ch04.saturated_fraction(1.0, 5.0) > 0.7
    assert 0.15 < ch04.saturated_fraction(4.0, 0.0) < 0.4
    ch04.check_saturation("gamma=1, beta=5")
    assert capsys.readouterr().out.startswith("Correct.")
    assert "explorer" in not_yet(ch04.check_saturation, "gamma=4, beta=0")
    assert "explorer" in not_yet(ch04.check_saturation, "about the same")
    assert "Answer with one of" in not_yet(ch04.check_saturation, "beta")
