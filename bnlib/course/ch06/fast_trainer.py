"""The fast trainer behind the reproduction of Ioffe & Szegedy (2015), Figure 1: two MLPs trained at once.

Both networks are the paper's MNIST MLP (784-100-100-100-10, sigmoid); the BN network computes
``sigmoid(BN(W u))`` in each hidden layer, with bnlib's ``bn_forward_tensor``/``bn_backward_tensor``
(the math ``bnlib.BatchNorm1d`` runs), and drops the bias (``beta`` takes its place). The experiment's
settings are in ``bnlib.course.ch06.paper``.

Speed. At batch 60 the arithmetic is small (well under a millisecond per step); a naive
``nn.Sequential`` + ``torch.optim`` loop spends most of its time in Python and operator dispatch. Here:

- both networks train in one batched computation: each layer is one ``torch.bmm`` over a leading axis
  of size 2 (index 0 the baseline, index 1 the BN network);
- forward and backward are written out by hand (no autograd graph) into buffers allocated once;
- each weight matrix gets its SGD update fused with its gradient (one ``addmm_``); all biases, betas and
  gammas live in one flat tensor and take their SGD step in one operation;
- the loss's 1/N is folded into the learning rate (the backward pass is linear in d loss / d logits);
- MNIST is one preloaded tensor, and a mini-batch is one ``index_select``;
- the test set is evaluated after training, from the weights saved at the checkpoints.

Measured on a 2-core laptop CPU, one thread, batch 60: the textbook loop (``nn.Sequential`` with
``torch.nn.BatchNorm1d``, autograd, ``torch.optim.SGD``) takes about 1.7 ms per step for the two
networks, this trainer about half that (``python -m bnlib.bench --json paper_step_speedup_vs_naive``
measures the ratio). What remains is the matrix products any method must do (about 0.35 ms) and the
launch cost of about 130 small operations, a third of them batch norm's.
"""

import math

import torch
from torch import nn

from bnlib.course.models import paper_mlp
from bnlib.functional import bn_backward_tensor, bn_forward_tensor
from bnlib.normalization import EPS

WIDTHS = (784, 100, 100, 100, 10)
NETWORKS = ("baseline", "batch norm")


def parameter_views(flat, widths=WIDTHS):
    """Views into one flat tensor: ``weights[l]`` (2, fan_in, fan_out), ``shifts[l]`` (2, fan_out), ``gammas[l]``.

    ``weights[l][0]`` is the baseline's W (``nn.Linear.weight.T``), ``weights[l][1]`` the BN network's.
    The first layer is stored (784, 2, 100), both networks side by side, so that its product for both
    is one (N, 784) x (784, 200) matrix product; ``weights[0]`` is a transposed view of it.
    ``shifts[l][0]`` is the baseline's bias, ``shifts[l][1]`` the BN network's ``beta`` (its output
    layer has an ordinary bias). ``gammas`` belong to the BN network's hidden layers only. All weights
    come first in ``flat``, then all shifts and gammas: ``flat[weight_count(widths):]`` holds the vectors.
    """
    start = 0

    def take(*shape):
        nonlocal start
        view = flat[start:start + math.prod(shape)].view(shape)
        start += view.numel()
        return view

    layers = list(zip(widths[:-1], widths[1:]))
    weights = [take(fan_in, 2, fan_out).transpose(0, 1) if layer == 0 else take(2, fan_in, fan_out)
               for layer, (fan_in, fan_out) in enumerate(layers)]
    shifts = [take(2, fan_out) for _, fan_out in layers]
    gammas = [take(fan_out) for _, fan_out in layers[:-1]]
    if start != flat.numel():
        raise ValueError(f"a flat parameter tensor for widths {widths} holds {start} values, not {flat.numel()}")
    return weights, shifts, gammas


def weight_count(widths=WIDTHS):
    return sum(2 * fan_in * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))


def parameter_count(widths=WIDTHS):
    layers = list(zip(widths[:-1], widths[1:]))
    return sum(2 * (fan_in + 1) * fan_out for fan_in, fan_out in layers) + sum(widths[1:-1])


def initial_parameters(init_std, seed, dtype=torch.float32):
    """Both networks' starting point: the same ``paper_mlp`` weights, biases and betas 0, gammas 1."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        baseline = paper_mlp(batch_norm=False, init_std=init_std)
    flat = torch.zeros(parameter_count(), dtype=dtype)
    weights, _, gammas = parameter_views(flat)
    linears = [module for module in baseline if isinstance(module, nn.Linear)]
    for weight, linear in zip(weights, linears):
        weight[:] = linear.weight.detach().T  # nn.Linear stores (out, in); we compute u @ W
    for gamma in gammas:
        gamma.fill_(1.0)
    return flat


def to_torch_models(flat):
    """The two networks as ``paper_mlp`` modules holding the weights in ``flat`` (baseline, batch norm)."""
    weights, shifts, gammas = parameter_views(flat.detach())
    models = []
    for net, batch_norm in enumerate((False, True)):
        model = paper_mlp(batch_norm=batch_norm).to(flat.dtype)
        linears = [module for module in model if isinstance(module, nn.Linear)]
        norms = [module for module in model if hasattr(module, "running_mean")]
        with torch.no_grad():
            for layer, linear in enumerate(linears):
                linear.weight.copy_(weights[layer][net].T)
                hidden = layer < len(linears) - 1
                if batch_norm and hidden:
                    norms[layer].weight.copy_(gammas[layer])
                    norms[layer].bias.copy_(shifts[layer][net])
                else:
                    linear.bias.copy_(shifts[layer][net])
        models.append(model)
    return models


def batch_order(examples, steps, batch_size, seed):
    """Indices of the training examples, ``steps * batch_size`` of them: a fresh shuffle every epoch."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / examples)
    order = torch.cat([torch.randperm(examples, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size]


class TwoNetworks:
    """The baseline and the BN network, trained side by side by hand-written forward and backward passes.

    Activations are laid out (2, N, width): network, example, unit. Each layer is one ``torch.bmm`` for
    both networks, except the first: one (N, 784) x (784, 200) matrix product, then a copy into the
    (2, N, 100) layout (a copy of 12,000 numbers is cheaper than a batched product with a repeated x).
    Each weight matrix is updated in place the moment its gradient is known, W <- W - lr/N u^T dL/dz,
    in one fused ``addmm_``/``baddbmm_``; the biases, betas and gammas, contiguous at the end of the flat
    parameters, take one SGD step together. Buffers and views are made once: at batch 60, launching an
    operation (even taking a view) costs about as much as doing the arithmetic.
    """

    def __init__(self, flat, batch_size, eps=EPS):
        self.params, self.grads, self.eps = flat, torch.zeros_like(flat), eps
        self.weights, shifts, self.gammas = parameter_views(self.params)
        _, d_shifts, self.d_gammas = parameter_views(self.grads)
        self.vectors, self.d_vectors = self.params[weight_count():], self.grads[weight_count():]
        fan_in, hidden = WIDTHS[0], WIDTHS[1:-1]
        buffer = lambda *shape: torch.empty(*shape, dtype=flat.dtype)  # noqa: E731
        self.x, self.onehot = buffer(batch_size, fan_in), buffer(batch_size, WIDTHS[-1])
        self.z, self.h, self.dz, self.dh = ([buffer(2, batch_size, width) for width in hidden] for _ in range(4))
        self.logits, self.d_logits = buffer(2, batch_size, WIDTHS[-1]), buffer(2, batch_size, WIDTHS[-1])
        self.saved = [None] * len(hidden)
        # the first layer of both networks as one matrix: W (784, 200); x W and dL/d(x W) (N, 200)
        self.first_weight = self.weights[0].transpose(0, 1).reshape(fan_in, -1)
        self.first_z, self.first_dz = buffer(batch_size, 2 * hidden[0]), buffer(batch_size, 2 * hidden[0])
        self.first_z_nets = self.first_z.view(batch_size, 2, -1).transpose(0, 1)
        self.first_dz_nets = self.first_dz.view(batch_size, 2, -1).transpose(0, 1)
        self.x_transposed = self.x.T
        # per-network views, indexed [layer][network]
        self.z_nets, self.dz_nets = [tuple(z) for z in self.z], [tuple(dz) for dz in self.dz]
        self.shift_nets, self.d_shift_nets = [tuple(b) for b in shifts], [tuple(db) for db in d_shifts]
        self.output_bias, self.d_output_bias = shifts[-1].unsqueeze(1), d_shifts[-1]
        # each network's matrices transposed, (2, a, b) -> (2, b, a): u^T and W^T
        self.h_transposed = [h.transpose(1, 2) for h in self.h]
        self.weights_transposed = [None] + [w.transpose(1, 2) for w in self.weights[1:]]

    def forward(self, batch_mean, batch_var):
        """Both networks' forward pass on ``self.x``; the BN batch statistics are written to ``batch_*[layer]``."""
        torch.mm(self.x, self.first_weight, out=self.first_z)  # x W for both networks: (N, 784) @ (784, 200)
        self.z[0].copy_(self.first_z_nets)
        for layer, (z, h) in enumerate(zip(self.z, self.h)):
            if layer:
                torch.bmm(self.h[layer - 1], self.weights[layer], out=z)  # z = u W
            z_base, z_bn = self.z_nets[layer]
            bias, beta = self.shift_nets[layer]
            z_base.add_(bias)  # baseline: z = u W + b
            normalized, saved = bn_forward_tensor(z_bn, self.gammas[layer], beta, self.eps)
            z_bn.copy_(normalized)  # BN network: z = gamma (u W - mu_B) / sqrt(sigma_B^2 + eps) + beta
            batch_mean[layer].copy_(saved.mean)  # mu_B
            batch_var[layer].copy_(saved.var)  # sigma_B^2, biased: the one that normalized
            self.saved[layer] = saved
            torch.sigmoid(z, out=h)
        torch.baddbmm(self.output_bias, self.h[-1], self.weights[-1], out=self.logits)  # logits = u W + b

    def backward_and_update(self, lr):
        """Backpropagate the summed cross-entropy; update every parameter by SGD with step lr / N."""
        step = -lr / len(self.x)  # the loss is the batch MEAN: its 1/N lands here
        # dL/dlogits = softmax(logits) - onehot; exp, sum and divide take a third of torch.softmax's time here
        torch.sub(self.logits, torch.amax(self.logits, 2, keepdim=True), out=self.d_logits).exp_()
        self.d_logits.div_(self.d_logits.sum(2, keepdim=True)).sub_(self.onehot)
        torch.sum(self.d_logits, 1, out=self.d_output_bias)
        torch.bmm(self.d_logits, self.weights_transposed[-1], out=self.dh[-1])  # dL/du = dL/dz W^T
        self.weights[-1].baddbmm_(self.h_transposed[-1], self.d_logits, alpha=step)  # W -= lr/N u^T dL/dz
        for layer in reversed(range(len(self.z))):
            dz = torch.ops.aten.sigmoid_backward.grad_input(self.dh[layer], self.h[layer], grad_input=self.dz[layer])
            dz_base, dz_bn = self.dz_nets[layer]
            d_bias, d_beta = self.d_shift_nets[layer]
            torch.sum(dz_base, 0, out=d_bias)  # baseline: dL/db = sum_i dL/dz_i
            d_normalized, d_gamma, d_beta_value = bn_backward_tensor(dz_bn, self.saved[layer])
            self.d_gammas[layer].copy_(d_gamma)
            d_beta.copy_(d_beta_value)
            dz_bn.copy_(d_normalized)  # BN network: dL/d(u W)
            if layer:
                torch.bmm(dz, self.weights_transposed[layer], out=self.dh[layer - 1])  # dL/du = dL/dz W^T
                self.weights[layer].baddbmm_(self.h_transposed[layer - 1], dz, alpha=step)  # W -= lr/N u^T dL/dz
        self.first_dz_nets.copy_(self.dz[0])
        self.first_weight.addmm_(self.x_transposed, self.first_dz, alpha=step)  # W -= lr/N x^T dL/d(x W)
        self.vectors.add_(self.d_vectors, alpha=step)  # biases, betas, gammas

    def sgd_step(self, lr, batch_mean, batch_var):
        """One SGD step on the batch in ``self.x`` / ``self.onehot``."""
        self.forward(batch_mean, batch_var)
        self.backward_and_update(lr)


def train_two_networks(images, labels, steps, batch_size, lr, init_std, seed, checkpoints, progress=True):
    """Train both networks; return the checkpoints' weights and every step's BN batch statistics.

    Returns a dict of tensors: ``steps`` (C+1,) the checkpoint steps (0 = initial weights),
    ``parameters`` (C+1, P) the flat parameters there, ``batch_mean`` and ``batch_var`` (steps, 3, 100)
    the BN network's per-step batch mean and biased batch variance of ``u W`` in each hidden layer.
    The dtype of ``images`` sets the computation's dtype.
    """
    from tqdm.auto import tqdm

    if checkpoints < 1 or steps % checkpoints:
        raise ValueError(f"steps ({steps}) must be a positive multiple of checkpoints ({checkpoints}), "
                         f"so that the checkpoints are evenly spaced")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {batch_size}")
    dtype = images.dtype
    onehots = torch.nn.functional.one_hot(labels, WIDTHS[-1]).to(dtype)
    order = batch_order(len(images), steps, batch_size, seed).view(steps, batch_size)
    nets = TwoNetworks(initial_parameters(init_std, seed, dtype), batch_size)
    every = steps // checkpoints
    saved = torch.empty(checkpoints + 1, nets.params.numel(), dtype=dtype)
    hidden = (len(WIDTHS) - 2, WIDTHS[1])
    batch_mean = torch.empty(steps, *hidden, dtype=dtype)
    batch_var = torch.empty(steps, *hidden, dtype=dtype)
    for step in tqdm(range(steps), desc="training both networks", unit="step", disable=not progress,
                     mininterval=0.5):
        if step % every == 0:
            saved[step // every].copy_(nets.params)
        batch = order[step]
        torch.index_select(images, 0, batch, out=nets.x)
        torch.index_select(onehots, 0, batch, out=nets.onehot)
        nets.sgd_step(lr, batch_mean[step], batch_var[step])
    saved[-1].copy_(nets.params)
    return {"steps": torch.arange(0, steps + 1, every), "parameters": saved,
            "batch_mean": batch_mean, "batch_var": batch_var}
