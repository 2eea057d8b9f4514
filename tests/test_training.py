"""The shared training loop and evaluation, and chapter 7's network."""

import numpy as np
import pytest
import torch
from torch import nn

import bnlib
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import (accuracy, consecutive_batches, evaluate, mnist, random_batches, small_model_settings,
                                   sgd_step, train_mlp)


@pytest.mark.parametrize("norm, layer_type", [("batch", bnlib.BatchNorm1d), ("layer", nn.LayerNorm),
                                              ("group", nn.GroupNorm)])
def test_chapter_mlp_is_the_paper_network_with_relu_and_the_chosen_norm(norm, layer_type):
    model = chapter_mlp(norm)
    assert [type(layer) for layer in model] == [nn.Linear, layer_type, nn.ReLU] * 3 + [nn.Linear]
    assert [layer.out_features for layer in model if isinstance(layer, nn.Linear)] == [100, 100, 100, 10]
    assert all(layer.bias is None for layer in list(model)[:-1] if isinstance(layer, nn.Linear))
    assert model[0].weight.std().item() == pytest.approx(0.05, rel=0.02)


def test_chapter_mlp_without_norm_keeps_the_biases_and_is_reproducible():
    model = chapter_mlp("none", seed=3)
    assert [type(layer) for layer in model] == [nn.Linear, nn.ReLU] * 3 + [nn.Linear]
    assert model[0].bias is not None
    assert torch.equal(model[0].weight, chapter_mlp("none", seed=3)[0].weight)
    assert not torch.equal(model[0].weight, chapter_mlp("none", seed=4)[0].weight)


def test_bad_norm_and_batch_size_and_lr_are_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        chapter_mlp("instance")
    with pytest.raises(ValueError, match="at least 2"):
        random_batches(100, 1, 5)
    with pytest.raises(ValueError, match="lr must be positive"):
        train_mlp(chapter_mlp(), torch.zeros(4, 784), torch.zeros(4, dtype=torch.int64), [], 0.0)


def test_training_lowers_the_loss_and_is_deterministic():
    images, labels = mnist(train=True)
    batches = random_batches(len(labels), 32, 200, seed=5)
    runs = [train_mlp(chapter_mlp("batch", seed=1), images, labels, batches, 0.1) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0][-40:].mean() < 0.5 * runs[0][:10].mean()


def test_a_step_with_two_forward_passes_uses_the_mean_of_their_losses_with_separate_statistics():
    images, labels = mnist(train=True)
    first, second = torch.arange(0, 8), torch.arange(8, 16)
    model = chapter_mlp("batch", seed=2)
    expected = 0.5 * sum(nn.functional.cross_entropy(chapter_mlp("batch", seed=2)(images[g]), labels[g]).item()
                         for g in (first, second))
    losses = train_mlp(model, images, labels, [[first, second]], 0.1)
    assert losses[0] == pytest.approx(expected, rel=1e-6)
    joint = nn.functional.cross_entropy(chapter_mlp("batch", seed=2)(images[:16]), labels[:16]).item()
    assert abs(losses[0] - joint) > 1e-4  # one batch of 16 is normalized differently


def test_momentum_is_the_heavy_ball_rule():
    """v <- mu v + g, w <- w - lr v, checked against the two steps written out by hand."""
    images, labels = mnist(train=True)
    batches = random_batches(len(labels), 16, 2, seed=7)
    lr, mu = 0.1, 0.9
    model = chapter_mlp("none", seed=4)
    train_mlp(model, images, labels, batches, lr, momentum=mu)

    def gradients(net, batch):
        net.zero_grad()
        nn.functional.cross_entropy(net(images[batch]), labels[batch]).backward()
        return [p.grad.clone() for p in net.parameters()]

    by_hand = chapter_mlp("none", seed=4)
    first = gradients(by_hand, batches[0][0])
    with torch.no_grad():
        for p, g in zip(by_hand.parameters(), first):
            p -= lr * g
    second = gradients(by_hand, batches[1][0])
    with torch.no_grad():
        for p, g0, g1 in zip(by_hand.parameters(), first, second):
            p -= lr * (mu * g0 + g1)
    for trained, expected in zip(model.parameters(), by_hand.parameters()):
        torch.testing.assert_close(trained, expected, rtol=1e-5, atol=1e-6)
    plain = chapter_mlp("none", seed=4)
    train_mlp(plain, images, labels, batches, lr)
    assert (plain[0].weight - model[0].weight).abs().max() > 1e-4


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_sgd_step_is_torchs_sgd_to_the_last_bit(momentum):
    """Three steps on a network with a frozen layer (no gradient): the same numbers as ``torch.optim.SGD``."""
    images, labels = mnist(train=True)
    batches = random_batches(len(labels), 16, 3, seed=8)
    ours, torchs = chapter_mlp("batch", seed=6), chapter_mlp("batch", seed=6)
    for model in (ours, torchs):
        model[0].weight.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in torchs.parameters() if p.requires_grad], lr=0.3, momentum=momentum)
    parameters = [p for p in ours.parameters() if p.requires_grad]
    velocities = [None] * len(parameters)
    for (batch,) in batches:
        for model in (ours, torchs):
            model.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
        optimizer.step()
        sgd_step(parameters, velocities, 0.3, momentum)
    for mine, theirs in zip(ours.parameters(), torchs.parameters()):
        assert torch.equal(mine, theirs)
    assert not torch.equal(ours[3].weight, chapter_mlp("batch", seed=6)[3].weight)


def test_checkpoints_are_called_after_that_many_updates():
    images, labels = mnist(train=True)
    model, seen = chapter_mlp("layer"), []
    weights = []
    train_mlp(model, images, labels, random_batches(len(labels), 8, 10), 0.1, checkpoints=(0, 4, 10),
              on_checkpoint=lambda step: (seen.append(step), weights.append(model[0].weight.clone())))
    assert seen == [0, 4, 10]
    assert torch.equal(weights[0], chapter_mlp("layer")[0].weight)
    assert not torch.equal(weights[1], weights[2])


def test_accuracy_in_train_mode_uses_batch_statistics_and_leaves_the_running_ones_alone():
    import copy

    images, labels = mnist(train=False)
    images, labels = images[:512], labels[:512]
    model = chapter_mlp("batch")
    train_mlp(model, *mnist(train=True), random_batches(60000, 32, 50), 0.1)
    before = model[1].running_mean.clone()
    batches = consecutive_batches(512, 4)
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        by_hand = np.mean([(twin(images[b]).argmax(1) == labels[b]).float().mean().item() for b in batches])
        eval_by_hand = (copy.deepcopy(model).eval()(images).argmax(1) == labels).float().mean().item()
    assert accuracy(model, images, labels, batches) == pytest.approx(by_hand, abs=1e-9)
    assert torch.equal(model[1].running_mean, before)
    assert accuracy(model, images, labels) == pytest.approx(eval_by_hand, abs=1e-9)
    assert model.training
    assert [b.tolist() for b in consecutive_batches(10, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_small_model_settings_use_one_thread_flush_subnormals_and_restore_both_even_after_an_error():
    subnormal = torch.tensor([1e-39])  # below float32's smallest normal number, about 1.2e-38
    threads = torch.get_num_threads()
    assert (subnormal * 1.0).item() > 0
    with pytest.raises(RuntimeError, match="inside"):
        with small_model_settings():
            assert torch.get_num_threads() == 1
            assert (subnormal * 1.0).item() == 0.0
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads
    assert (subnormal * 1.0).item() > 0


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_evaluation_leaves_the_model_in_its_mode_and_its_running_statistics_alone(mode):
    model = chapter_mlp("batch", seed=5).train(mode == "train")
    images, labels = torch.randn(1_100, 784), torch.randint(10, (1_100,))  # chunks of 500, 500 and 100 in eval
    state = {key: value.clone() for key, value in model.state_dict().items()}
    loss, correct = evaluate(model, images, labels)
    assert model.training == (mode == "train")
    with torch.no_grad():
        logits = model.eval()(images)
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item())
    assert correct == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    evaluate(model, images, labels, consecutive_batches(64, 8))  # train mode on a copy
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())
