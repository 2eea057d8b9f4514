"""Bad input gets a clear error naming the problem, from the numpy and the torch implementation alike."""

import numpy as np
import pytest
import torch

from bnlib import BatchNorm1d, BatchNorm2d, batch_norm_backward, batch_norm_forward, batch_norm_train


def numpy_forward(x):
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[1] if x.ndim > 1 else 1
    return batch_norm_forward(x, np.ones(channels), np.zeros(channels))


def torch_functional(x):
    return batch_norm_train(torch.as_tensor(np.asarray(x, dtype=np.float64)), None, None)


def layer_for(x):
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    layer = (BatchNorm2d if x.dim() == 4 else BatchNorm1d)(x.shape[1], dtype=torch.float64)
    return layer(x)


IMPLEMENTATIONS = [numpy_forward, torch_functional, layer_for]


@pytest.mark.parametrize("run", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(1, 5), (1, 3, 1), (1, 2, 1, 1)])
def test_one_value_per_channel_in_training_is_refused_like_torch(run, shape):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        run(np.random.default_rng(0).normal(size=shape))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.nn.functional.batch_norm(torch.zeros(shape), None, None, training=True)


@pytest.mark.parametrize("run", IMPLEMENTATIONS)
def test_one_sample_is_fine_when_it_has_several_values_per_channel(run):
    run(np.random.default_rng(0).normal(size=(1, 2, 3, 3)))


def test_one_sample_is_fine_in_eval_mode():
    layer = BatchNorm1d(4).eval()
    assert layer(torch.randn(1, 4)).shape == (1, 4)
    layer = BatchNorm1d(4, track_running_stats=False).eval()  # no running statistics to fall back on
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 4))


@pytest.mark.parametrize("run", [numpy_forward, torch_functional])
@pytest.mark.parametrize("shape", [(), (6,)])
def test_fewer_than_two_dimensions_are_refused(run, shape):
    with pytest.raises(ValueError, match=r"\(N, C\).*got shape"):
        run(np.ones(shape))


@pytest.mark.parametrize("layer, shape, expected", [
    (BatchNorm1d(3), (2, 3, 4, 4), "BatchNorm1d expects a 2D or 3D input"),
    (BatchNorm1d(3), (3,), "BatchNorm1d expects a 2D or 3D input"),
    (BatchNorm2d(3), (2, 3, 4), "BatchNorm2d expects a 4D input"),
    (BatchNorm2d(3), (2, 3), "BatchNorm2d expects a 4D input"),
])
def test_wrong_number_of_dimensions_names_the_layer_and_the_fix(layer, shape, expected):
    with pytest.raises(ValueError, match=expected) as error:
        layer(torch.zeros(shape))
    assert "BatchNorm2d for (N, C, H, W)" in str(error.value)


@pytest.mark.parametrize("layer, shape", [(BatchNorm1d(3), (4, 5)), (BatchNorm2d(3), (4, 2, 5, 5)),
                                          (BatchNorm2d(3).eval(), (4, 5, 5, 3))])
def test_wrong_number_of_channels_is_refused(layer, shape):
    with pytest.raises(ValueError, match=rf"expected 3 channels on axis 1.*with {shape[1]}"):
        layer(torch.zeros(shape))


@pytest.mark.parametrize("name, shape", [("gamma", (4,)), ("gamma", (3, 1)), ("beta", (2,)), ("beta", ())])
def test_numpy_gamma_and_beta_must_have_one_value_per_channel(name, shape):
    params = {"gamma": np.ones(3), "beta": np.zeros(3), name: np.ones(shape)}
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        batch_norm_forward(np.ones((4, 3)), **params)


def test_numpy_backward_needs_an_upstream_gradient_of_the_input_shape():
    _, cache = numpy_forward(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match="dout must have the shape"):
        batch_norm_backward(np.ones((4, 2)), cache)


def test_non_real_input_is_a_type_error():
    with pytest.raises(TypeError, match="x must be an array of real numbers"):
        batch_norm_forward(np.ones((4, 3), dtype=complex), np.ones(3), np.zeros(3))


@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), float("inf")])
def test_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="eps must be positive"):
        batch_norm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3), eps=eps)
    with pytest.raises(ValueError, match="eps must be positive"):
        batch_norm_train(torch.ones(4, 3), None, None, eps=eps)
    layer = BatchNorm1d(3, eps=eps)  # the layers check eps when they use it, as torch's do
    with pytest.raises(ValueError, match="eps must be positive"):
        layer(torch.ones(4, 3))


def test_layers_accept_eps_zero_with_running_statistics_like_torch():
    """torch.nn.functional.batch_norm refuses eps <= 0 only in training, and a negative eps always."""
    x = torch.randn(4, 3)
    for cls in (BatchNorm1d, torch.nn.BatchNorm1d):
        layer = cls(3, eps=0.0).eval()
        torch.testing.assert_close(layer(x), x)  # running statistics: mean 0, variance 1
        with pytest.raises(ValueError, match="eps must be positive"):
            layer.train()(x)
        layer.eps = -1e-5
        with pytest.raises(ValueError, match="eps must be non-negative"):
            layer.eval()(x)


def test_eps_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="eps must be a float"):
        BatchNorm2d(3, eps="1e-5")(torch.ones(2, 3, 2, 2))


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_momentum_must_lie_in_the_unit_interval(momentum):
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\].*keras_to_torch_momentum"):
        BatchNorm1d(3, momentum=momentum)


def test_momentum_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="momentum must be a float in"):
        BatchNorm1d(3, momentum="0.1")


@pytest.mark.parametrize("num_features", [0, -2])
def test_num_features_must_be_at_least_one(num_features):
    with pytest.raises(ValueError, match="num_features must be at least 1"):
        BatchNorm1d(num_features)


@pytest.mark.parametrize("num_features", [2.5, "4", True])
def test_num_features_must_be_an_int(num_features):
    with pytest.raises(TypeError, match="num_features must be an int"):
        BatchNorm2d(num_features)


@pytest.mark.parametrize("layer", [BatchNorm1d(3), BatchNorm1d(3, affine=False)])
def test_input_of_another_dtype_than_the_layer_is_a_type_error(layer):
    with pytest.raises(TypeError, match=r"holds torch.float32 parameters but got a torch.float64 input"):
        layer(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"holds torch.float16 parameters but got a torch.float32 input"):
        layer.half()(torch.randn(4, 3))
    with pytest.raises(RuntimeError):  # torch refuses the same combinations
        torch.nn.BatchNorm1d(3).half()(torch.randn(4, 3))


@pytest.mark.parametrize("run", [numpy_forward, torch_functional])
@pytest.mark.parametrize("shape", [(0, 3), (2, 3, 0)])
def test_functions_returning_batch_statistics_refuse_an_empty_batch(run, shape):
    """The layers return an empty output for an empty batch, as torch's do (tests/test_torch_compat.py);
    the functions also return the batch statistics, and an empty batch has none."""
    with pytest.raises(ValueError, match="empty input of size"):
        run(np.ones(shape))
