"""The fast trainer behind the reproduction of Ioffe & Szegedy (2015), Figure 1: one network, by hand.

The network is the paper's MNIST MLP (784-100-100-100-10, sigmoid). With ``batch_norm=True`` each hidden
layer computes ``sigmoid(BN(W u))`` with bnlib's ``bn_forward_tensor``/``bn_backward_tensor`` (the math
``bnlib.BatchNorm1d`` runs) and has no bias (``beta`` takes its place). The experiment's settings are in
``bnlib.course.ch06.paper``, which trains the two networks in two processes, one each.

Speed. At batch 60 the arithmetic is small (well under a millisecond per step); a naive
``nn.Sequential`` + ``torch.optim`` loop spends most of its time in Python and operator dispatch. Here:

- forward and backward are written out by hand (no autograd graph) into buffers allocated once;
- each weight matrix gets its SGD update fused with its gradient (one ``addmm_``); all biases, betas and
  gammas live in one flat tensor and take their SGD step in one operation;
- the loss's 1/N is folded into the learning rate (the backward pass is linear in d loss / d logits);
- MNIST is one preloaded tensor, and a mini-batch is one ``index_select``;
- the test set is evaluated after training, from the weights saved at the checkpoints.

``python -m bnlib.bench --json paper_step_speedup_vs_naive`` measures the speed-up over the textbook loop.
"""

import math

import torch
from torch import nn

from bnlib.course.models import PAPER_HIDDEN, paper_mlp
from bnlib.functional import bn_backward_tensor, bn_forward_tensor
from bnlib.normalization import EPS

WIDTHS = (784, *PAPER_HIDDEN, 10)
NETWORKS = ("baseline", "batch norm")
REPORT_EVERY = 250  # steps between two progress reports


def parameter_views(flat, batch_norm, widths=WIDTHS):
    """Views into one network's flat parameters: ``weights[l]`` (fan_in, fan_out), ``shifts[l]``, ``gammas[l]``.

    ``weights[l]`` is ``nn.Linear.weight.T`` (we compute u @ W). ``shifts[l]`` is the layer's bias, or, in
    the BN network's hidden layers, ``beta``. ``gammas`` (the BN network's hidden layers only) come last.
    All weights come first in ``flat``: ``flat[weight_count():]`` holds every vector, for one SGD step.
    """
    start = 0

    def take(*shape):
        nonlocal start
        view = flat[start:start + math.prod(shape)].view(shape)
        start += view.numel()
        return view

    layers = list(zip(widths[:-1], widths[1:]))
    weights = [take(fan_in, fan_out) for fan_in, fan_out in layers]
    shifts = [take(fan_out) for _, fan_out in layers]
    gammas = [take(fan_out) for _, fan_out in layers[:-1]] if batch_norm else []
    if start != flat.numel():
        raise ValueError(f"flat parameters of widths {widths} (batch_norm={batch_norm}) hold {start} values, "
                         f"not {flat.numel()}")
    return weights, shifts, gammas


def weight_count(widths=WIDTHS):
    return sum(fan_in * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))


def parameter_count(batch_norm, widths=WIDTHS):
    return weight_count(widths) + sum(widths[1:]) + (sum(widths[1:-1]) if batch_norm else 0)


def initial_parameters(batch_norm, init_std, seed, dtype=torch.float32):
    """The starting point, the same weights for both networks: ``paper_mlp``'s, shifts 0, gammas 1."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        linears = [module for module in paper_mlp(init_std=init_std) if isinstance(module, nn.Linear)]
    flat = torch.zeros(parameter_count(batch_norm), dtype=dtype)
    weights, _, gammas = parameter_views(flat, batch_norm)
    for weight, linear in zip(weights, linears):
        weight.copy_(linear.weight.detach().T)
    for gamma in gammas:
        gamma.fill_(1.0)
    return flat


def to_torch_model(flat, batch_norm):
    """The network as a ``paper_mlp`` module holding the weights in ``flat``."""
    weights, shifts, gammas = parameter_views(flat.detach(), batch_norm)
    model = paper_mlp(batch_norm=batch_norm).to(flat.dtype)
    linears = [module for module in model if isinstance(module, nn.Linear)]
    norms = [module for module in model if hasattr(module, "running_mean")]
    with torch.no_grad():
        for layer, linear in enumerate(linears):
            linear.weight.copy_(weights[layer].T)
            if batch_norm and layer < len(norms):
                norms[layer].weight.copy_(gammas[layer])
                norms[layer].bias.copy_(shifts[layer])
            else:
                linear.bias.copy_(shifts[layer])
    return model


def batch_order(examples, steps, batch_size, seed):
    """Indices of the training examples, ``steps * batch_size`` of them: a fresh shuffle every epoch."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / examples)
    order = torch.cat([torch.randperm(examples, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size]


class Network:
    """One network trained by hand-written forward and backward passes; activations are (N, width).

    Each weight matrix is updated in place the moment its gradient is known, W <- W - lr/N u^T dL/dz, in
    one fused ``addmm_``; the biases, betas and gammas, contiguous at the end of the flat parameters, take
    one SGD step together. Buffers and views are made once: at batch 60, launching an operation (even
    taking a view) costs about as much as doing the arithmetic.
    """

    def __init__(self, flat, batch_norm, batch_size, eps=EPS):
        self.params, self.grads, self.batch_norm, self.eps = flat, torch.zeros_like(flat), batch_norm, eps
        self.weights, self.shifts, self.gammas = parameter_views(self.params, batch_norm)
        _, self.d_shifts, self.d_gammas = parameter_views(self.grads, batch_norm)
        self.vectors, self.d_vectors = self.params[weight_count():], self.grads[weight_count():]
        buffer = lambda *shape: torch.empty(*shape, dtype=flat.dtype)  # noqa: E731
        hidden = WIDTHS[1:-1]
        self.x, self.onehot = buffer(batch_size, WIDTHS[0]), buffer(batch_size, WIDTHS[-1])
        self.z, self.h, self.dz, self.dh = ([buffer(batch_size, width) for width in hidden] for _ in range(4))
        self.logits = buffer(batch_size, WIDTHS[-1])
        self.saved = [None] * len(hidden)
        self.inputs_transposed = [self.x.T] + [h.T for h in self.h]  # u^T of each layer
        self.weights_transposed = [w.T for w in self.weights]

    def forward(self, batch_mean, batch_var):
        """The forward pass on ``self.x``; a BN network writes its batch statistics to ``batch_*[layer]``."""
        inputs = [self.x] + self.h
        for layer, (z, h) in enumerate(zip(self.z, self.h)):
            torch.mm(inputs[layer], self.weights[layer], out=z)  # z = u W
            if self.batch_norm:
                z_hat, saved = bn_forward_tensor(z, self.gammas[layer], self.shifts[layer], self.eps)
                batch_mean[layer].copy_(saved.mean)  # mu_B
                batch_var[layer].copy_(saved.var)  # sigma_B^2, biased: the one that normalized
                self.saved[layer] = saved
                torch.sigmoid(z_hat, out=h)  # u' = sigmoid(gamma (z - mu_B) / sqrt(sigma_B^2 + eps) + beta)
            else:
                torch.sigmoid(z.add_(self.shifts[layer]), out=h)  # u' = sigmoid(u W + b)
        torch.addmm(self.shifts[-1], self.h[-1], self.weights[-1], out=self.logits)  # logits = u W + b

    def backward_and_update(self, lr):
        """Backpropagate the summed cross-entropy; update every parameter by SGD with step lr / N."""
        step = -lr / len(self.x)  # the loss is the batch MEAN: its 1/N lands here
        # dL/dlogits = softmax(logits) - onehot; exp, sum and divide cost a third of torch.softmax's time here
        d_logits = self.logits.sub_(torch.amax(self.logits, 1, keepdim=True)).exp_()
        d_logits.div_(d_logits.sum(1, keepdim=True)).sub_(self.onehot)
        d_z, last = d_logits, len(self.weights) - 1
        torch.sum(d_z, 0, out=self.d_shifts[last])
        for layer in reversed(range(last + 1)):
            if layer < last:  # a hidden layer: through the sigmoid, then BN or the bias
                d_z = torch.ops.aten.sigmoid_backward.grad_input(self.dh[layer], self.h[layer],
                                                                 grad_input=self.dz[layer])
                if self.batch_norm:
                    d_z, d_gamma, d_beta = bn_backward_tensor(d_z, self.saved[layer])  # dL/d(u W)
                    self.d_gammas[layer].copy_(d_gamma)
                    self.d_shifts[layer].copy_(d_beta)
                else:
                    torch.sum(d_z, 0, out=self.d_shifts[layer])  # dL/db = sum_i dL/dz_i
            if layer:
                torch.mm(d_z, self.weights_transposed[layer], out=self.dh[layer - 1])  # dL/du = dL/dz W^T
            self.weights[layer].addmm_(self.inputs_transposed[layer], d_z, alpha=step)  # W -= lr/N u^T dL/dz
        self.vectors.add_(self.d_vectors, alpha=step)  # biases, betas, gammas

    def sgd_step(self, lr, batch_mean, batch_var):
        """One SGD step on the batch in ``self.x`` / ``self.onehot``."""
        self.forward(batch_mean, batch_var)
        self.backward_and_update(lr)


def train_network(images, labels, batch_norm, steps, batch_size, lr, init_std, seed, checkpoints, report=None,
                  at_checkpoint=None):
    """Train one network; return its weights at the checkpoints and, with BN, every step's batch statistics.

    Returns a dict of tensors: ``steps`` (C+1,) the checkpoint steps (0 = initial weights), ``parameters``
    (C+1, P) the flat parameters there and, for the BN network, ``batch_mean`` and ``batch_var`` (steps, 3, 100),
    the per-step batch mean and biased batch variance of ``u W`` in each hidden layer. Both networks get the
    same initial weights and the same batches for the same ``seed``. The dtype of ``images`` sets the
    computation's dtype. ``report(n)``, if given, is told every ``REPORT_EVERY`` steps that n more are done.
    ``at_checkpoint(c, so_far)``, if given, is called once checkpoint c < C is saved, with the run so far
    (this dict up to checkpoint c, as views into the run's buffers: copy what you keep).
    """
    if checkpoints < 1 or steps % checkpoints:
        raise ValueError(f"steps ({steps}) must be a positive multiple of checkpoints ({checkpoints}), "
                         f"so that the checkpoints are evenly spaced")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {batch_size}")
    dtype = images.dtype
    onehots = torch.nn.functional.one_hot(labels, WIDTHS[-1]).to(dtype)
    order = batch_order(len(images), steps, batch_size, seed).view(steps, batch_size)
    net = Network(initial_parameters(batch_norm, init_std, seed, dtype), batch_norm, batch_size)
    every = steps // checkpoints
    saved = torch.empty(checkpoints + 1, net.params.numel(), dtype=dtype)
    recorded = (steps if batch_norm else 1, len(WIDTHS) - 2, WIDTHS[1])
    batch_mean, batch_var = torch.empty(recorded, dtype=dtype), torch.empty(recorded, dtype=dtype)
    for step in range(steps):
        if report is not None and step % REPORT_EVERY == 0 and step:
            report(REPORT_EVERY)
        if step % every == 0:
            saved[step // every].copy_(net.params)
            if at_checkpoint is not None:
                at_checkpoint(step // every, _run_so_far(saved, batch_mean, batch_var, step, every, batch_norm))
        torch.index_select(images, 0, order[step], out=net.x)
        torch.index_select(onehots, 0, order[step], out=net.onehot)
        net.sgd_step(lr, batch_mean[step if batch_norm else 0], batch_var[step if batch_norm else 0])
    saved[-1].copy_(net.params)
    if report is not None:
        report(steps - REPORT_EVERY * ((steps - 1) // REPORT_EVERY))
    return _run_so_far(saved, batch_mean, batch_var, steps, every, batch_norm)


def _run_so_far(saved, batch_mean, batch_var, step, every, batch_norm):
    """``train_network``'s result up to ``step``, a checkpoint: views into the buffers, no copies."""
    result = {"steps": torch.arange(0, step + 1, every), "parameters": saved[:step // every + 1]}
    if batch_norm:
        result.update(batch_mean=batch_mean[:step], batch_var=batch_var[:step])
    return result
