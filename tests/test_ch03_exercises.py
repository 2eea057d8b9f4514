"""The exercise checks of notebook 03 accept the solutions and reject blanks and typical mistakes with a hint."""

import numpy as np
import pytest
import torch
from exercise_checks import UpdatesInEval, refused, stub

from bnlib.course.ch03.simple_layer import BatchNorm1d
from bnlib.course.ch03 import exercises as ch03
from bnlib.course.checks import NotYet
from bnlib.normalization import EPS


def eval_solution(x, gamma, beta, running_mean, running_var, eps=EPS):
    return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta


def eval_by_folding(x, gamma, beta, running_mean, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    return x * scale + (beta - running_mean * scale)


def eval_by_loops(x, gamma, beta, running_mean, running_var, eps=EPS):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = gamma[c] * (x[i, c] - running_mean[c]) / (running_var[c] + eps) ** 0.5 + beta[c]
    return out


def eval_in_torch(x, gamma, beta, running_mean, running_var, eps=EPS):
    t = [torch.from_numpy(a) for a in (x, running_mean, running_var, gamma, beta)]
    return torch.nn.functional.batch_norm(*t, training=False, eps=eps)


def eval_through_the_module(x, gamma, beta, running_mean, running_var, eps=EPS):
    module = BatchNorm1d(x.shape[1], eps=eps).double().eval()
    module.load_state_dict({"weight": torch.from_numpy(gamma), "bias": torch.from_numpy(beta),
                            "running_mean": torch.from_numpy(running_mean), "running_var": torch.from_numpy(running_var),
                            "num_batches_tracked": torch.tensor(0)})
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("answer", [eval_solution, eval_by_folding, eval_by_loops, eval_in_torch,
                                    eval_through_the_module])
def test_eval_forward_accepts_every_correct_form(answer, capsys):
    assert ch03.check_eval_forward(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


def normalized(x, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, x.mean(0), x.var(0), eps) + b, "batch's own mean and var"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, x.mean(0), rv, eps) + b, "batch's own mean"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, rm, x.var(0), eps) + b, "batch's own variance"),
    (lambda x, g, b, rm, rv, eps=EPS: g * (x - rm) / (rv + eps) + b, "divided by the variance"),
    (lambda x, g, b, rm, rv, eps=EPS: g * (x - rm) / (np.sqrt(rv) + eps) + b, "inside the square root"),
    (lambda x, g, b, rm, rv, eps=EPS: normalized(x, rm, rv, eps), "gamma"),
    (lambda x, g, b, rm, rv, eps=EPS: g * (normalized(x, rm, rv, eps) + b), "shift by gamma"),
    (lambda x, g, b, rm, rv, eps=EPS: b * normalized(x, rm, rv, eps) + g, "swapped"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, rv, rm, eps) + b, "running_mean and running_var are swapped"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, rm, rv, EPS) + b, "ignored the eps argument"),
    (lambda x, g, b, rm, rv, eps=1e-3: g * normalized(x, rm, rv, eps) + b, "default eps"),
    (lambda x, g, b, rm, rv, eps=0.0: g * normalized(x, rm, rv, eps) + b, "default eps"),
    (lambda x, g, b, rm, rv, eps=EPS: (g * normalized(x, rm, rv, eps) + b).astype(np.float32), "float32"),
    (lambda x, g, b, rm, rv: g * normalized(x, rm, rv, EPS) + b, "raised TypeError"),
])
def test_eval_forward_names_the_mistake(wrong, hint):
    refused(ch03.check_eval_forward, wrong, hint)


def eval_in_place(x, gamma, beta, running_mean, running_var, eps=EPS):
    x -= running_mean
    x /= np.sqrt(running_var + eps)
    return gamma * x + beta


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (stub, "not written yet"),
    (lambda x, g, b, rm, rv, eps=EPS: None, "returned None"),
    (lambda x, g, b, rm, rv, eps=EPS: x, "Compare with the eval branch"),
    (lambda x, g, b, rm, rv, eps=EPS: np.zeros_like(x), "Compare with the eval branch"),
    (lambda x, g, b, rm, rv, eps=EPS: x * np.nan, "NaN"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, rm, rv - 1, eps) + b, "NaN"),
    (lambda x, g, b, rm, rv, eps=EPS: g * normalized(x, rm, rv, eps).T, "shape"),
    (lambda x, g, b, rm, rv, eps=EPS: (g * normalized(x, rm, rv, eps) + b)[:, 0], "shape"),
    (eval_in_place, "changed its argument 1 (ndarray) in place"),
    (lambda x, g, b, rm, rv, eps=EPS: rv.__imul__(0) + x, "changed its argument 5"),
    (lambda x, g, b, rm, rv, eps=EPS: {"out": x}, "return numbers"),
    (eval_solution(*ch03.eval_case()), "Pass your function itself"),
])
def test_eval_forward_refuses_hostile_answers(hostile, hint):
    refused(ch03.check_eval_forward, hostile, hint)


class BatchNorm2dByReshape(BatchNorm1d):
    def forward(self, x):
        n, c, h, w = x.shape
        return super().forward(x.permute(0, 2, 3, 1).reshape(-1, c)).reshape(n, h, w, c).permute(0, 3, 1, 2)


class ByTranspose(BatchNorm1d):
    def forward(self, x):
        n, c, h, w = x.shape
        return super().forward(x.transpose(1, 3).reshape(-1, c)).reshape(n, w, h, c).transpose(1, 3)


class ByFlatten(BatchNorm1d):
    def forward(self, x):
        rows = x.flatten(2).transpose(1, 2).flatten(0, 1)  # (N, C, HW) -> (N, HW, C) -> (NHW, C)
        return super().forward(rows).unflatten(0, (x.shape[0], -1)).transpose(1, 2).reshape(x.shape)


class ByMovedim(BatchNorm1d):
    def forward(self, x):
        last = torch.movedim(x, 1, -1)
        return torch.movedim(super().forward(last.reshape(-1, x.shape[1])).reshape(last.shape), -1, 1)


@pytest.mark.parametrize("answer", [BatchNorm2dByReshape, ByTranspose, ByFlatten, ByMovedim])
def test_batchnorm2d_accepts_every_correct_form(answer, capsys):
    assert ch03.check_batchnorm2d(answer) is None
    assert capsys.readouterr().out.startswith("Correct.")


class TwiceUpdated(BatchNorm2dByReshape):
    def forward(self, x):
        super().forward(x)
        return super().forward(x)


class UpdatedInEval(UpdatesInEval, BatchNorm2dByReshape):
    pass


class AlwaysBatchStatistics(BatchNorm2dByReshape):
    def forward(self, x):
        training, self.training = self.training, True
        out = super().forward(x)
        self.training = training
        return out


class InFloat32(BatchNorm1d):
    def forward(self, x):
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c).float()
        out = torch.nn.functional.batch_norm(rows, None, None, self.weight.float(), self.bias.float(), True)
        with torch.no_grad():
            super().forward(x.permute(0, 2, 3, 1).reshape(-1, c))
        return out.double().reshape(n, h, w, c).permute(0, 3, 1, 2)


class DetachedStatistics(BatchNorm1d):
    def forward(self, x):
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)
        if not self.training:
            return super().forward(rows).reshape(n, h, w, c).permute(0, 3, 1, 2)
        super().forward(rows)
        x_hat = (rows - rows.mean(0).detach()) / (rows.var(0, unbiased=False).detach() + self.eps).sqrt()
        return (self.weight * x_hat + self.bias).reshape(n, h, w, c).permute(0, 3, 1, 2)


@pytest.mark.parametrize("wrong, hint", [
    (ch03.WithoutPermute, "permute"),
    (ch03.NotPermutedBack, "not turned back"),
    (TwiceUpdated, "running_mean"),
    (UpdatedInEval, "running_mean"),
    (AlwaysBatchStatistics, "eval output"),
    (InFloat32, "float32"),
    (DetachedStatistics, "input gradient"),
    (BatchNorm1d, "raised"),
])
def test_batchnorm2d_names_the_mistake(wrong, hint):
    refused(ch03.check_batchnorm2d, wrong, hint)


class Blank(BatchNorm1d):
    def forward(self, x):
        raise NotImplementedError()


class WithoutParameters(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.norm(x)


class GradientCut(BatchNorm2dByReshape):
    def forward(self, x):
        return super().forward(x).detach().requires_grad_()


class NaNOutput(BatchNorm2dByReshape):
    def forward(self, x):
        return super().forward(x) * float("nan")


class EditsItsInputInEval(BatchNorm2dByReshape):
    def forward(self, x):
        out = super().forward(x)
        if not self.training:
            x.mul_(0)
        return out


@pytest.mark.parametrize("hostile, hint", [
    (None, "Fill in"),
    (Blank, "not written yet"),
    (lambda channels: torch.nn.Identity(), "lacks weight, bias, running_mean, running_var"),
    (WithoutParameters, "lacks weight"),
    (lambda channels: None, "returned None"),
    (BatchNorm2dByReshape(4), "Pass your class itself"),
    (GradientCut, "input gradient"),
    (NaNOutput, "outputs differ"),
    (EditsItsInputInEval, "changed its input x in place"),
])
def test_batchnorm2d_refuses_hostile_answers(hostile, hint):
    refused(ch03.check_batchnorm2d, hostile, hint)


def test_the_mean_path_bug_fails_the_sum_check():
    assert ch03.sum_check_verdict() == "fails"
    ch03.check_sum_check_prediction("fails")
    for wrong in ("passes", None, "maybe"):
        with pytest.raises(NotYet):
            ch03.check_sum_check_prediction(wrong)


def test_the_mean_path_bug_is_a_real_bug():
    x, gamma, beta, *_ = ch03.eval_case()
    from bnlib import batch_norm_backward, batch_norm_forward
    cache = batch_norm_forward(x, gamma, beta)[1]
    dout = np.random.default_rng(0).normal(size=x.shape)
    assert np.abs(ch03.forgetting_the_mean(dout, cache) - batch_norm_backward(dout, cache)[0]).max() > 0.1


def test_coupling_prediction():
    assert ch03.coupling_prediction() == "less"
    ch03.check_coupling_prediction("less")
    for wrong in ("more", "the same", None, "smaller"):
        with pytest.raises(NotYet):
            ch03.check_coupling_prediction(wrong)


def test_a_learners_module_error_is_chained():
    class Broken(BatchNorm1d):
        def forward(self, x):
            return torch.cat([x, x])

    with pytest.raises(NotYet) as info:
        ch03.check_batchnorm2d(Broken)
    assert info.value.__cause__ is not None
