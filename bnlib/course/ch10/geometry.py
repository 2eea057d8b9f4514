"""Scale invariance as geometry: L(aW) = L(W), so W . grad L = 0 and grad L(aW) = grad L(W) / a.

For a weight W whose output feeds batch norm, BN(aWx) = BN(Wx) for any a > 0: the batch mean and standard
deviation of aWx are a times those of Wx (up to BN's eps). So the loss is the same at aW, and differentiating
L(aW) = L(W)

- with respect to a, at a = 1: W . grad L(W) = 0, the gradient is orthogonal to W;
- with respect to W: a grad L(aW) = grad L(W), the gradient at aW is the gradient at W divided by a

(Ioffe & Szegedy 2015, section 3.3, give the invariance and the 1/a; the orthogonality follows from the same
identity). Each row of W (one unit's incoming weights) can be scaled on its own: BN
normalizes each unit separately. The last Linear feeds no BN: none of this holds for it.
"""

import copy

import numpy as np
import torch
from torch import nn

from bnlib.course.ch10.batched import BatchedMLP
from bnlib.course.ch10.equivalence import TINY_EPS
from bnlib.course.training import mnist, random_batches, small_model_settings
from bnlib.normalization import EPS

INIT_STD = 0.05  # about He's sqrt(2 / 784) for the first layer


def chapter_network(eps=EPS, dtype=torch.float64, init_std=INIT_STD, seed=0):
    """The chapter's network as a plain ``nn.Sequential`` (``BatchedMLP.network``), weights N(0, init_std^2),
    BN with ``eps``, in train mode."""
    return BatchedMLP(1, eps=eps, dtype=dtype).init_normal([seed], init_std).network(0).train()


def first_batch(dtype=torch.float64, batch_size=60, seed=0):
    """The first training batch the chapter's runs see: images (as ``dtype``) and labels."""
    images, labels = mnist(train=True)
    (batch,), = random_batches(len(images), batch_size, 1, seed)
    return images[batch].to(dtype), labels[batch]


def linear_layers(model):
    """The positions of the Linear layers in ``model``."""
    return [i for i, layer in enumerate(model) if isinstance(layer, nn.Linear)]


def loss_and_gradients(model, images, labels):
    """The batch's mean cross-entropy (train mode: batch statistics) and its gradient with respect to each
    Linear weight, {position: gradient}; on a copy, so ``model`` and its running statistics stay as they are."""
    model = copy.deepcopy(model).train()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    return loss.item(), {i: model[i].weight.grad for i in linear_layers(model)}


def scaled(model, layer, factor):
    """A copy of ``model`` whose layer ``layer`` has its weight multiplied by ``factor`` (a number, or one per
    row: a column (units, 1))."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model[layer].weight.mul_(factor)
    return model


def scale_table(model, images, labels, factors=(0.5, 2.0, 10.0)):
    """Per Linear layer: cos(W, g), and for each factor a, |L(aW) - L(W)| / L(W) and the relative distance of a
    g(aW) from g(W), max |a g(aW) - g(W)| / max |g(W)|. Rows are (position, cos, [(a, loss change, gradient
    change), ...])."""
    loss, gradients = loss_and_gradients(model, images, labels)
    rows = []
    for layer, g in gradients.items():
        w = model[layer].weight.detach()
        cosine = ((w * g).sum() / (w.norm() * g.norm())).item()
        changes = []
        for a in factors:
            loss_a, gradients_a = loss_and_gradients(scaled(model, layer, a), images, labels)
            changes.append((a, abs(loss_a - loss) / loss, ((a * gradients_a[layer] - g).abs().max() / g.abs().max()).item()))
        rows.append((layer, cosine, changes))
    return rows


def row_scaling_change(model, images, labels, layer=0, low=0.1, high=10.0, seed=1):
    """|L - L_0| / L_0 when every row of layer ``layer``'s weight is scaled by its own factor, log-uniform in
    [low, high]; and the largest |cos(w_j, g_j)| over the rows at the start."""
    generator = torch.Generator().manual_seed(seed)
    weight = model[layer].weight
    factors = low * (high / low) ** torch.rand(weight.shape[0], 1, generator=generator, dtype=torch.float64)
    loss, gradients = loss_and_gradients(model, images, labels)
    g, w = gradients[layer], weight.detach()
    row_cos = ((w * g).sum(1) / (w.norm(dim=1) * g.norm(dim=1))).abs().max().item()
    loss_rows, _ = loss_and_gradients(scaled(model, layer, factors.to(weight.dtype)), images, labels)
    return abs(loss_rows - loss) / loss, row_cos


def settings():
    """The settings section 1 compares: (name, dtype, BN eps)."""
    return [("float64, eps ~ 0", torch.float64, TINY_EPS), ("float64, eps 1e-5", torch.float64, EPS),
            ("float32, eps ~ 0", torch.float32, TINY_EPS), ("float32, eps 1e-5", torch.float32, EPS)]


def summary_table(factors=(0.5, 2.0, 10.0)):
    """For each of ``settings()``: the largest |cos(W, g)| over the hidden layers and the last layer's cos, the
    largest loss and gradient changes over the hidden layers and factors, and the last layer's; the row
    scaling's loss change and largest row cosine. One dict per setting."""
    found = []
    for name, dtype, eps in settings():
        model, (images, labels) = chapter_network(eps, dtype), first_batch(dtype)
        with small_model_settings():
            rows = scale_table(model, images, labels, factors)
        hidden, last = rows[:-1], rows[-1]
        found.append({"setting": name, "cos": max(abs(row[1]) for row in hidden), "last_cos": last[1],
                      "loss_change": max(change[1] for row in hidden for change in row[2]),
                      "gradient_change": max(change[2] for row in hidden for change in row[2]),
                      "last_loss_change": np.array([change[1] for change in last[2]]),
                      "last_gradient_change": np.array([change[2] for change in last[2]]),
                      "rows": row_scaling_change(model, images, labels)})  # noqa: E501
    return found
