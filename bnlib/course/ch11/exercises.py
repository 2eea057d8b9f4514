"""Checks for notebook 11: Batch Renorm's training forward given r and d, zero-init gamma on the residual blocks,
and two predictions checked against the chapter's runs."""

import copy

import numpy as np
import torch
from torch import nn

from bnlib.course.ch11.renorm import GRID, run_grid
from bnlib.course.ch11.residual import STREAMS, ResMLP, VarianceRun, run_variance, zero_init_last_bn
from bnlib.course.checks import as_array, call, check, check_choice, check_close, not_yet, passed, run

# Exercise 1: Batch Renorm's training forward


def renorm_reference(x, gamma, beta, mu, sigma, r_max, d_max, eps, mistake=None):
    """``(y, r, d)`` of Algorithm 1 in training mode, line by line; ``mistake`` names a known wrong variant."""
    mean = x.mean(0)
    var = x.var(0, unbiased=mistake == "unbiased")
    std = {"eps outside": var.sqrt() + eps, "no eps": var.sqrt()}.get(mistake, (var + eps).sqrt())
    ratio = sigma / std if mistake == "inverted r" else std / sigma
    r = ratio.clamp(0 if mistake == "r from 0" else 1 / r_max, r_max)
    shift = mu - mean if mistake == "d sign" else mean - mu
    d = (shift / (std if mistake == "d over sigma_B" else sigma)).clamp(-d_max, d_max)
    if mistake != "no detach":
        r, d = r.detach(), d.detach()
    if mistake == "after gamma":
        return (gamma * (x - mean) / std + beta) * r + d, r, d
    return gamma * ((x - mean) / std * r + d) + beta, r, d


RENORM_MISTAKES = {
    "no detach": "r and d are constants for the gradient (stop_gradient in the paper): detach them. Without it the "
                 "gradient flows through sigma_B / sigma and (mu_B - mu) / sigma, and it is no longer batch norm's "
                 "gradient with gamma r in place of gamma.",
    "inverted r": "r is sigma_B / sigma (the batch's std over the moving one), not the other way up.",
    "r from 0": "Clip r to [1 / r_max, r_max], not [0, r_max]: r_max bounds the correction both ways.",
    "d over sigma_B": "d divides by the moving sigma, not by sigma_B: (mu_B - mu) / sigma.",
    "d sign": "d is (mu_B - mu) / sigma: the batch's mean minus the moving mean.",
    "eps outside": "eps goes inside the square root: sigma_B = sqrt(var_B + eps).",
    "no eps": "sigma_B needs eps inside the square root, sqrt(var_B + eps): with two equal values in a batch "
              "var_B is 0.",
    "unbiased": "Use the biased batch variance, the mean of (x - mu_B)^2 over the m values (unbiased=False), as batch "
                "norm does in training.",
    "after gamma": "r and d correct x_hat, before gamma and beta: y = gamma (x_hat r + d) + beta, with "
                   "x_hat = (x - mu_B) / sigma_B.",
}


def _renorm_cases():
    """(x, gamma, beta, mu, sigma, r_max, d_max, eps, what): batch norm's limits, unclipped, clipped both ways."""
    generator = torch.Generator().manual_seed(11)
    x = 2.0 + 3.0 * torch.randn(8, 5, generator=generator, dtype=torch.float64)
    gamma = 1.0 + 0.5 * torch.rand(5, generator=generator, dtype=torch.float64)
    beta = torch.randn(5, generator=generator, dtype=torch.float64)
    near = (x.mean(0) + 0.3, x.std(0) * 1.2)  # moving statistics that need no clipping
    far = (torch.tensor([-40.0, 40.0, 2.0, 2.0, 0.0], dtype=torch.float64),
           torch.tensor([1.0, 1.0, 50.0, 0.05, 3.0], dtype=torch.float64))  # d clipped both ways, r both ways
    pair = torch.tensor([[1.0, 0.5, 3.0], [1.0, -0.5, 3.0]], dtype=torch.float64)  # m = 2, a unit with equal values
    return [(x, gamma, beta, *near, 1.0, 0.0, 1e-5, "r_max = 1, d_max = 0 (batch norm)"),
            (x, gamma, beta, *near, 3.0, 5.0, 1e-5, "unclipped"),
            (x, gamma, beta, *far, 3.0, 5.0, 1e-5, "r and d clipped at both ends"),
            (pair, gamma[:3], beta[:3], torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
             2.0, 1.0, 1e-3, "a batch of two, one unit with equal values")]


def _gradient(function, x, gamma, beta, mu, sigma, r_max, d_max, eps, weights):
    """dL/dx and dL/dgamma of L = sum(weights * y) for ``function``'s y."""
    leaves = [x.clone().requires_grad_(), gamma.clone().requires_grad_()]
    y = function(leaves[0] * 1.0, leaves[1] * 1.0, beta, mu, sigma, r_max, d_max, eps)[0]
    return torch.autograd.grad((torch.as_tensor(y) * weights).sum(), leaves, allow_unused=True)


@check
def check_batch_renorm_train(batch_renorm_train):
    """``batch_renorm_train(x, gamma, beta, mu, sigma, r_max, d_max, eps) -> (y, r, d)``, Algorithm 1 in training."""
    __tracebackhide__ = True  # noqa: F841
    for x, gamma, beta, mu, sigma, r_max, d_max, eps, what in _renorm_cases():
        args = (x, gamma, beta, mu, sigma, r_max, d_max, eps)
        answer = run(batch_renorm_train, *args, returns="(y, r, d)")
        if not isinstance(answer, (tuple, list)) or len(answer) != 3:
            not_yet("Return three things, (y, r, d): the output, and the corrections r and d (one per unit).")
        y, r, d = (as_array(part) for part in answer)
        expected = renorm_reference(*args)
        mistakes = [(lambda m=m: renorm_reference(*args, mistake=m)[0], hint) for m, hint in RENORM_MISTAKES.items()]
        check_close(y, expected[0], None, f"y is not Algorithm 1's output ({what}): y = gamma ((x - mu_B) / sigma_B r "
                    f"+ d) + beta, with r and d clipped.", mistakes=mistakes, rtol=1e-9, atol=1e-9)
        for name, mine, right in (("r", r, expected[1]), ("d", d, expected[2])):
            check_close(mine.reshape(-1) if mine.size == right.numel() else mine, right, None,
                        f"{name} is not right ({what}); y is.", rtol=1e-9, atol=1e-12)
        weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        for mine, right, of in zip(_gradient(batch_renorm_train, *args, weights),
                                   _gradient(renorm_reference, *args, weights), ("x", "gamma")):
            if mine is None:
                not_yet(f"No gradient reaches {of} through your y: compute y from the tensors you are given (a new "
                        f"layer with copied weights is a different graph).")
            check_close(mine, right, None, f"The gradient with respect to {of} is not right ({what}). "
                        + RENORM_MISTAKES["no detach"].split(" Without")[0], rtol=1e-7, atol=1e-9)
    passed("with r = 1 and d = 0 it is batch norm; unclipped it computes the inference transform (x - mu) / sigma "
           "from the batch; its gradient is batch norm's with gamma r for gamma.")


# Exercise 2: zero-init gamma on the residual blocks

def _zero_init_case():
    model = ResMLP(4, "branch", width=12, seed=5)
    with torch.no_grad():  # gammas away from 1 and betas away from 0, so that every mistake shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


@check
def check_zero_init_last_bn(zero_init_last_bn_answer):
    """``zero_init_last_bn(model) -> model``: gamma = 0 in the last BN of every block's branch, nothing else changed."""
    __tracebackhide__ = True  # noqa: F841
    model = _zero_init_case()
    original = copy.deepcopy(model)
    answer = run(zero_init_last_bn_answer, model, returns="the model", may_change=(0,))
    if not isinstance(answer, ResMLP):
        not_yet(f"Return the model (a ResMLP, changed in place), not {type(answer).__name__}.")
    expected = zero_init_last_bn(copy.deepcopy(original)).state_dict()
    state = answer.state_dict()
    if state.keys() != expected.keys():
        not_yet("Your model has other parameters or buffers than the one you were given: change its gammas, add "
                "nothing.")
    changed = [key for key in expected if not torch.equal(state[key], original.state_dict()[key])]
    wrong = [key for key in expected if not torch.equal(state[key], expected[key])]
    if not wrong:
        return passed("every block now starts as the identity: x + BN(...) with gamma = 0 adds 0, and gamma gets a "
                      "gradient at the first step.")
    if not changed:
        not_yet("Nothing changed. gamma is a BN layer's weight (block.norm2.weight); its bias is beta.")
    if "stem.0.weight" in changed or "head.weight" in changed:
        not_yet("Your model's weights are not those of the model you were given: change its gammas in place and "
                "return it, rather than building a new network.")
    if any(key.startswith("stem") for key in changed):
        not_yet("Leave the stem's BN alone: zeroing it makes the whole stream 0, and nothing reaches the head.")
    if any(".norm1." in key for key in changed):
        not_yet("Zero the last BN of each branch (norm2), not the first: a zero before the ReLU passes no gradient, "
                "and the branch never wakes up.")
    if any(key.endswith("bias") for key in changed):
        not_yet("Zero gamma (the weight) only, not beta (the bias): beta = 0 already, and a trained beta is part "
                "of the block.")
    if any(".linear" in key for key in changed):
        not_yet("Zero the BN's gamma, not a Linear's weight: BN of an all-zero input divides by sqrt(eps), and the "
                "Linear's weights lose their initialization.")
    missed = [key for key in wrong if key.endswith("norm2.weight") and key not in changed]
    if missed:
        not_yet(f"Every block, not only some: {len(missed)} of the {len(model.blocks)} blocks still have their gamma "
                f"(the last BatchNorm in model.modules() is only the last block's).")
    not_yet("Set every element of each block's norm2.weight to exactly 0 (nn.init.zeros_, or .zero_() under "
            "torch.no_grad()), and change nothing else.")


# Exercise 3: a SkipInit block

def _skipinit_reference(block, x, alpha, mistake=None):
    """x + alpha f(x), f = linear2(relu(linear1(relu(x)))), with ``block``'s weights; ``mistake``: alpha on the skip
    path ("skip"), alpha on the branch's input ("input"), no ReLU before linear1 ("no first relu")."""
    def f(u):
        return block.linear2(torch.relu(block.linear1(u if mistake == "no first relu" else torch.relu(u))))
    with torch.no_grad():
        if mistake == "skip":
            return alpha * x + f(x)
        if mistake == "input":
            return x + f(alpha * x)
        return x + alpha * f(x)


SKIPINIT_MISTAKES = {
    "skip": "alpha multiplies the branch, not the skip path: x + alpha f(x), the identity at alpha = 0.",
    "input": "alpha scales the branch's output, x + alpha f(x), not its input, x + f(alpha x).",
    "no first relu": "The branch starts with a ReLU: f(x) = linear2(relu(linear1(relu(x)))).",
}


@check
def check_skipinit_block(skipinit_block):
    """``SkipInitBlock(width)``: x + alpha linear2(relu(linear1(relu(x)))), alpha a learnable scalar, 0 at first."""
    __tracebackhide__ = True  # noqa: F841
    torch.manual_seed(7)
    block = run(skipinit_block, 12, returns="a block")
    if not isinstance(block, nn.Module) or not all(isinstance(getattr(block, name, None), nn.Linear)
                                                    for name in ("linear1", "linear2")):
        not_yet("SkipInitBlock(width) must be an nn.Module with two nn.Linear(width, width), linear1 and linear2.")
    alpha = getattr(block, "alpha", None)
    if not isinstance(alpha, torch.Tensor) or alpha.numel() != 1:
        not_yet("Give the block one scalar alpha (block.alpha), a tensor.")
    if not any(alpha is parameter for parameter in block.parameters()):
        not_yet("alpha must be learnable, an nn.Parameter: a plain number or a buffer never trains, and every block "
                "stays the identity for good.")
    if alpha.item() != 0:
        not_yet(f"alpha starts at 0 (SkipInit), not {alpha.item():g}: with alpha = 1 it is the plain residual block.")
    x = torch.randn(16, 12)
    with torch.no_grad():
        for linear in (block.linear1, block.linear2):  # biases away from 0, so that every mistake shows
            if linear.bias is not None:
                linear.bias.uniform_(-0.5, 0.5)
    for value in (0.0, 0.5):
        with torch.no_grad():
            alpha.fill_(value)
        mistakes = [(lambda m=m: _skipinit_reference(block, x, value, m), hint)
                    for m, hint in SKIPINIT_MISTAKES.items()]
        check_close(call(block, x), _skipinit_reference(block, x, value), None,
                    f"With alpha = {value:g} the block must return x + alpha f(x), f(x) = "
                    f"linear2(relu(linear1(relu(x)))).", mistakes=mistakes, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        alpha.zero_()
    block.zero_grad()
    (block(x) * torch.linspace(-1, 1, 12)).sum().backward()
    if alpha.grad is None or alpha.grad.abs().item() == 0:
        not_yet("At alpha = 0, alpha must still receive a gradient: compute the output as x + alpha * f(x).")
    passed("at alpha = 0 the block is the identity and only alpha gets a gradient at the first step; the branch "
           "wakes up once alpha has moved.")


# Exercise 4 (predict): the residual stream's variance at block 16

VARIANCE_CHOICES = {"about 1": 1.0, "about 4": 4.0, "about 17": 17.0, "about 65,000": 65536.0}


def variance_at_16(config=VarianceRun()):
    """The choice nearest (in ratio) to the measured Var(x_16) with BN on the branch."""
    measured = run_variance(config)["variance"][STREAMS.index("branch"), 16]
    return min(VARIANCE_CHOICES, key=lambda name: abs(np.log(VARIANCE_CHOICES[name] / measured)))


def check_variance_prediction(prediction):
    """``prediction``: Var(x_16) at initialization with BN ending every branch ("about 1", "about 4", ...)."""
    __tracebackhide__ = True  # noqa: F841
    check_choice(prediction, variance_at_16, tuple(VARIANCE_CHOICES),
                 "each branch ends with BN, whose output has variance gamma^2 = 1 in train mode, and an uncorrelated "
                 "sum adds variances: 1 + 16 = 17.",
                 "Add up the variances: the stem hands on 1; what does each branch add, whatever its input's size?")


# Exercise 5 (predict): the best norm at batch size 2

def best_at_two(config=GRID):
    result = run_grid(config)
    k = config.batch_sizes.index(2)
    return config.norms[int(np.argmax(result["eval"][:, config.compositions.index("iid"), k]))]


def check_batch_two_prediction(prediction):
    """``prediction``: which norm has the highest eval accuracy after training on iid batches of 2?"""
    __tracebackhide__ = True  # noqa: F841
    check_choice(prediction, best_at_two, tuple(GRID.norms),
                 "GroupNorm never looks across the batch. With two examples, batch norm's (x - mu_B) / sigma_B is "
                 "+-1 whatever x is, and Batch Renorm's gradient is batch norm's, so neither learns well below it.",
                 "What is (x - mu_B) / sigma_B in a batch of two? And which of the three never computes it?")
