"""Non-representative batches: when a batch is not a small random sample of the data.

Batch norm assumes each batch looks like the data set in miniature, so that its mean and variance
are close to the running averages used at inference. Two common ways to break that:

- Batches sorted by class (data read in file order, or one class per batch): a batch of 60 "3"s has
  the mean of the 3s, not of the data. In training the network only ever sees each class normalized
  by its own statistics; in eval mode it meets the running averages, a blend of all classes.
- A GAN discriminator called on an all-real batch and then on an all-fake batch (the usual way to
  write a GAN training step): each half is normalized by its own statistics, so the feature that
  tells real from fake most simply, a shift of the mean, is subtracted away in training, and the
  network learns from what remains. At inference the running averages mix real and fake.

We measure the discrepancy two ways: the accuracy in train mode (batches composed as in training)
against eval mode, and how far a batch's mean sits from the running mean, in running standard
deviations, at the first batch-norm layer: mean over units of |mu_B - mu_run| / sqrt(var_run).
For a random batch of m examples this is about sqrt(2 / pi) / sqrt(m) (the mean absolute value of a
normal with std 1/sqrt(m)), about 0.1 at m = 60.

The fake images are real digits with their pixels shuffled (a different permutation per image): the
same amount of ink as a digit, no strokes, like the output of an early generator.
"""

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from bnlib.course.cache import Config, experiment
from bnlib.course.ch07.network import chapter_mlp
from bnlib.course.data import TRAIN_EXAMPLES
from bnlib.course.training import accuracy, consecutive_batches, mnist, random_batches, train_mlp


@dataclass(frozen=True)
class SortedRun(Config):
    """The settings of the class-sorted and the shuffled training runs (the same for both)."""

    steps: int = 1000
    batch_size: int = 60
    lr: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class GanRun(Config):
    """The GAN discriminator's settings: ``half_batch`` real and ``half_batch`` fake images per step;
    ``train_per_kind`` images of each kind to train on and ``held_out_per_kind`` to test on."""

    steps: int = 600
    half_batch: int = 32
    lr: float = 0.1
    seed: int = 0
    train_per_kind: int = 8000
    held_out_per_kind: int = 2000

    def __post_init__(self):
        if 2 * (self.train_per_kind + self.held_out_per_kind) > TRAIN_EXAMPLES:
            raise ValueError(f"train_per_kind + held_out_per_kind ({self.train_per_kind + self.held_out_per_kind}) "
                             f"must be at most {TRAIN_EXAMPLES // 2:,}: the real and the fake images are "
                             f"different MNIST training digits")
        if not 2 <= self.half_batch <= self.held_out_per_kind:
            raise ValueError(f"half_batch must be at least 2 (batch norm on each half) and at most held_out_per_kind "
                             f"({self.held_out_per_kind}), to test on whole batches; got {self.half_batch}")


SORTED_CONFIG = SortedRun()
GAN_CONFIG = GanRun()


def sorted_batches(labels, batch_size, steps, seed=0):
    """Batches of a single class each, the classes in turn (0, 1, ..., 9, 0, ...), drawn with replacement."""
    generator = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    batches = []
    for step in range(steps):
        members = by_class[step % len(by_class)]
        batches.append([members[torch.randint(len(members), (batch_size,), generator=generator)]])
    return batches


def class_sorted_test_batches(labels, batch_size):
    """The examples cut into single-class batches of ``batch_size`` (each class's remainder dropped)."""
    batches = []
    for c in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == c).flatten()
        batches += [members[b] for b in consecutive_batches(len(members), batch_size)]
    return batches


@torch.no_grad()
def statistic_gap(model, images, batches):
    """Mean over batches and units of |mu_B - mu_run| / sqrt(var_run) at the first batch-norm layer."""
    linear, norm = model[0], model[1]
    scale = norm.running_var.sqrt()
    return float(np.mean([((linear(images[b]).mean(0) - norm.running_mean).abs() / scale).mean().item()
                          for b in batches]))


@experiment("ch07_sorted_vs_shuffled", SortedRun)
def sorted_vs_shuffled(config):
    """Train on class-sorted and on shuffled batches; accuracies and statistic gaps (cached).

    Rows: trained on sorted, trained on shuffled. Columns of ``train_mode_accuracy`` and ``gap``:
    measured on class-sorted test batches, on shuffled test batches.
    """
    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    m = config.batch_size
    test_batches = [class_sorted_test_batches(test_labels, m),
                    [b[0] for b in random_batches(len(test_labels), m, len(test_labels) // m, seed=1)]]
    train_batches = [sorted_batches(labels, m, config.steps, config.seed),
                     random_batches(len(labels), m, config.steps, config.seed)]
    eval_accuracy, train_mode, gap = [], [], []
    with tqdm(total=2 * config.steps, desc="sorted vs shuffled batches") as bar:
        for batches in train_batches:
            model = chapter_mlp("batch", seed=config.seed)
            train_mlp(model, images, labels, batches, config.lr, progress=bar)
            eval_accuracy.append(accuracy(model, test_images, test_labels))
            train_mode.append([accuracy(model, test_images, test_labels, b) for b in test_batches])
            gap.append([statistic_gap(model, test_images, b) for b in test_batches])
    return {"eval_accuracy": eval_accuracy, "train_mode_accuracy": train_mode, "gap": gap}


def real_and_fake(config=GAN_CONFIG):
    """Images (real digits, then pixel-shuffled digits) and labels (1 real, 0 fake), ``2 n`` of each kind's
    ``n = train_per_kind + held_out_per_kind``: each kind's first ``train_per_kind`` are for training."""
    images, _ = mnist(train=True)
    n = config.train_per_kind + config.held_out_per_kind
    generator = torch.Generator().manual_seed(config.seed)
    source = images[n:2 * n]
    shuffled = torch.argsort(torch.rand(source.shape, generator=generator), dim=1)
    fake = torch.gather(source, 1, shuffled)
    labels = torch.cat([torch.ones(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)])
    return torch.cat([images[:n], fake]), labels


def discriminator_batches(n, first, count, half, steps, seed, separate):
    """Per step ``half`` real indices from [first, first + count) and ``half`` fake ones (offset ``n``):
    two forward passes (``separate``) or one mixed batch."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        real = first + torch.randint(count, (half,), generator=generator)
        fake = n + first + torch.randint(count, (half,), generator=generator)
        batches.append([real, fake] if separate else [torch.cat([real, fake])])
    return batches


@experiment("ch07_gan_discriminator", GanRun)
def gan_discriminator(config):
    """A BN discriminator trained on separate all-real/all-fake batches and on mixed ones (cached).

    Rows: separate, mixed. ``train_mode_accuracy`` and ``gap`` columns: held-out batches that are
    all-real or all-fake, held-out mixed batches.
    """
    images, labels = real_and_fake(config)
    n, half = len(labels) // 2, config.half_batch
    start, count = config.train_per_kind, config.held_out_per_kind
    held_out = torch.arange(start, start + count - count % half).view(-1, half)
    test_batches = [list(held_out) + list(held_out + n), [torch.cat([r, r + n]) for r in held_out]]
    test = torch.cat([held_out.flatten(), held_out.flatten() + n])
    eval_accuracy, train_mode, gap = [], [], []
    with tqdm(total=2 * config.steps, desc="GAN discriminator") as bar:
        for separate in (True, False):
            batches = discriminator_batches(n, 0, start, half, config.steps, config.seed, separate)
            model = chapter_mlp("batch", seed=config.seed, classes=2)
            train_mlp(model, images, labels, batches, config.lr, progress=bar)
            eval_accuracy.append(accuracy(model, images[test], labels[test]))
            train_mode.append([accuracy(model, images, labels, b) for b in test_batches])
            gap.append([statistic_gap(model, images, b) for b in test_batches])
    return {"eval_accuracy": eval_accuracy, "train_mode_accuracy": train_mode, "gap": gap}


def train_eval_gaps():
    """For the four ways of batching: accuracy in train mode (held-out batches composed as in
    training), in eval mode, and the statistic gap on batches composed as in training."""
    runs = [(sorted_vs_shuffled(), ("sorted by class", "shuffled")),
            (gan_discriminator(), ("GAN: all-real, all-fake", "GAN: mixed 50/50"))]
    rows = {}
    for result, names in runs:
        for row, name in enumerate(names):
            rows[name] = {"train_mode": float(result["train_mode_accuracy"][row][row]),
                          "eval_mode": float(result["eval_accuracy"][row]),
                          "gap": float(result["gap"][row][row])}
    return rows


def composition_figure():
    """Accuracy in train mode and in eval mode, and the statistic gap, for the four ways of batching."""
    rows = train_eval_gaps()
    names = list(rows)
    figure = Figure(figsize=(8.4, 6.6))
    left, right = figure.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(len(names))
    for offset, mode, label in ((-0.2, "train_mode", "train mode (batches as in training)"),
                                (0.2, "eval_mode", "eval mode (running statistics)")):
        bars = left.bar(x + offset, [100 * rows[n][mode] for n in names], 0.4, label=label)
        left.bar_label(bars, fmt="%.0f")
    left.set(xticks=x, ylim=(0, 125), ylabel="held-out accuracy (%)", title="Same network, two modes")
    left.set_xticklabels(names)
    left.legend(loc="upper left", ncol=2)
    right.bar(x, [rows[n]["gap"] for n in names], color="C2")
    right.set(xticks=x, ylabel=r"mean $|\mu_B - \mu_{run}| / \sigma_{run}$", title="Batch vs running mean, layer 1")
    right.set_xticklabels(names)
    figure.tight_layout()
    return figure, rows


FIGURES = {"ch07_non_representative_batches": composition_figure}
