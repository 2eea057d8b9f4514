"""Checks for notebook 03, batch norm from scratch: eval mode in numpy, BatchNorm2d out of the notebook's
BatchNorm1d, and two predictions (what the sum check catches, how the batch size weighs on the coupling)."""

import numpy as np
import torch

from bnlib.course.ch03 import batch_coupling
from bnlib.course.ch03.against_torch import side_by_side
from bnlib.course.ch03.step_by_step import TINY_BATCH
from bnlib.course.ch03.simple_layer import BatchNorm1d
from bnlib.course.checks import PRECISION, UNANSWERED, call, check, check_choice, check_close, not_yet, run, verdict
from bnlib.gradient_check import TOLERANCE, numeric_gradient, upstream_gradient
from bnlib.normalization import EPS, batch_norm_forward

COUPLING_MOVE, SMALL_BATCH, LARGE_BATCH = 8.0, 8, 128
EVAL_EPS = 0.5  # an eps far from the default, which the running variances (down to 0.01) cannot hide


def eval_case(seed=5):
    """A batch, gamma, beta and running statistics unlike the batch's own: (8, 3) and (3,) arrays."""
    rng = np.random.default_rng(seed)
    x = rng.normal([2.0, -1.0, 10.0], [1.0, 3.0, 0.5], size=(8, 3))
    return x, rng.uniform(0.5, 2, 3), rng.normal(size=3), np.array([1.0, 0.5, 9.0]), np.array([2.0, 4.0, 0.01])


def eval_formula(x, gamma, beta, mean, var, eps):
    """Batch norm with the statistics ``mean`` and ``var``: gamma (x - mean) / sqrt(var + eps) + beta."""
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def eval_mistakes(x, gamma, beta, running_mean, running_var, eps, given):
    """(what a common mistake returns for eval-mode batch norm with this ``eps``; its hint). ``given``: whether
    the check passed eps, or left the default."""
    other_eps = [(eps_, "You ignored the eps argument: use the eps you are given, not a fixed value.")
                 for eps_ in (EPS, 1e-3, 0.0) if given and eps_ != eps]
    other_eps += [(eps_, f"Keep the default eps=EPS ({EPS:g}), torch's; yours is {eps_:g}.")
                  for eps_ in (1e-3, 1e-8, 0.0) if not given]
    return [(eval_formula(x, gamma, beta, running_mean, running_var, eps_), hint) for eps_, hint in other_eps] + [
        (batch_norm_forward(x, gamma, beta, eps)[0],
         "You normalized with the batch's own mean and variance: eval mode uses the running statistics."),
        (eval_formula(x, gamma, beta, x.mean(axis=0), running_var, eps),
         "You centered with the batch's own mean: eval mode uses running_mean."),
        (eval_formula(x, gamma, beta, running_mean, x.var(axis=0), eps),
         "You scaled with the batch's own variance: eval mode uses running_var."),
        (gamma * (x - running_mean) / (running_var + eps) + beta,
         "You divided by the variance: divide by the square root of (running_var + eps)."),
        (gamma * (x - running_mean) / (np.sqrt(running_var) + eps) + beta,
         "eps goes inside the square root: sqrt(running_var + eps)."),
        ((x - running_mean) / np.sqrt(running_var + eps),
         "Normalized, but not scaled and shifted: multiply by gamma and add beta."),
        (gamma * ((x - running_mean) / np.sqrt(running_var + eps) + beta),
         "You multiplied the shift by gamma too: scale the normalized x by gamma, then add beta."),
        (eval_formula(x, beta, gamma, running_mean, running_var, eps),
         "gamma and beta are swapped: gamma scales, beta shifts (mind the order of the arguments)."),
        (eval_formula(x, gamma, beta, running_var, running_mean, eps),
         "running_mean and running_var are swapped: mind the order of the arguments."),
    ]


@check
def check_eval_forward(batch_norm_eval):
    """``batch_norm_eval(x, gamma, beta, running_mean, running_var, eps)`` against torch's eval-mode batch norm,
    called with its default eps and with another one."""
    __tracebackhide__ = True  # noqa: F841
    case = eval_case()
    for eps in (None, EVAL_EPS):
        answer = call(batch_norm_eval, *case, *([] if eps is None else [eps]))
        used = EPS if eps is None else eps
        tensors = [torch.from_numpy(a) for a in case]
        expected = torch.nn.functional.batch_norm(tensors[0], *tensors[3:], *tensors[1:3], training=False,
                                                  eps=used).numpy()
        check_close(answer, expected, None if eps is None else
                    "Your eval-mode batch norm equals torch's (F.batch_norm with training=False), for the default "
                    "eps and another one.",
                    "Compare with the eval branch of the notebook's BatchNorm1d: (x - running_mean) / "
                    "sqrt(running_var + eps), then gamma and beta.",
                    eval_mistakes(*case, used, eps is not None), rtol=1e-10)


class WithoutPermute(BatchNorm1d):
    """The usual mistake: x.reshape(-1, C) straight from (N, C, H, W), which mixes the channels."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[1])).reshape(x.shape)


class NotPermutedBack(BatchNorm1d):
    """Permuted on the way in, only reshaped on the way out: the pixels land in the wrong places."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])).reshape(x.shape)


LAYOUT_MISTAKES = [
    (WithoutPermute, "Each channel's statistics are over N, H and W: x.reshape(-1, C) alone mixes the channels; "
                     "move the channels last (permute) before reshaping to (N*H*W, C)."),
    (NotPermutedBack, "The statistics are right, but the result is not turned back: it is (N*H*W, C), one row per "
                      "pixel, so undo both steps, the reshape and then the permute."),
]
MODULE_PARTS = ("weight", "bias", "running_mean", "running_var")


def fresh(module_class):
    """``module_class(4)`` in float64, refused with a hint when it lacks batch norm's parameters and buffers."""
    __tracebackhide__ = True  # noqa: F841
    module = run(module_class, 4, returns="a module")
    missing = [name for name in MODULE_PARTS if not isinstance(getattr(module, name, None), torch.Tensor)]
    if not isinstance(module, torch.nn.Module) or missing:
        not_yet(f"{type(module).__name__}(4) lacks {', '.join(missing) or 'torch.nn.Module'}: subclass the "
                "notebook's BatchNorm1d and keep its __init__, so that the module has its weight, bias and running "
                "statistics.")
    module.register_forward_pre_hook(lambda _, inputs: setattr(module, "_check_input", inputs[0].detach().clone()))
    module.register_forward_hook(refuse_an_edited_input)
    return module.double()


def refuse_an_edited_input(module, inputs, output):
    """A forward hook: the input must still be what the pre-hook saw."""
    __tracebackhide__ = True  # noqa: F841
    if not torch.equal(inputs[0].detach(), module._check_input):
        not_yet("Your forward changed its input x in place: compute into new tensors and leave x as it is.")


def differences(module_class, theirs):
    """``side_by_side`` of a fresh ``module_class(4)`` with ``theirs``, the learner's errors made hints."""
    __tracebackhide__ = True  # noqa: F841
    return run(lambda: side_by_side(fresh(module_class), theirs, (8, 4, 5, 5)), returns="a module's output")


@check
def check_batchnorm2d(module_class):
    """``module_class(C)``, a BatchNorm2d made of the notebook's BatchNorm1d, against ``torch.nn.BatchNorm2d``:
    outputs, gradients, and running statistics after training batches and after an eval-mode batch."""
    __tracebackhide__ = True  # noqa: F841
    if module_class is None:
        not_yet(UNANSWERED)
    if isinstance(module_class, torch.nn.Module):
        not_yet("Pass your class itself, not a module made from it: the check makes its own, with 4 channels.")
    worst = differences(module_class, torch.nn.BatchNorm2d(4).double())
    if worst["output"] > 1e-10:
        layout = next((hint for mistake, hint in LAYOUT_MISTAKES
                       if differences(module_class, mistake(4).double())["output"] <= 1e-10), None)
        not_yet(layout or (PRECISION if worst["output"] < 1e-4 else
                           f"The outputs differ from torch's by up to {worst['output']:.2g}. Turn the (N, C, H, W) "
                           "input into (N*H*W, C), one row per pixel, call the 1d forward, and turn the result back."))
    bad = [name for name, difference in worst.items() if difference > 1e-10]
    verdict(not bad, "Outputs, gradients and running statistics equal torch.nn.BatchNorm2d's in float64.",
            f"The training outputs are right but these differ from torch's: {', '.join(bad)}. Reuse the 1d "
            "module's forward, which updates the running statistics in training mode only, once per call.")


def forgetting_the_mean(dout, cache):
    """A wrong backward for (N, C): it keeps the path through the variance and drops the one through the mean."""
    dx_hat = dout * cache.gamma
    return cache.inv_std * (dx_hat - cache.x_hat * (dx_hat * cache.x_hat).mean(axis=0))


def sum_check_verdict():
    """"passes" or "fails": the sum check (all-ones upstream gradient) on ``forgetting_the_mean``."""
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])
    ones = upstream_gradient("sum", TINY_BATCH.shape)
    numeric = numeric_gradient(lambda z: batch_norm_forward(z, gamma, beta)[0], TINY_BATCH, ones)
    analytic = forgetting_the_mean(ones, batch_norm_forward(TINY_BATCH, gamma, beta)[1])
    return "passes" if np.abs(analytic - numeric).max() < TOLERANCE else "fails"


def check_sum_check_prediction(answer):
    """Does the sum check catch a backward that forgets the path through the MEAN?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, sum_check_verdict(), ("passes", "fails"),
                 "Without the mean term nothing cancels a constant dy: only a bug in the variance path hides "
                 "behind the sum check.",
                 "Work out the wrong formula with dy = 1: without the mean term, is dx still zero? (x_hat has mean 0.)")


def coupling_prediction():
    """"more", "less" or "the same": how far the others move in a batch of 128 compared with a batch of 8."""
    small, large = (batch_coupling.coupling(n, COUPLING_MOVE)["train_shift"] for n in (SMALL_BATCH, LARGE_BATCH))
    return "less" if large < 0.5 * small else "more" if large > 2 * small else "the same"


def check_coupling_prediction(answer):
    """Moving example 0 to 8: do the others move more, less or the same in a batch of 128 than of 8?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(answer, coupling_prediction(), ("more", "less", "the same"),
                 "One example among 128 weighs far less in the batch statistics than one among 8.",
                 "Move the slider to 8 with a batch of 8, then switch to 128 and read how far the others moved.")

