"""The ``BatchNorm1d`` notebook 03 writes: about 30 lines with torch's parameters, buffers and modes.

Deliberately simpler than the library's ``bnlib.BatchNorm1d``: (N, C) inputs only, autograd
differentiates the forward, no input checks and no options (affine, track_running_stats,
momentum=None). It keeps torch's names, so ``load_state_dict`` works both ways with
``torch.nn.BatchNorm1d``, and notebook 03 checks it against torch number for number.
"""

import torch
from torch import nn


class BatchNorm1d(nn.Module):
    """Batch norm over an (N, C) batch: batch statistics in training, running statistics in evaluation."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))   # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=0)                # mu, over the batch
            var = x.var(dim=0, unbiased=False)  # sigma^2, biased (over m): it normalizes this batch
            with torch.no_grad():               # the running statistics take no part in the gradient
                m = x.shape[0]
                self.running_mean.lerp_(mean, self.momentum)              # running + momentum (mu - running)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)  # ... with the unbiased variance
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var  # evaluation: fixed statistics, no batch needed
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x_hat + self.bias
