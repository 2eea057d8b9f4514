"""bnlib's torch layers against torch.nn.BatchNorm1d/2d: outputs, gradients and running statistics."""

import pytest
import torch

from bnlib import BatchNorm1d, BatchNorm2d


def random_pair(ours_cls, torch_cls, channels, dtype=torch.float64, **kwargs):
    """Our layer and torch's with the same random (not default) weights."""
    ours, theirs = ours_cls(channels, dtype=dtype, **kwargs), torch_cls(channels, dtype=dtype, **kwargs)
    if ours.affine:
        with torch.no_grad():
            ours.weight.normal_()
            ours.bias.normal_()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("ours_cls, torch_cls, shape", [
    (BatchNorm1d, torch.nn.BatchNorm1d, (16, 5)),
    (BatchNorm1d, torch.nn.BatchNorm1d, (8, 5, 7)),
    (BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 6)),
])
def test_training_step_matches_torch(ours_cls, torch_cls, shape):
    ours, theirs = random_pair(ours_cls, torch_cls, shape[1])
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    upstream = torch.randn_like(y_ours)
    y_ours.backward(upstream)
    y_theirs.backward(upstream)
    torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=1e-10)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=0, atol=1e-10)
    for name, buffer in theirs.named_buffers():
        torch.testing.assert_close(getattr(ours, name), buffer, rtol=0, atol=1e-12)
