"""The chapter's network, and many runs of it trained side by side as one model.

The network is the paper's MNIST MLP (section 4.1, 784-100-100-100-10) with ReLU units: three times
``Linear(bias=False) -> BatchNorm1d -> ReLU``, then ``Linear(100, 10)`` with a bias. The three hidden weight
matrices feed batch norm, so the loss does not change when one of them is scaled: the chapter's subject. The
last Linear feeds no BN: the counter-example. Without BN the hidden layers get their biases back.

The chapter trains dozens of these networks, each with its own learning rate, weight decay or initial
weights, on the same batches. One at a time, a network this small spends most of a step launching small
operations; so ``BatchedMLP`` holds R runs as ONE model. Its first layer is one (B, 784) @ (784, R*100)
product for all runs, the next ones batched products (``torch.bmm``), and batch norm is one
``bnlib.BatchNorm1d`` over R*100 features, which normalizes per feature, hence per run and per unit: each
run's own statistics. The loss is the sum over runs of each run's mean cross-entropy, so each run's gradient
is its own. ``network(run)`` returns one run as a plain ``nn.Sequential``; the tests check that training the
batched model and the plain networks gives the same weights.
"""

import math

import numpy as np
import torch
from torch import nn

from bnlib.layers import BatchNorm1d
from bnlib.normalization import EPS

WIDTHS = (784, 100, 100, 100, 10)
HIDDEN = len(WIDTHS) - 2  # weight matrices that feed batch norm


def he_std(fan_in):
    """He et al.'s (2015) standard deviation for weights feeding ReLU units: sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / fan_in)


class BatchedMLP(nn.Module):
    """``runs`` independent copies of the chapter's network, trained as one model.

    ``weights[l]`` is (runs, fan_out, fan_in), as ``nn.Linear`` stores one run's; ``norms[l]`` a BatchNorm1d
    over runs * fan_out features (gamma and beta are its ``weight`` and ``bias``); ``biases`` holds the last
    layer's (runs, 10), and without batch norm the hidden layers' too. The forward pass returns logits
    (runs, batch, 10).
    """

    def __init__(self, runs, batch_norm=True, eps=EPS, dtype=torch.float32):
        super().__init__()
        if not isinstance(runs, int) or runs < 1:
            raise ValueError(f"runs must be a positive number of networks, got {runs!r}")
        self.runs, self.batch_norm = runs, batch_norm
        pairs = list(zip(WIDTHS[:-1], WIDTHS[1:]))
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(runs, out, fan_in, dtype=dtype)) for fan_in, out in pairs)
        biased = WIDTHS[-1:] if batch_norm else WIDTHS[1:]  # with BN, beta takes the hidden biases' place
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(runs, out, dtype=dtype)) for out in biased)
        self.norms = nn.ModuleList(BatchNorm1d(runs * out, eps=eps, dtype=dtype) for out in WIDTHS[1:-1]
                                   if batch_norm)

    @torch.no_grad()
    def init_normal(self, seeds, stds):
        """Run r's weights of layer l from N(0, stds[r][l]^2), drawn in float64 from a generator seeded with
        ``seeds[r]`` (so a float32 and a float64 model start from the same draws); biases 0, gamma 1, beta 0."""
        stds = np.broadcast_to(np.asarray(stds, dtype=np.float64), (self.runs, len(self.weights)))
        if len(seeds) != self.runs:
            raise ValueError(f"one seed per run: got {len(seeds)} seeds for {self.runs} runs")
        for run, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for layer, weight in enumerate(self.weights):
                draw = torch.randn(weight.shape[1:], generator=generator, dtype=torch.float64)
                weight[run] = (draw * stds[run, layer]).to(weight.dtype)
        return self

    def hidden(self, h, layer):
        """(B, R * fan_in) -> (B, R * fan_out): each run's slice of ``h`` times its own weights (transposed)."""
        batch, weight = h.shape[0], self.weights[layer]
        if layer == 0:  # the same images for every run: one product
            return h @ weight.reshape(-1, h.shape[1]).T
        per_run = h.view(batch, self.runs, -1).transpose(0, 1)  # (R, B, fan_in)
        return torch.bmm(per_run, weight.transpose(1, 2)).transpose(0, 1).reshape(batch, -1)

    def forward(self, x, keep=None):
        """Logits (R, B, 10) of images ``x`` (B, 784). ``keep``, a dict, receives each hidden layer's "linear"
        (W u), "normalized" (after BN, or W u + b) and "activation" (after ReLU) values, (B, R * 100) each."""
        h = x
        for layer in range(HIDDEN):
            z = self.hidden(h, layer)
            y = self.norms[layer](z) if self.batch_norm else z + self.biases[layer].reshape(-1)
            h = torch.relu(y)
            if keep is not None:
                for name, value in (("linear", z), ("normalized", y), ("activation", h)):
                    keep.setdefault(name, []).append(value)
        per_run = h.view(h.shape[0], self.runs, -1).transpose(0, 1)
        return torch.baddbmm(self.biases[-1].unsqueeze(1), per_run, self.weights[-1].transpose(1, 2))

    def per_run(self, parameter):
        """A parameter with the run as its first axis (BN's gamma and beta are flat runs * units vectors)."""
        return parameter.view(self.runs, -1) if parameter.dim() == 1 else parameter

    @torch.no_grad()
    def network(self, run):
        """Run ``run`` as a plain ``nn.Sequential`` (its own copy of the weights, gamma, beta, running
        statistics): ``Linear -> BatchNorm1d -> ReLU`` three times, then ``Linear``."""
        layers, dtype = [], self.weights[0].dtype
        for layer in range(HIDDEN):
            fan_out, fan_in = self.weights[layer].shape[1:]
            linear = nn.Linear(fan_in, fan_out, bias=not self.batch_norm, dtype=dtype)
            linear.weight.copy_(self.weights[layer][run])
            layers.append(linear)
            if self.batch_norm:
                source = self.norms[layer]
                norm = BatchNorm1d(fan_out, eps=source.eps, dtype=dtype)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(norm, name).copy_(getattr(source, name).view(self.runs, -1)[run])
                norm.num_batches_tracked.copy_(source.num_batches_tracked)
                layers.append(norm)
            else:
                linear.bias.copy_(self.biases[layer][run])
            layers.append(nn.ReLU())
        last = nn.Linear(WIDTHS[-2], WIDTHS[-1], dtype=dtype)
        last.weight.copy_(self.weights[-1][run])
        last.bias.copy_(self.biases[-1][run])
        return nn.Sequential(*layers, last).train(self.training)


def per_run_loss(logits, labels):
    """Each run's mean cross-entropy over the batch, (R,), from logits (R, B, 10)."""
    runs, batch, classes = logits.shape
    losses = nn.functional.cross_entropy(logits.reshape(runs * batch, classes), labels.repeat(runs), reduction="none")
    return losses.view(runs, batch).mean(1)


@torch.no_grad()
def evaluate_runs(model, images, labels, chunk=2_000):
    """Each run's test accuracy and mean cross-entropy, (R,) each, in eval mode (running statistics); the
    model's mode is left as it was."""
    was_training = model.training
    model.eval()
    correct = torch.zeros(model.runs, dtype=torch.float64)
    loss = torch.zeros(model.runs, dtype=torch.float64)
    dtype = model.weights[0].dtype
    for part, part_labels in zip(images.split(chunk), labels.split(chunk)):
        logits = model(part.to(dtype))
        correct += (logits.argmax(2) == part_labels).sum(1).double()
        loss += per_run_loss(logits, part_labels).double() * len(part)
    model.train(was_training)
    return (correct / len(images)).numpy(), (loss / len(images)).numpy()
