"""Recomputing batch norm statistics on a model with dropout: torch's ``update_bn`` against ours.

``torch.optim.swa_utils.update_bn`` calls ``model.train()`` on the whole model, so dropout is on while it
recomputes the statistics; ``recompute_population_statistics`` keeps every layer but batch norm in eval
mode. On chapter 08's dropout MLP the two disagree.
"""

import copy

import torch

from bnlib.course.ch08.deployment import DROPOUT, dropout_mlp, recalibrate_with_update_bn
from bnlib.course.training import accuracy, mnist, random_batches, train_mlp
from bnlib.running_stats import recompute_population_statistics


def update_bn_with_dropout(p=0.5, config=DROPOUT, examples=10_000, batch_size=100):
    """``update_bn`` against ``recompute_population_statistics`` on the dropout MLP, trained at rate ``p``.

    ``torch.optim.swa_utils.update_bn`` puts the whole model in train mode, so dropout is on while it
    recomputes the statistics; ours keeps every layer but batch norm in eval mode. Returns, per BN unit,
    update_bn's running variance over ours (``var_ratio``), and each one's test accuracy."""
    images, labels = mnist(True)
    test_images, test_labels = mnist(False)
    torch.manual_seed(config.seed)
    model = dropout_mlp(p, config.seed)
    train_mlp(model, images, labels, random_batches(len(labels), config.batch_size, config.steps, config.seed),
              config.lr)
    batches = list(images[:examples].split(batch_size))
    ours = recompute_population_statistics(copy.deepcopy(model), batches)
    theirs = recalibrate_with_update_bn(model, batches)
    return {"var_ratio": (theirs[4].running_var / ours[4].running_var).numpy(),
            "accuracy": {"ours": accuracy(ours.eval(), test_images, test_labels),
                         "update_bn": accuracy(theirs, test_images, test_labels)}}
