"""The exercise checks of notebook 02 accept the solutions and reject blanks and typical mistakes with a hint."""

import pytest

from bnlib.course.ch02 import exercises as ch02
from bnlib.course.checks import NotYet


def solution(u, target, b):
    x = u + b
    return ((x - x.mean() - target) / len(x)).sum()


def test_bias_gradient_accepts_the_solution(capsys):
    assert ch02.check_bias_gradient(solution) is None
    assert capsys.readouterr().out.startswith("Correct.")


@pytest.mark.parametrize("wrong, hint", [
    (lambda u, t, b: (u + b - (u + b).mean() - t).sum(), "N times too large"),
    (lambda u, t, b: -solution(u, t, b), "wrong sign"),
    (lambda u, t, b: 0.0 * b, "Zero is the gradient with the mean inside"),
    (lambda u, t, b: (u + b - t).mean(), "Not autograd"),
    (lambda u, t, b: u + b, "one number"),
    (lambda u, t, b: None, "returned None"),
    (None, "Fill in"),
])
def test_bias_gradient_names_the_mistake(wrong, hint):
    with pytest.raises(NotYet, match=hint):
        ch02.check_bias_gradient(wrong)


def test_center_inside_gradient():
    ch02.check_center_inside_gradient(lambda x: x - x.mean())
    for wrong, hint in [(lambda x: x - x.mean().detach(), "hidden from autograd"),
                        (lambda x: x - x.mean().item(), "hidden from autograd"),
                        (lambda x: x, "mean 0"),
                        (lambda x: None, "NoneType"),
                        (lambda x: x.detach().numpy() - x.detach().numpy().mean(), "ndarray"),
                        (lambda x: x.unsqueeze(0) - x.mean(), "shape of x"),
                        (None, "Fill in")]:
        with pytest.raises(NotYet, match=hint):
            ch02.check_center_inside_gradient(wrong)


def test_center_stub_is_refused():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(NotYet, match="not written yet"):
        ch02.check_center_inside_gradient(stub)


def test_doubled_learning_rate_leaves_the_loss_where_it_was():
    assert ch02.doubled_lr_prediction() == "the same"
    ch02.check_doubled_lr_prediction("the same")
    for wrong in ("lower", "higher", None, "same"):
        with pytest.raises(NotYet):
            ch02.check_doubled_lr_prediction(wrong)


@pytest.mark.slow  # reads (or computes) the recorded MNIST run
def test_layer_1_drifts_more_than_layer_3():
    assert ch02.layer_prediction() == "more"
    ch02.check_layer_prediction("more")
    for wrong in ("less", "about the same", None):
        with pytest.raises(NotYet):
            ch02.check_layer_prediction(wrong)
