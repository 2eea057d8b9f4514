"""Checks for notebook 03, batch norm from scratch: eval mode in numpy, BatchNorm2d out of the notebook's
BatchNorm1d, and two predictions (what the sum check catches, how the batch size weighs on the coupling)."""

import numpy as np
import torch

from bnlib.course.ch03 import batch_coupling
from bnlib.course.ch03.against_torch import side_by_side
from bnlib.course.ch03.step_by_step import TINY_BATCH
from bnlib.course.checks import NotYet, call, check_choice, not_yet, verdict
from bnlib.gradient_check import TOLERANCE, numeric_gradient, upstream_gradient
from bnlib.normalization import batch_norm_forward

COUPLING_MOVE, SMALL_BATCH, LARGE_BATCH = 8.0, 8, 128


def eval_case(seed=5):
    """A batch, gamma, beta and running statistics unlike the batch's own: (8, 3) and (3,) arrays."""
    rng = np.random.default_rng(seed)
    x = rng.normal([2.0, -1.0, 10.0], [1.0, 3.0, 0.5], size=(8, 3))
    return x, rng.uniform(0.5, 2, 3), rng.normal(size=3), np.array([1.0, 0.5, 9.0]), np.array([2.0, 4.0, 0.01])


def check_eval_forward(batch_norm_eval):
    """``batch_norm_eval(x, gamma, beta, running_mean, running_var, eps)`` against torch's eval-mode batch norm."""
    __tracebackhide__ = True  # noqa: F841
    x, gamma, beta, running_mean, running_var = eval_case()
    eps = 1e-3
    answer = call(batch_norm_eval, x, gamma, beta, running_mean, running_var, eps)
    tensors = [torch.from_numpy(a) for a in (x, running_mean, running_var, gamma, beta)]
    expected = torch.nn.functional.batch_norm(*tensors[:3], *tensors[3:], training=False, eps=eps).numpy()
    if answer.shape != x.shape:
        not_yet(f"The output has the shape of x, {x.shape}; yours has shape {answer.shape}.")
    mistakes = [
        (batch_norm_forward(x, gamma, beta, eps)[0],
         "You normalized with the batch's own mean and variance: eval mode uses the running statistics."),
        (gamma * (x - running_mean) / (running_var + eps) + beta,
         "You divided by the variance: divide by the square root of (running_var + eps)."),
        (gamma * (x - running_mean) / (np.sqrt(running_var) + eps) + beta,
         "eps goes inside the square root: sqrt(running_var + eps)."),
        ((x - running_mean) / np.sqrt(running_var + eps),
         "Normalized, but not scaled and shifted: multiply by gamma and add beta."),
    ]
    for wrong, hint in mistakes:
        if np.allclose(answer, wrong, rtol=1e-9, atol=1e-12):
            not_yet(hint)
    verdict(np.allclose(answer, expected, rtol=1e-10, atol=1e-12),
            "Your eval-mode batch norm equals torch's (F.batch_norm with training=False).",
            "Compare with the eval branch of the notebook's BatchNorm1d: (x - running_mean) / sqrt(running_var + "
            "eps), then gamma and beta.")


def check_batchnorm2d(module_class):
    """``module_class(C)``, a BatchNorm2d made of the notebook's BatchNorm1d, against ``torch.nn.BatchNorm2d``."""
    __tracebackhide__ = True  # noqa: F841
    if module_class is None:
        not_yet("Fill in your class first.")
    try:
        module = module_class(4).double()
        worst = side_by_side(module, torch.nn.BatchNorm2d(4).double(), (8, 4, 5, 5))
    except NotImplementedError:
        not_yet("Your forward is not written yet: replace `raise NotImplementedError()` by its body.")
    except Exception as err:  # the learner's code: a hint, with their traceback chained
        raise NotYet(f"Not yet. Your module raised {type(err).__name__}: {err}") from err
    if worst["output"] > 1e-10:
        not_yet(f"The outputs differ from torch's by up to {worst['output']:.2g}. Each channel's statistics are "
                "over N, H and W: move the channels last (permute) before reshaping to (N*H*W, C), and back after.")
    bad = [name for name, difference in worst.items() if difference > 1e-10]
    verdict(not bad, "Outputs, gradients and running statistics equal torch.nn.BatchNorm2d's in float64.",
            f"The outputs are right but these differ from torch's: {', '.join(bad)}. Reuse the 1d module's "
            "forward, which updates the running statistics, once per call.")


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

