"""What every exercise check shares (``bnlib.course.checks``): NaN is never close, an answer that edits its input
is refused and cannot spoil the reference, a composition is not one layer, an exception the answer provokes is a
hint, and a learner sees the hint in one or two lines."""

import math

import numpy as np
import pytest
import torch
from exercise_checks import refused, stub
from torch import nn

from bnlib.course import checks
from bnlib.course.checks import NotYet


@pytest.mark.parametrize("a, b", [([1.0, np.nan], [1.0, 2.0]), ([np.nan], [np.nan]), ([1.0, 2.0], [1.0, np.nan])])
def test_nan_is_never_close_and_its_difference_is_infinite(a, b):
    assert not checks.close(a, b)
    assert checks.largest_difference(a, b) == math.inf
    assert max(0.0, float("nan")) == 0.0  # the trap a max over differences falls into


def test_shapes_must_agree_and_differences_are_measured_entry_by_entry():
    assert checks.close([1.0, 2.0], [1.0, 2.0 + 1e-13])
    assert not checks.close([1.0, 2.0], [[1.0, 2.0]]) and checks.largest_difference([1.0], [1.0, 1.0]) == math.inf
    assert checks.largest_difference([1.0, 2.0], [1.5, 2.0]) == 0.5
    assert not checks.close([1.0], [1.1], rtol=0.01, atol=0.0) and checks.close([1.0], [1.1], rtol=0.1, atol=0.0)


def test_an_answer_with_nan_or_inf_is_refused():
    refused(lambda f: checks.call(f, np.ones(3)), lambda x: x * np.nan, "NaN or inf (3 of 3 values)")
    refused(lambda f: checks.call(f, np.ones(3)), lambda x: np.sqrt(x - 2), "NaN or inf")
    refused(lambda f: checks.call(f, np.ones(3)), lambda x: "three", "return numbers")


@pytest.mark.parametrize("edit", [lambda x: x.__isub__(x.mean()), lambda x: x.fill(0.0) or x])
def test_an_answer_that_edits_its_input_is_refused_and_the_checks_data_stays_intact(edit):
    data = np.arange(4.0)
    refused(lambda f: checks.call(f, data), edit, "changed its argument 1 (ndarray) in place")
    assert data.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_tensors_and_modules_edited_in_place_are_refused_unless_allowed():
    x, layer = torch.ones(3), nn.Linear(2, 2)
    refused(lambda f: checks.call(f, x), lambda t: t.mul_(0), "changed its argument 1 (Tensor)")
    refused(lambda f: checks.call(f, layer), zero_the_weight, "argument 1 (Linear)")
    assert x.tolist() == [1.0, 1.0, 1.0] and layer.weight.abs().sum() > 0
    checks.call(zero_the_weight, layer, may_change=(0,))  # recalibration edits its model
    assert layer.weight.abs().sum() == 0


@pytest.mark.parametrize("edit", [lambda d: d["gamma"].__imul__(2), lambda d: d.update(momentum=0.5),
                                  lambda d: d.pop("gamma"), lambda d: d["layers"][0].mul_(0)])
def test_an_answer_that_edits_a_dict_it_is_given_is_refused(edit):
    settings = {"gamma": np.ones(2), "momentum": 0.99, "layers": [torch.ones(2)]}
    checks.call(lambda d: 1.0, settings)
    refused(lambda f: checks.call(f, settings), lambda d: (edit(d), 1.0)[1], "changed its argument 1 (dict) in place")
    assert settings["momentum"] == 0.99 and settings["gamma"].tolist() == [1.0, 1.0]


def zero_the_weight(module):
    module.weight.data.zero_()
    return 1.0


def test_missing_unwritten_raising_and_empty_answers_get_their_hint():
    refused(lambda f: checks.call(f, 1.0), None, "still None")
    refused(lambda f: checks.call(f, 1.0), stub, "not written yet")
    refused(lambda f: checks.call(f, 1.0), 3.0, "not its result")
    refused(lambda f: checks.call(f, 1.0), lambda x: None, "returned None")
    with pytest.raises(NotYet, match="raised ZeroDivisionError") as refusal:
        checks.call(lambda x: 1 / 0, 1.0)
    assert isinstance(refusal.value.__cause__, ZeroDivisionError)


def test_a_composition_is_not_one_layer():
    linear = nn.Linear(2, 2)
    assert checks.one_layer(linear, nn.Linear, "the folded Linear") is linear
    refused(lambda answer: checks.one_layer(answer, nn.Linear, "the folded Linear"),
            nn.Sequential(linear, nn.BatchNorm1d(2)), "not Sequential")
    refused(lambda answer: checks.one_layer(answer, nn.Linear, "the folded Linear"), lambda x: x, "not function")
    refused(lambda answer: checks.one_layer(answer, nn.Conv2d, "the folded conv"), nn.Conv1d(1, 1, 1), "Conv2d")


def test_a_fold_runs_on_copies_returns_one_layer_and_hears_of_a_missing_bias():
    linear, bn = nn.Linear(2, 2, bias=False).eval(), nn.BatchNorm1d(2).eval()
    fold = lambda what: (lambda answer: checks.folded_layer(answer, linear, bn, nn.Linear, what))  # noqa: E731
    assert type(fold("the Linear")(lambda linear, bn: nn.Linear(2, 2))) is nn.Linear
    refused(fold("the Linear"), lambda linear, bn: nn.Sequential(linear, bn), "not Sequential")
    refused(fold("the Linear"), lambda linear, bn: linear.bias * 2, "raised TypeError", "its .bias is None")
    refused(fold("the Linear"), lambda linear, bn: (linear.weight.data.zero_(), linear)[1], "argument 1 (Linear)")
    refused(fold("the Linear"), nn.Linear(2, 2), "Pass your function itself")
    assert linear.weight.abs().sum() > 0


def test_a_float32_layer_runs_in_its_dtype_and_gets_the_precision_hint():
    layer, x = nn.Linear(3, 2).double(), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = layer(x).numpy()
    assert checks.close(checks.layer_output(layer, x), expected)
    refused(lambda answer: checks.check_close(checks.layer_output(answer, x), expected, "", "the formula"),
            layer.float(), "float32")


def test_the_distance_to_a_uniform_distribution_is_small_for_its_draws_and_large_for_others():
    rng = np.random.default_rng(0)
    assert checks.uniform_distance(rng.uniform(-2, 3, 10_000), -2, 3) < 0.02  # DKW: above 0.02 with p < 1e-3
    assert checks.uniform_distance(np.linspace(0, 1, 101), 0, 1) < 0.011
    assert checks.uniform_distance(rng.uniform(0, 0.5, 1000), 0, 1) > 0.45
    assert checks.uniform_distance(np.log(rng.uniform(0.5, 2, 10_000)), -np.log(2), np.log(2)) > 0.15


def test_an_exception_the_answer_provokes_in_a_check_is_a_hint():
    @checks.check
    def check_weight(module):
        return module.weight.grad.sum()  # a module without weight: AttributeError; a None grad: AttributeError

    refused(check_weight, nn.Identity(), "could not use your answer: AttributeError")
    with pytest.raises(NotYet, match="already a hint"):
        checks.check(lambda: checks.not_yet("already a hint"))()


def test_the_learner_sees_the_hint_and_the_line_of_their_code_that_failed():
    def learners_function(x):
        return x.no_such_method()

    with pytest.raises(NotYet) as refusal:
        checks.call(learners_function, np.ones(2))
    lines = refusal.value._render_traceback_()
    assert len(lines) == 2 and "Not yet. Your function raised AttributeError" in lines[0]
    assert lines[1].startswith("In your code, line") and "x.no_such_method()" in lines[1]
    with pytest.raises(NotYet) as refusal:
        checks.not_yet("a hint")
    assert refusal.value._render_traceback_() == ["\x1b[1;31mNot yet. a hint\x1b[0m"]


def test_a_prediction_must_be_one_of_the_choices_and_a_value_a_finite_number():
    refused(lambda answer: checks.check_choice(answer, "more", ("more", "less"), "", "hint"), ["more"], "one of")
    refused(lambda answer: checks.check_value(answer, 1.0, "", [], "hint"), float("nan"), "single finite number")
    refused(lambda answer: checks.check_value(answer, 1.0, "", [(2.0, "the mistake")], "hint"), 2.0, "the mistake")
    checks.check_value(1.0 + 1e-9, 1.0, "praise", [], "hint")


def test_tensors_and_none_are_compared_by_their_values():
    tensor = torch.ones(2, requires_grad=True) * 2
    assert checks.close(tensor, [2.0, 2.0]) and checks.largest_difference(tensor, np.array([2.0, 1.5])) == 0.5
    assert checks.largest_difference(None, [1.0]) == math.inf and not checks.close(None, None)


def test_a_tensor_inside_a_graph_is_passed_itself_and_an_in_place_edit_of_it_is_refused():
    leaf = torch.ones(3, dtype=torch.float64, requires_grad=True)
    x = leaf * 2
    assert checks.run(lambda z: z.grad_fn is x.grad_fn and z is x, x)
    refused(lambda f: checks.run(f, x), lambda z: z.sub_(z.mean()), "changed its argument 1 (Tensor) in place")


def judge(answer, mistakes=()):
    checks.check_close(answer, np.array([1.0, 2.0, 3.0]), "fine", "the generic hint",
                       mistakes=mistakes + ((np.array([2.0, 4.0, 6.0]), "doubled"), (lambda: np.zeros(3), "zero")))


def test_check_close_passes_the_expected_and_names_mistakes_precision_and_shape(capsys):
    judge(np.array([1.0, 2.0, 3.0]))
    assert capsys.readouterr().out == "Correct. fine\n"
    refused(judge, np.array([2.0, 4.0, 6.0]), "doubled")
    refused(judge, np.zeros(3), "zero")
    refused(judge, np.array([1.0, 2.0, 3.0], dtype=np.float32) + np.float32(1e-6), "float32")
    refused(judge, np.array([1.0, 2.0, 3.5]), "the generic hint")
    refused(judge, np.array([1.0, 2.0]), "shape (3,)")
    refused(judge, np.array([[1.0, 2.0, 3.0]]), "shape (3,)")


@pytest.mark.parametrize("edit", [lambda batches: batches[0].mul_(0), lambda batches: batches.pop(),
                                  lambda batches: batches[0].__setitem__(0, 5.0)])
def test_an_edit_inside_a_list_of_inputs_is_refused(edit):
    batches = [torch.ones(2, 3), torch.zeros(2, 3)]
    refused(lambda f: checks.run(f, batches), lambda b: (edit(b), 1.0)[1], "changed its argument 1 (list) in place")
    assert torch.equal(batches[1], torch.zeros(2, 3)) and len(batches) == 2
    assert checks.run(lambda b: sum(batch.sum() for batch in b), batches) == 6.0
