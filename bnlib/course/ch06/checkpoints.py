"""The paper run's networks at its checkpoints as plain torch models, and what notebook 06 measures on them.

``run_paper_experiment`` keeps each network's flat parameters at every checkpoint. ``checkpoint_model``
turns one of them back into a ``paper_mlp`` in inference mode (the BN network with its running averages,
replayed from the recorded batch statistics), and ``sigmoid_inputs`` gives the values Figure 1 (b, c)
summarizes: the inputs of the last hidden layer's sigmoids. Notebook 06 defines both in a ``#@save`` cell.
"""

import torch

from bnlib.course.ch06 import fast_trainer, paper
from bnlib.running_stats import batch_norm_layers


def checkpoint_model(result, checkpoint, batch_norm=True, momentum=paper.EVAL_MOMENTUM):
    """The network at ``checkpoint`` (an index into ``result["steps"]``), in eval mode; the BN network
    normalizes with the running averages that ``momentum`` gives at that checkpoint."""
    parameters = result["bn_parameters" if batch_norm else "baseline_parameters"][checkpoint]
    model = fast_trainer.to_torch_model(torch.as_tensor(parameters), batch_norm)
    if batch_norm:
        running_mean, running_var = paper.running_statistics(result, momentum)  # (checkpoints, 3, 100) each
        for layer, norm in enumerate(batch_norm_layers(model)):
            norm.running_mean.copy_(torch.as_tensor(running_mean[checkpoint, layer]))
            norm.running_var.copy_(torch.as_tensor(running_var[checkpoint, layer]))
    return model.eval()


def sigmoid_inputs(model, images):
    """The inputs of the last hidden layer's sigmoids, (examples, 100): the model up to that sigmoid."""
    with torch.no_grad():
        return model[:-2](images)
