"""The fast trainer behind the reproduction of Ioffe & Szegedy (2015), Figure 1: two MLPs trained at once.

The experiment (section 4.1): 784 inputs, three fully connected hidden layers of 100 sigmoid units, a
10-way output with cross-entropy, 50,000 steps of 60 examples. The batch-norm network computes
``sigmoid(BN(W u))`` in each hidden layer and drops the bias (``beta`` takes its place).

The paper leaves some choices open. Ours:

- initial weights N(0, 0.01^2), biases 0, ``gamma`` 1, ``beta`` 0. "Small random Gaussian values": with
  this scale the baseline starts with tiny pre-activations and has to grow its weights, so its sigmoid
  inputs wander visibly (the paper's Figure 1b); with N(0, 0.1^2) both networks train well and the
  difference in drift shrinks.
- plain SGD with learning rate 0.5 on the batch's mean cross-entropy; no momentum, no weight decay.
  Both networks train with it; the baseline does not diverge and the BN network does not stall.
- both networks start from the same weights and see the same mini-batches in the same order.
- test accuracy and the sigmoid inputs are measured at evenly spaced checkpoints, in inference mode: the
  BN network normalizes with running statistics (PyTorch's default momentum 0.1) replayed from the
  batch statistics recorded at every step.

Speed. At batch 60 the arithmetic is small (well under a millisecond per step); a naive
``nn.Sequential`` + ``torch.optim`` loop spends most of its time in Python and operator dispatch. Here:

- both networks train in one batched computation: each layer is one ``torch.bmm`` over a leading axis
  of size 2 (index 0 the baseline, index 1 the BN network);
- forward and backward are written out by hand (no autograd graph) into buffers allocated once;
- all parameters live in one flat tensor and all gradients in another: the SGD step is one operation;
- the loss's 1/N is folded into the learning rate (the backward pass is linear in d loss / d logits);
- MNIST is one preloaded tensor, and a mini-batch is one ``index_select``;
- the test set is evaluated after training, from the weights saved at the checkpoints.
"""

import math
from contextlib import contextmanager

import torch
from torch import nn

from .layers import bn_backward_tensor, bn_forward_tensor
from .models import paper_mlp

WIDTHS = (784, 100, 100, 100, 10)
NETWORKS = ("baseline", "batch norm")
EPS = 1e-5


@contextmanager
def single_thread():
    """Run torch on one thread, subnormal floats flushed to zero; restore the thread count afterwards.

    The matrices are small: a second thread costs more in synchronization than it saves, and much more
    when other programs share the cores. Subnormal floats (below 1e-38) are slow on most CPUs.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def parameter_views(flat, widths=WIDTHS):
    """Views into one flat tensor: ``weights[l]`` (fan_in, 2, fan_out), ``shifts[l]`` (2, fan_out), ``gammas[l]``.

    ``weights[l][:, 0]`` is the baseline's W (``nn.Linear.weight.T``), ``weights[l][:, 1]`` the BN
    network's: side by side, so the first layer of both networks is one (784, 200) matrix.
    ``shifts[l][0]`` is the baseline's bias, ``shifts[l][1]`` the BN network's ``beta`` (its output
    layer has an ordinary bias). ``gammas`` belong to the BN network's hidden layers only.
    """
    weights, shifts, gammas, start = [], [], [], 0
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        for shape, views in (((fan_in, 2, fan_out), weights), ((2, fan_out), shifts)):
            size = math.prod(shape)
            views.append(flat[start:start + size].view(shape))
            start += size
        if layer < len(widths) - 2:
            gammas.append(flat[start:start + fan_out])
            start += fan_out
    if start != flat.numel():
        raise ValueError(f"a flat parameter tensor for widths {widths} holds {start} values, not {flat.numel()}")
    return weights, shifts, gammas


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
        weight[:] = linear.weight.detach().T.unsqueeze(1)  # nn.Linear stores (out, in); we compute u @ W
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
                linear.weight.copy_(weights[layer][:, net].T)
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

    Activations are laid out (N, 2, width): example, network, unit. The first layer of both networks is
    one matrix product ``x @ W`` with W of shape (784, 200); the others are one ``torch.bmm`` each,
    batched over the network axis through transposed views. Every buffer and view is made once here:
    at batch 60 even taking a view (about a microsecond) adds up over 50,000 steps.
    """

    def __init__(self, flat, batch_size, eps=EPS):
        self.params, self.grads, self.eps = flat, torch.zeros_like(flat), eps
        weights, shifts, self.gammas = parameter_views(self.params)
        d_weights, d_shifts, self.d_gammas = parameter_views(self.grads)
        buffer = lambda width: torch.empty(batch_size, 2, width, dtype=flat.dtype)  # noqa: E731
        self.x = torch.empty(batch_size, WIDTHS[0], dtype=flat.dtype)
        self.onehot = torch.empty(batch_size, 1, WIDTHS[-1], dtype=flat.dtype)
        self.z, self.h, self.dz, self.dh = ([buffer(width) for width in WIDTHS[1:-1]] for _ in range(4))
        self.logits, self.d_logits = buffer(WIDTHS[-1]), buffer(WIDTHS[-1])
        self.saved = [None] * len(self.z)
        by_net = lambda tensors, axis: [(t.select(axis, 0), t.select(axis, 1)) for t in tensors]  # noqa: E731
        self.z_nets, self.dz_nets = by_net(self.z, 1), by_net(self.dz, 1)
        self.shift_nets, self.d_shift_nets = by_net(shifts, 0), by_net(d_shifts, 0)
        self.d_output_bias = d_shifts[-1]
        self.output_bias = shifts[-1]
        # (fan_in, 2, fan_out) -> (2, fan_in, fan_out) for bmm, and W^T per network: (2, fan_out, fan_in)
        self.w_batched = [w.transpose(0, 1) for w in weights]
        self.w_transposed = [w.permute(1, 2, 0) for w in weights]
        self.d_w_batched = [d.transpose(0, 1) for d in d_weights]
        self.first_layer = (self.x, weights[0].view(WIDTHS[0], -1), self.z[0].view(batch_size, -1))
        self.first_layer_gradient = (self.x.T, self.dz[0].view(batch_size, -1), d_weights[0].view(WIDTHS[0], -1))
        batched = lambda tensors: [t.transpose(0, 1) for t in tensors]  # noqa: E731
        self.h_batched, self.z_batched, self.dz_batched, self.dh_batched = (
            batched(self.h), batched(self.z), batched(self.dz), batched(self.dh))
        self.h_for_gradient = [h.permute(1, 2, 0) for h in self.h]  # u^T per network: (2, width, N)
        self.logits_batched, self.d_logits_batched = batched([self.logits, self.d_logits])

    def forward(self, batch_mean, batch_var):
        """Both networks' forward pass on ``self.x``; the BN batch statistics are written to ``batch_*[layer]``."""
        x, weight, z = self.first_layer
        torch.mm(x, weight, out=z)  # z = x W for both networks: (N, 784) @ (784, 200)
        for layer, (z_base, z_bn) in enumerate(self.z_nets):
            if layer:
                torch.bmm(self.h_batched[layer - 1], self.w_batched[layer], out=self.z_batched[layer])  # z = u W
            bias, beta = self.shift_nets[layer]
            z_base.add_(bias)  # baseline: z = u W + b
            normalized, saved = bn_forward_tensor(z_bn, self.gammas[layer], beta, self.eps)
            z_bn.copy_(normalized)  # BN network: z = gamma (u W - mu_B) / sqrt(sigma_B^2 + eps) + beta
            batch_mean[layer].copy_(saved.mean)  # mu_B
            batch_var[layer].copy_(saved.var)  # sigma_B^2, biased: the one that normalized
            self.saved[layer] = saved
            torch.sigmoid(self.z[layer], out=self.h[layer])
        torch.bmm(self.h_batched[-1], self.w_batched[-1], out=self.logits_batched)
        self.logits.add_(self.output_bias)  # both networks: logits = u W + b

    def backward(self):
        """Gradients of the summed cross-entropy into ``self.grads``."""
        torch.softmax(self.logits, 2, out=self.d_logits).sub_(self.onehot)  # dL/dlogits = softmax - onehot
        torch.bmm(self.h_for_gradient[-1], self.d_logits_batched, out=self.d_w_batched[-1])  # dL/dW = u^T dL/dz
        torch.sum(self.d_logits, 0, out=self.d_output_bias)
        torch.bmm(self.d_logits_batched, self.w_transposed[-1], out=self.dh_batched[-1])  # dL/du = dL/dz W^T
        for layer in reversed(range(len(self.z))):
            torch.ops.aten.sigmoid_backward.grad_input(self.dh[layer], self.h[layer], grad_input=self.dz[layer])
            dz_base, dz_bn = self.dz_nets[layer]
            d_bias, d_beta = self.d_shift_nets[layer]
            torch.sum(dz_base, 0, out=d_bias)  # baseline: dL/db = sum_i dL/dz_i
            d_normalized, d_gamma, d_beta_value = bn_backward_tensor(dz_bn, self.saved[layer])
            self.d_gammas[layer].copy_(d_gamma)
            d_beta.copy_(d_beta_value)
            dz_bn.copy_(d_normalized)  # BN network: dL/d(u W)
            if layer:
                torch.bmm(self.h_for_gradient[layer - 1], self.dz_batched[layer], out=self.d_w_batched[layer])
                torch.bmm(self.dz_batched[layer], self.w_transposed[layer], out=self.dh_batched[layer - 1])
        x_transposed, dz, d_weight = self.first_layer_gradient
        torch.mm(x_transposed, dz, out=d_weight)  # dL/dW = x^T dL/dz for both networks

    def sgd_step(self, lr, batch_mean, batch_var):
        """One SGD step on the batch in ``self.x`` / ``self.onehot`` (mean cross-entropy, so lr / N)."""
        self.forward(batch_mean, batch_var)
        self.backward()
        self.params.add_(self.grads, alpha=-lr / len(self.x))


def train_two_networks(images, labels, steps, batch_size, lr, init_std, seed, checkpoints, progress=True):
    """Train both networks; return the checkpoints' weights and every step's BN batch statistics.

    Returns a dict of tensors: ``steps`` (C+1,) the checkpoint steps (0 = initial weights),
    ``parameters`` (C+1, P) the flat parameters there, ``batch_mean`` and ``batch_var`` (steps, 3, 100)
    the BN network's per-step batch mean and biased batch variance of ``u W`` in each hidden layer.
    The dtype of ``images`` sets the computation's dtype.
    """
    from tqdm.auto import tqdm

    if steps % checkpoints:
        raise ValueError(f"steps ({steps}) must be a multiple of checkpoints ({checkpoints}) so they are evenly spaced")
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for batch norm in training, got {batch_size}")
    dtype = images.dtype
    onehots = torch.nn.functional.one_hot(labels, WIDTHS[-1]).to(dtype).unsqueeze(1)
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
