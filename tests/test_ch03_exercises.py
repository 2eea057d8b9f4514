"""The exercise checks of notebook 03 accept the solutions and reject blanks and typical mistakes with a hint."""

import numpy as np
import pytest
import torch

from bnlib.course.ch03.simple_layer import BatchNorm1d
from bnlib.course.ch03 import exercises as ch03
from bnlib.course.checks import NotYet


def eval_solution(x, gamma, beta, running_mean, running_var, eps=1e-5):
    return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta


def test_eval_forward_accepts_the_solution(capsys):
    assert ch03.check_eval_forward(eval_solution) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, g, b, rm, rv, eps=1e-5: g * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + b, "batch's own"),
    (lambda x, g, b, rm, rv, eps=1e-5: g * (x - rm) / (rv + eps) + b, "square root"),
    (lambda x, g, b, rm, rv, eps=1e-5: g * (x - rm) / (np.sqrt(rv) + eps) + b, "inside the square root"),
    (lambda x, g, b, rm, rv, eps=1e-5: (x - rm) / np.sqrt(rv + eps), "gamma"),
    (lambda x, g, b, rm, rv: g * (x - rm) / np.sqrt(rv + 1e-5) + b, "raised TypeError"),
    (lambda x, g, b, rm, rv, eps=1e-5: None, "returned None"),
    (None, "Fill in"),
])
def test_eval_forward_names_the_mistake(wrong, hint):
    with pytest.raises(NotYet, match=hint):
        ch03.check_eval_forward(wrong)


def test_eval_forward_blank_stub_is_refused():
    def stub(x, gamma, beta, running_mean, running_var, eps=1e-5):
        raise NotImplementedError()

    with pytest.raises(NotYet, match="not written yet"):
        ch03.check_eval_forward(stub)


class BatchNorm2dByReshape(BatchNorm1d):
    def forward(self, x):
        n, c, h, w = x.shape
        return super().forward(x.permute(0, 2, 3, 1).reshape(-1, c)).reshape(n, h, w, c).permute(0, 3, 1, 2)


class WithoutPermute(BatchNorm1d):
    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[1])).reshape(x.shape)


class TwiceUpdated(BatchNorm2dByReshape):
    def forward(self, x):
        super().forward(x)
        return super().forward(x)


class Blank(BatchNorm1d):
    def forward(self, x):
        raise NotImplementedError()


def test_batchnorm2d_accepts_the_solution(capsys):
    assert ch03.check_batchnorm2d(BatchNorm2dByReshape) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [(WithoutPermute, "permute"), (TwiceUpdated, "running_mean"),
                                         (Blank, "not written yet"), (None, "Fill in"), (BatchNorm1d, "raised")])
def test_batchnorm2d_names_the_mistake(wrong, hint):
    with pytest.raises(NotYet, match=hint):
        ch03.check_batchnorm2d(wrong)


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
