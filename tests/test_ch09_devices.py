"""Chapter 9's claims on real processes and real MNIST: per-device against synchronized batch norm, DDP's
broadcast buffers, the one-process simulation, ghost batches, the counted exchanges, the torchrun entry point
and the explorer. The experiments are the notebook's, cached (the first run computes them: a few minutes)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from explorer_checks import assert_control_changes_readout_and_plot

from bnlib.course.ch09 import buffers, cost, ddp, devices, ghost
from bnlib.course.ch09.evaluation import RUN, flat_state, initial_model, measure
from bnlib.course.parallel import run_on_ranks
from bnlib.course.ch09.explorers import devices_explorer

pytestmark = pytest.mark.slow  # spawns processes and trains on MNIST (cached afterwards)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs():
    """The notebook's runs on 2 processes, by name."""
    result = devices.ddp_runs()
    names = [f"{mode} {skew:g}" for mode, skew in zip(result["modes"], result["skews"])]
    return {name: {key: result[key][index] for key in result} for index, name in enumerate(names)}


def test_processes_compute_what_one_process_computes(runs):
    """Per-device DDP is ghost batch norm over the shards with rank 0's running statistics, synchronized DDP is
    batch norm on the whole batch in one process: the same weights and running statistics to rounding."""
    for run in runs.values():
        assert run["simulation_difference"] < 1e-9, run


def test_on_sorted_shards_per_device_statistics_fail_and_synchronized_ones_do_not(runs):
    iid, skewed, sync = runs["per-device 0"], runs["per-device 1"], runs["sync 1"]
    assert abs(iid["accuracy"] - sync["accuracy"]) < 0.02                  # iid shards: as good as sync
    assert sync["accuracy"] - skewed["accuracy"] > 0.10                   # sorted shards: >10 points lost
    assert skewed["error"].mean() > 2 * sync["error"].mean()              # statistics more than twice as wrong
    assert iid["error"].mean() < 1.5 * sync["error"].mean()
    # Population statistics win back part of the loss, not all of it.
    assert skewed["accuracy"] + 0.02 < skewed["population_accuracy"] < sync["accuracy"] - 0.02
    assert sync["error"][0] > max(sync["error"][1:])  # the first layer's running statistics lag most


def test_ranks_keep_their_own_running_means_only_without_synchronization(runs):
    assert runs["per-device 0"]["rank_difference"] > 1e-3 and runs["per-device 1"]["rank_difference"] > 1e-3
    assert runs["sync 1"]["rank_difference"] < 1e-12


def test_four_processes_report_progress_and_agree_with_one_process(capfd):
    """run_on_ranks' progress bar counts rank 0's steps; 4 ranks give the simulation's models."""
    config, plan = RUN.replace(steps=12), (("per-device", 1.0), ("sync", 0.5))
    ranks = run_on_ranks(ddp.train_runs, 4, plan, config, total=24, desc="four ranks")
    assert "24/24" in capfd.readouterr().err
    for index, (mode, skew) in enumerate(plan):
        model = initial_model()
        model.load_state_dict(ranks[0][index][0])
        simulated = devices.simulate(mode, 4, skew, config)
        assert np.abs(flat_state(model) - flat_state(simulated)).max() < 1e-10, mode
        assert [type(layer) for layer in simulated] == [type(layer) for layer in model]  # saved as rank 0's


def test_the_grid_shows_per_device_statistics_failing_with_skew_and_devices():
    grid = devices.device_grid()
    error, accuracy = grid["error"].mean(2), grid["accuracy"]
    sync_error, sync_accuracy = grid["sync_error"].mean(), grid["sync_accuracy"]
    assert np.all(error[:, -1] > error[:, 0])                      # every device count: skew makes it worse
    assert np.all(np.diff(error[:, -1]) > 0)                       # at skew 1, more devices: worse
    assert np.all(error[:, -1] > 2.5 * sync_error)
    assert np.all(np.abs(accuracy[:, 0] - sync_accuracy) < 0.04)   # iid shards: within a few points
    assert np.all(accuracy[:, -1] < sync_accuracy - 0.1)
    assert accuracy[0, -1] - accuracy[-1, -1] > 0.15               # 2 devices against 10, at skew 1
    assert grid["classes_per_device"][-1, -1] < 2.5 and grid["classes_per_device"][0, 0] > 9
    assert grid["sync_accuracy"] == pytest.approx(devices.ddp_runs()["accuracy"][2], abs=2e-3)


def test_ddp_broadcasts_rank_0_s_buffers_before_every_forward():
    demo = buffers.broadcast_run()
    means, steps = buffers.DEMO.means, buffers.DEMO.steps
    np.testing.assert_allclose(demo["at_start"][1], demo["at_start"][0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(demo["after"], buffers.broadcast_prediction(means, steps), rtol=0, atol=1e-12)
    np.testing.assert_allclose(demo["without_ddp"][1], means[1] * (1 - 0.9 ** np.arange(1, steps + 1)), atol=1e-12)
    assert demo["after"][1][-1] < 0.5 * demo["without_ddp"][1][-1]


def test_counted_exchanges_are_the_sync_module_s_bytes():
    counted = cost.counted_per_layer(cost.counted_exchanges())
    expected = np.array(list(cost.bytes_per_layer(100, cost.COUNT_CONFIG.world_size).values()))
    assert counted.shape == (3, 3, 2)
    for layer in counted:
        np.testing.assert_array_equal(layer, expected)


def test_smaller_ghost_batches_fit_the_training_images_less_tightly():
    result = ghost.ghost_experiment()
    loss, test = result["train_loss"], result["test_accuracy"]
    assert list(result["ghost_sizes"]) == sorted(result["ghost_sizes"], reverse=True)  # plain batch norm first
    assert np.all(loss[:, -1] > 3 * loss[:, 0])                 # ghost batches of 10: several times the loss
    assert np.all(loss[:, 2] > loss[:, 0])
    assert np.all(np.abs(test - test[:, :1]) < 0.05)            # test accuracy: within a few points


def test_torchrun_entry_point_trains_what_one_process_trains(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    steps = 20
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "bnlib.course.ch09.ddp",
                           "--mode", "per-device", "--skew", "1", "--steps", str(steps)],
                          check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr
    found = re.search(r"test accuracy ([\d.]+)% with the running statistics, ([\d.]+)% with population "
                      r"statistics; normalization error ([\d.]+)", done.stdout)
    assert found, done.stdout
    expected = measure(devices.simulate("per-device", 2, 1.0, RUN.replace(steps=steps)))
    assert float(found[1]) == pytest.approx(100 * expected["accuracy"], abs=0.02)
    assert float(found[2]) == pytest.approx(100 * expected["population_accuracy"], abs=0.02)
    assert float(found[3]) == pytest.approx(expected["error"].mean(), abs=1e-4)


@pytest.mark.parametrize("name, value", [("devices", 10), ("skew", 0.5)])
def test_every_control_of_the_explorer_changes_the_readout_and_the_plot(name, value):
    assert_control_changes_readout_and_plot(devices_explorer(devices=4, skew=1.0), name, value)


def test_the_explorer_reads_out_the_grid():
    explorer = devices_explorer(devices=10, skew=1.0)
    grid = devices.device_grid()
    assert explorer.error is None
    text = explorer.text
    headline = text.split("; ")[0]  # what the readout shows in bold: the numbers that change, no settings
    assert headline == f"per-device batch norm {grid['accuracy'][-1, -1]:.1%} test accuracy with rank 0's running " \
                       f"statistics, {grid['population_accuracy'][-1, -1]:.1%} with population statistics"
    assert f"synchronized {grid['sync_accuracy']:.1%}" in text
    assert "10 devices of 6, skew 1:" in text


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="learning_rate"):
        devices.GRID_CONFIG.replace(learning_rate=0.1)
    with pytest.raises(TypeError, match="DdpRuns"):
        devices.ddp_runs(RUN)  # the training alone: which runs, on how many processes?
    with pytest.raises(TypeError, match="GhostRun"):
        ghost.ghost_experiment({"examples": 2000})
    with pytest.raises(ValueError, match="must split evenly between the devices"):
        devices.GRID_CONFIG.replace(devices=(2, 7))
    with pytest.raises(ValueError, match="at least 2 examples"):
        devices.GridRun(batch_size=20, devices=(4, 20))
    with pytest.raises(ValueError, match=r"skew is the fraction of each batch sorted by class, in \[0, 1\]"):
        devices.DDP_CONFIG.replace(runs=(("sync", 2.0),))
    with pytest.raises(ValueError, match="mode must be one of"):
        devices.DDP_CONFIG.replace(runs=(("per device", 1.0),))
    with pytest.raises(ValueError, match="divide batch_size"):
        ghost.GHOST_CONFIG.replace(ghost_sizes=(400, 30))
    with pytest.raises(ValueError, match="nothing to exchange"):
        cost.COUNT_CONFIG.replace(world_size=1)
