"""LayerNorm and GroupNorm against batch norm (notebook 07): which axes, batch independence, batch 2."""

import numpy as np
import pytest

from bnlib.course.ch07.norm_alternatives import (AXES, alternatives_figure, batch_mate_influence, normalize,
                                                 shared_cells, torch_reference)
from bnlib.course.ch07.small_batches import SWEEP_CONFIG, batch_size_sweep, unit_activations

pytestmark = pytest.mark.slow  # computes experiments on real MNIST (cached afterwards)


@pytest.fixture(scope="module")
def activations():
    return unit_activations()[:32].astype(np.float64)


@pytest.mark.parametrize("norm", AXES)
def test_hand_written_statistics_match_the_torch_layers(activations, norm):
    np.testing.assert_allclose(normalize(activations, norm), torch_reference(activations, norm), atol=1e-10)


def test_each_norm_gives_zero_mean_unit_variance_along_its_own_axes(activations):
    assert np.allclose(normalize(activations, "batch").mean(0), 0, atol=1e-10)
    assert np.allclose(normalize(activations, "layer").std(1), 1, atol=1e-3)
    grouped = normalize(activations, "group").reshape(32, 10, 10)
    assert np.allclose(grouped.mean(2), 0, atol=1e-10) and np.allclose(grouped.std(2), 1, atol=1e-3)


def test_only_batch_norm_lets_the_batch_mates_change_an_example(activations):
    """Notebook: replacing the other examples moves an example's BN output, not its LN or GN output."""
    assert batch_mate_influence(activations, "batch") > 0.5
    assert batch_mate_influence(activations, "layer") == 0.0
    assert batch_mate_influence(activations, "group") == 0.0


def test_shared_cells_follow_the_axes():
    assert shared_cells("batch", 6, 12, 3).sum() == 6 and shared_cells("batch", 6, 12, 3)[:, 0].all()
    assert shared_cells("layer", 6, 12, 3).sum() == 12 and shared_cells("layer", 6, 12, 3)[0].all()
    assert shared_cells("group", 6, 12, 3).sum() == 4 and shared_cells("group", 6, 12, 3)[0, :4].all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        normalize(np.zeros((4, 10)), "instance")
    with pytest.raises(ValueError, match="equal groups"):
        normalize(np.ones((4, 7)), "group", groups=2)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        normalize(np.zeros(10), "layer")


def test_at_batch_two_layer_and_group_norm_beat_batch_norm_by_far():
    """Notebook: trained at batch 2, LN and GN hold up where BN collapses (the figure's bars)."""
    _, data = alternatives_figure()
    sweep = batch_size_sweep()["eval_accuracy"][:, SWEEP_CONFIG.batch_sizes.index(2)]
    np.testing.assert_allclose(data["accuracy_at_batch_2"], 100 * sweep)
    batch, layer, group = (data["accuracy_at_batch_2"][AXES.index(n)] for n in AXES)
    assert layer > 85 and group > 85 and batch < 50
