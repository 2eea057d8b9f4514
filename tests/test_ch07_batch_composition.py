"""Non-representative batches (notebook 07): class-sorted batches and the GAN discriminator case."""

import numpy as np
import pytest
import torch

from bnlib.course.ch07.batch_composition import (GAN_CONFIG, GanRun, class_sorted_test_batches, composition_figure,
                                                 discriminator_batches, gan_discriminator, real_and_fake,
                                                 sorted_batches, sorted_vs_shuffled, statistic_gap, train_eval_gaps)
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.training import mnist, random_batches, train_mlp

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)

RANDOM_BATCH_GAP = np.sqrt(2 / np.pi / 60)  # E|N(0, 1/m)| at m = 60


@pytest.fixture(scope="module")
def rows():
    return train_eval_gaps()


def test_sorted_batches_hold_one_class_each_in_turn():
    _, labels = mnist(train=True)
    batches = sorted_batches(labels, 16, 25, seed=3)
    assert [int(labels[b[0]].unique().item()) for b in batches] == [step % 10 for step in range(25)]
    _, test_labels = mnist(train=False)
    test_batches = class_sorted_test_batches(test_labels, 60)
    assert all(len(test_labels[b].unique()) == 1 and len(b) == 60 for b in test_batches)
    assert len(set(torch.cat(test_batches).tolist())) == sum(len(b) for b in test_batches)


def test_fakes_are_digits_with_their_pixels_shuffled():
    images, labels = real_and_fake()
    n = len(labels) // 2
    source, _ = mnist(train=True)
    fake = images[n:]
    assert labels[:n].eq(1).all() and labels[n:].eq(0).all()
    assert torch.equal(fake.sort(1).values, source[n:2 * n].sort(1).values)  # same ink per image
    assert (fake != source[n:2 * n]).any(1).float().mean() > 0.99


def test_discriminator_batches_are_separate_or_mixed():
    separate = discriminator_batches(100, 0, 80, 4, 3, seed=0, separate=True)
    mixed = discriminator_batches(100, 0, 80, 4, 3, seed=0, separate=False)
    assert all(len(s) == 2 and s[0].max() < 80 and s[1].min() >= 100 for s in separate)
    assert all(torch.equal(m[0], torch.cat(s)) for m, s in zip(mixed, separate))


def test_statistic_gap_is_the_mean_standardized_distance_of_the_batch_mean():
    images, labels = mnist(train=True)
    model = chapter_mlp("batch")
    train_mlp(model, images, labels, random_batches(len(labels), 32, 20), 0.1)
    batch = torch.arange(50)
    with torch.no_grad():
        h = model[0](images[batch]).double()
    norm = model[1]
    by_hand = ((h.mean(0) - norm.running_mean.double()).abs() / norm.running_var.double().sqrt()).mean().item()
    assert statistic_gap(model, images, [batch]) == pytest.approx(by_hand, rel=1e-5)


def test_class_sorted_training_breaks_eval_mode(rows):
    """Notebook: trained on sorted batches, far better in train mode on sorted batches than in eval mode, where
    it is near chance; trained on shuffled batches, the same in both modes."""
    bad, good = rows["sorted by class"], rows["shuffled"]
    assert bad["eval_mode"] < 0.2
    assert bad["train_mode"] - bad["eval_mode"] > 0.3
    assert good["eval_mode"] > 0.93 and abs(good["train_mode"] - good["eval_mode"]) < 0.03


def test_separate_real_and_fake_batches_break_the_discriminator_in_eval_mode(rows):
    """Notebook: separate batches, right most of the time in train mode and much less often in eval mode; mixed,
    right nearly always in both."""
    bad, good = rows["GAN: all-real, all-fake"], rows["GAN: mixed 50/50"]
    assert bad["train_mode"] > 0.9 and bad["eval_mode"] < 0.8
    assert good["train_mode"] > 0.98 and good["eval_mode"] > 0.98


def test_batch_means_of_non_representative_batches_sit_far_from_the_running_mean(rows):
    """Notebook: shuffled batches about a fifth above the sampling theory sqrt(2/pi)/sqrt(m) (0.12 against
    0.10), the discriminator's mixed batches of 64 about at theirs, several times more for class-sorted or
    one-kind batches."""
    assert rows["sorted by class"]["gap"] > 2.5 * rows["shuffled"]["gap"]
    assert rows["GAN: all-real, all-fake"]["gap"] > 2 * rows["GAN: mixed 50/50"]["gap"]
    assert 1.1 * RANDOM_BATCH_GAP < rows["shuffled"]["gap"] < 1.4 * RANDOM_BATCH_GAP
    mixed_theory = np.sqrt(2 / np.pi / (2 * GAN_CONFIG.half_batch))
    assert 0.85 * mixed_theory < rows["GAN: mixed 50/50"]["gap"] < 1.15 * mixed_theory


def test_figure_plots_the_rows(rows):
    _, data = composition_figure()
    assert data == rows
    assert sorted_vs_shuffled()["eval_accuracy"][0] == pytest.approx(rows["sorted by class"]["eval_mode"])
    assert gan_discriminator()["eval_accuracy"][1] == pytest.approx(rows["GAN: mixed 50/50"]["eval_mode"])


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="batch_size"):
        GAN_CONFIG.replace(batch_size=64)  # the discriminator's batches are two halves: half_batch
    with pytest.raises(TypeError, match="SortedRun"):
        sorted_vs_shuffled(GAN_CONFIG)
    with pytest.raises(ValueError, match="different MNIST training digits"):
        GanRun(train_per_kind=30_000)
    with pytest.raises(ValueError, match="half_batch must be at least 2"):
        GAN_CONFIG.replace(half_batch=1)
    with pytest.raises(ValueError, match="to test on whole batches"):
        GanRun(held_out_per_kind=16)
