"""The MNIST reproduction of Ioffe & Szegedy (2015) Figure 1: the trainer is exact, the run shows the findings.

The findings are asserted on the real, full run (50,000 steps of 60 real MNIST images): the same
cached computation the notebook and ``figures/mnist_fig1.png`` use.
"""

import numpy as np
import pytest
import torch
from torch import nn

import bnlib
from bnlib.course import cache, drift
from bnlib.course.ch06 import fast_trainer, paper
from bnlib.course.ch06.checkpoints import checkpoint_model, sigmoid_inputs
from bnlib.course.data import load_mnist
from bnlib.course.training import accuracy
from bnlib.running_stats import batch_norm_layers, recompute_population_statistics


@pytest.fixture(scope="module")
def full_run():
    return paper.run_paper_experiment(progress=False)


@pytest.fixture(scope="module")
def facts(full_run):
    facts = paper.findings(full_run)
    print("\nfindings of the full run:", facts)
    return facts


@pytest.mark.slow
def test_full_run_is_the_papers_setup(full_run):
    np.testing.assert_array_equal(full_run["steps"], np.arange(0, 50_001, 500))  # 101 checkpoints, every 500 steps
    assert int(full_run["batch_size"]) == 60
    assert full_run["batch_mean"].shape == full_run["batch_var"].shape == (50_000, 3, 100)
    assert full_run["batch_mean"].dtype == np.float32
    assert full_run["percentiles"].shape == (len(full_run["steps"]), 2, 3, 100)


@pytest.mark.slow
def test_batch_norm_ends_more_accurate_and_above_97_5_percent(facts):
    final = facts["final_accuracy"]
    assert final["batch norm"] > final["baseline"]
    assert final["batch norm"] >= 0.975


@pytest.mark.slow
def test_batch_norm_reaches_the_baselines_final_accuracy_in_under_half_the_steps(facts):
    reached = facts["steps_to_baseline_final"]
    assert reached["batch norm"] is not None
    assert reached["batch norm"] < 0.5 * reached["baseline"]


@pytest.mark.slow
def test_the_baselines_sigmoid_inputs_drift_more(facts):
    drift = facts["drift"]
    print(f"drift without BN {drift['baseline']:.3f}, with BN {drift['batch norm']:.3f}")
    assert drift["baseline"] > drift["batch norm"]


@pytest.mark.slow
def test_batch_norm_is_ahead_at_every_checkpoint_after_the_start(full_run):
    accuracy = full_run["accuracy"]
    assert np.all(accuracy[1:, 1] > accuracy[1:, 0])


def median_movement(run, split=10_000):
    """How far the medians move before and after step ``split``, per network, averaged over the units."""
    at_split = int(np.searchsorted(run["steps"], split))
    medians = run["percentiles"][:, :, 1]  # (checkpoints, network, units)
    early = np.abs(medians[at_split] - medians[0]).mean(axis=-1)
    late = np.abs(medians[-1] - medians[at_split]).mean(axis=-1)
    return early, late, run["accuracy"][at_split]


@pytest.mark.slow
def test_the_baselines_drift_is_less_than_twice_bns_and_mostly_early(full_run, facts):
    drift = facts["drift"]
    assert drift["baseline"] < 2 * drift["batch norm"]
    early, late, _ = median_movement(full_run)
    assert early[0] > late[0]  # the baseline moves mostly before step 10,000
    assert early[1] < 0.5 * early[0]  # and much more than the BN network moves then


@pytest.mark.slow
def test_a_larger_initial_scale_calms_the_baselines_start_and_shrinks_bns_head_start(full_run):
    """With N(0, 0.1^2) both networks still train, but the baseline's medians move about half as far in the
    first 10,000 steps as with the paper-like N(0, 0.01^2), and BN's lead at step 10,000 almost vanishes.
    The claim is about the first 10,000 steps, so the larger-scale run stops there (checkpoints every 500
    steps, as in the full run)."""
    larger = paper.run_paper_experiment(paper.PAPER.replace(init_std=0.1, steps=10_000, checkpoints=20), progress=False)
    assert larger["steps"][-1] == 10_000 and np.all(larger["accuracy"][-1] > 0.95)
    small_early, _, small_accuracy = median_movement(full_run)
    large_early, _, large_accuracy = median_movement(larger)
    assert large_early[0] < 0.6 * small_early[0]
    small_lead, large_lead = (accuracy[1] - accuracy[0] for accuracy in (small_accuracy, large_accuracy))
    assert large_lead < 0.25 * small_lead


@pytest.mark.slow
def test_every_bn_band_widens_by_about_as_much_as_gamma_grows(full_run):
    """Notebook 06, section 6: from t0 to the end every BN unit's band widens, by about its gamma's growth; the
    baseline's bands change unevenly, some narrowing, some widening several times over."""
    steps, start = full_run["steps"], paper.DRIFT_START * full_run["steps"][-1]
    baseline, bn = (drift.band_growth(full_run["percentiles"][:, net], steps, start) for net in (0, 1))
    t0 = drift.start_index(steps, start)
    gamma_t0, gamma_end = (batch_norm_layers(checkpoint_model(full_run, c))[-1].weight.detach().abs().numpy()
                           for c in (t0, len(steps) - 1))
    assert bn.min() > 1.05
    assert np.all(np.abs(bn / (gamma_end / gamma_t0) - 1) < 0.25)
    assert baseline.min() < 1 and baseline.max() > 2.5


@pytest.mark.slow
def test_the_notebooks_percentile_measurement_is_the_runs_and_train_mode_nearly_agrees(full_run):
    """Notebook 06, section 5: the bands of checkpoint_model's sigmoid inputs are the run's own; in train mode on
    test batches of 60 (the paper's N_BN^tr) they move by a small fraction of a band width."""
    test_images, _ = load_mnist(train=False)
    last = len(full_run["steps"]) - 1
    for net, batch_norm in enumerate((False, True)):
        bands = drift.percentiles(sigmoid_inputs(checkpoint_model(full_run, last, batch_norm), test_images).numpy())
        np.testing.assert_allclose(bands, full_run["percentiles"][last, net], atol=1e-4)
    model = checkpoint_model(full_run, last).train()
    train_bands = drift.percentiles(torch.cat([sigmoid_inputs(model, b) for b in test_images.split(60)]).numpy())
    eval_bands = full_run["percentiles"][last, 1]
    assert np.max(np.abs(train_bands - eval_bands) / drift.band_width(eval_bands)) < 0.25


@pytest.mark.slow
@pytest.mark.parametrize("step", [1_000, 50_000])
def test_running_averages_with_momentum_0_1_nearly_agree_with_algorithm_2(full_run, step):
    """Notebook 06, section 7: early and late, the test accuracy with the running averages (momentum 0.1) is
    within a point of Algorithm 2's, and the running means are within half a population std."""
    test_images, test_labels = load_mnist(train=False)
    train_images, _ = load_mnist(train=True)
    model = checkpoint_model(full_run, list(full_run["steps"]).index(step))
    running_means = [norm.running_mean.clone() for norm in batch_norm_layers(model)]
    running_accuracy = accuracy(model, test_images, test_labels)
    recompute_population_statistics(model, train_images.split(60))
    assert abs(accuracy(model, test_images, test_labels) - running_accuracy) < 0.01
    for mean, norm in zip(running_means, batch_norm_layers(model)):
        assert ((mean - norm.running_mean).abs() / norm.running_var.sqrt()).max() < 0.5


@pytest.mark.slow
def test_at_batch_two_the_bn_network_drifts_far_more_than_at_sixty():
    """Notebook 06, section 8 and Exercise 4: the batch-size explorer's short runs."""
    drifts = {size: paper.findings(paper.run_paper_experiment(paper.SHORT_RUN.replace(batch_size=size),
                                                              progress=False))["drift"]["batch norm"]
              for size in (2, 60)}
    assert drifts[2] > 3 * drifts[60]


# The fast trainer against torch autograd ---------------------------------------------------------

def tiny_data(n=300, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 784, generator=generator, dtype=torch.float64)
    return images, torch.randint(0, 10, (n,), generator=generator)


def naive_model(batch_norm, init_std, seed, torch_batch_norm=False):
    """The network as ``paper_mlp``, from the trainer's initial weights; optionally with torch's own BN."""
    model = fast_trainer.to_torch_model(fast_trainer.initial_parameters(batch_norm, init_std, seed, torch.float64),
                                        batch_norm)
    if torch_batch_norm:
        model = nn.Sequential(*[nn.BatchNorm1d(100, dtype=torch.float64) if isinstance(m, bnlib.BatchNorm1d)
                                else m for m in model])
    return model


def naive_training(model, images, labels, order, lr, every=1):
    """A plain autograd + torch.optim.SGD loop; returns the parameters after every ``every`` steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for step, batch in enumerate(order, start=1):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
        optimizer.step()
        if step % every == 0:
            history.append([p.detach().clone() for p in model.parameters()])
    return history


def train(images, labels, batch_norm, steps, batch_size, seed, checkpoints, lr=0.5, init_std=0.1):
    return fast_trainer.train_network(images, labels, batch_norm, steps, batch_size, lr, init_std, seed, checkpoints)


@pytest.mark.parametrize("batch_norm, torch_batch_norm", [(False, False), (True, False), (True, True)],
                         ids=["baseline", "bnlib-BN", "torch-BN"])
def test_trainer_follows_autograd_step_by_step_in_float64(batch_norm, torch_batch_norm):
    images, labels = tiny_data()
    steps, batch_size, lr, init_std, seed = 5, 16, 0.5, 0.1, 3
    run = train(images, labels, batch_norm, steps, batch_size, seed, steps, lr, init_std)
    order = fast_trainer.batch_order(len(images), steps, batch_size, seed).view(steps, batch_size)
    history = naive_training(naive_model(batch_norm, init_std, seed, torch_batch_norm), images, labels, order, lr)
    for step, expected in enumerate(history, start=1):
        ours = fast_trainer.to_torch_model(run["parameters"][step], batch_norm).parameters()
        for mine, theirs in zip(ours, expected):
            torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("batch_norm", [False, True], ids=["baseline", "BN"])
def test_trainer_follows_a_plain_loop_on_real_mnist_for_300_steps_in_float64(batch_norm):
    """Notebook 06, section 3: the paper's setup on real MNIST; every parameter, every 10 steps, below 1e-8."""
    images, labels = load_mnist(train=True)
    images = images.double()
    steps, every = 300, 10
    run = train(images, labels, batch_norm, steps, 60, 0, steps // every, lr=0.5, init_std=0.01)
    order = fast_trainer.batch_order(len(images), steps, 60, 0).view(steps, 60)
    history = naive_training(naive_model(batch_norm, 0.01, 0), images, labels, order, 0.5, every)
    for checkpoint, expected in enumerate(history, start=1):
        ours = fast_trainer.to_torch_model(run["parameters"][checkpoint], batch_norm).parameters()
        assert max((mine - theirs).abs().max().item() for mine, theirs in zip(ours, expected)) < 1e-8


def test_both_networks_start_from_the_same_weights_and_see_the_same_batches():
    start = [fast_trainer.to_torch_model(fast_trainer.initial_parameters(bn, 0.01, 7), bn) for bn in (False, True)]
    weights = [[m.weight for m in model if isinstance(m, nn.Linear)] for model in start]
    assert all(torch.equal(a, b) for a, b in zip(*weights))
    order = fast_trainer.batch_order(1000, 40, 60, 7)
    assert torch.equal(order, fast_trainer.batch_order(1000, 40, 60, 7))
    assert sorted(order[:1000].tolist()) == list(range(1000))  # each epoch is a shuffle of every example


def test_recorded_batch_statistics_are_those_of_the_bn_layers_inputs():
    images, labels = tiny_data()
    steps, batch_size = 4, 20
    run = train(images, labels, True, steps, batch_size, 1, steps)
    order = fast_trainer.batch_order(len(images), steps, batch_size, 1).view(steps, batch_size)
    for step in range(steps):
        model = fast_trainer.to_torch_model(run["parameters"][step], True)
        seen = []  # u W as each BN layer receives it, in training mode on this step's batch
        for norm in (m for m in model if isinstance(m, bnlib.BatchNorm1d)):
            norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
        model(images[order[step]])
        for layer, z in enumerate(seen):
            torch.testing.assert_close(run["batch_mean"][step, layer], z.mean(0), rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(run["batch_var"][step, layer], z.var(0, unbiased=False), rtol=1e-10, atol=1e-12)


def test_replayed_running_statistics_equal_a_trained_batchnorm1d():
    images, labels = tiny_data()
    steps, batch_size, momentum = 12, 16, 0.1
    run = train(images, labels, True, steps, batch_size, 2, 4)
    model = naive_model(True, 0.1, 2)
    order = fast_trainer.batch_order(len(images), steps, batch_size, 2).view(steps, batch_size)
    naive_training(model, images, labels, order, 0.5)
    norms = [m for m in model if isinstance(m, bnlib.BatchNorm1d)]
    result = {key: value.numpy() for key, value in run.items()}
    result["batch_size"] = np.array(batch_size)
    running_mean, running_var = paper.running_statistics(result, momentum)
    for layer, norm in enumerate(norms):
        np.testing.assert_allclose(running_mean[-1, layer], norm.running_mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(running_var[-1, layer], norm.running_var.numpy(), rtol=1e-9)


@pytest.mark.parametrize("batch_norm", [False, True], ids=["baseline", "BN"])
def test_evaluation_equals_torch_eval_mode(batch_norm):
    images, labels = tiny_data(200)
    steps, batch_size = 10, 20
    run = {key: value.numpy() for key, value in train(images, labels, batch_norm, steps, batch_size, 4, 2).items()}
    result = {**run, "batch_size": np.array(batch_size),
              "bn_parameters" if batch_norm else "baseline_parameters": run["parameters"]}
    running = paper.running_statistics(result) if batch_norm else ()
    scores, percentiles = paper.evaluate_checkpoints(run["parameters"], images, labels, *running)
    for c in range(len(run["steps"])):
        model = fast_trainer.to_torch_model(torch.as_tensor(run["parameters"][c]), batch_norm)
        for layer, norm in enumerate(m for m in model if isinstance(m, bnlib.BatchNorm1d)):
            norm.running_mean.copy_(torch.as_tensor(running[0][c, layer]))
            norm.running_var.copy_(torch.as_tensor(running[1][c, layer]))
        model.eval()
        with torch.no_grad():
            logits = model(images)
            inputs = model[:-2](images)  # everything up to the last sigmoid
        assert scores[c] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
        expected = np.percentile(inputs.numpy(), (15, 50, 85), axis=0)
        np.testing.assert_allclose(percentiles[c], expected, rtol=1e-9, atol=1e-12)
        # notebook 06's checkpoint_model builds the same network in eval mode
        ours = checkpoint_model(result, c, batch_norm)
        assert not ours.training
        torch.testing.assert_close(sigmoid_inputs(ours, images), inputs, rtol=1e-12, atol=1e-12)


def test_the_trainer_shows_each_checkpoint_the_run_so_far_and_its_bn_checkpoints_are_the_whole_runs():
    """What the BN worker hands over during training (the run so far at a checkpoint, and the running
    statistics replayed from it) equals the same checkpoints of the finished run: the hand-over in two
    processes relies on it. At checkpoint 0 the statistics are torch's initial ones."""
    images, labels = tiny_data()
    config = paper.PaperRun(steps=12, checkpoints=4, batch_size=8)
    seen, handed = {}, {}

    def record(c, so_far):
        seen[c] = {key: value.clone() for key, value in so_far.items()}
        handed[c] = paper.bn_checkpoints({key: value.numpy().copy() for key, value in so_far.items()}, config)

    run = fast_trainer.train_network(images, labels, True, 12, 8, 0.5, 0.1, 0, 4, at_checkpoint=record)
    whole = paper.bn_checkpoints({key: value.numpy() for key, value in run.items()}, config)
    assert sorted(seen) == [0, 1, 2, 3]
    for c, so_far in seen.items():
        assert so_far.keys() == run.keys()
        for key, value in so_far.items():
            done = c + 1 if key in ("steps", "parameters") else 3 * c  # checkpoints 0..c; 3 steps each before
            torch.testing.assert_close(value, run[key][:done])
        for key in ("parameters", "running_mean", "running_var"):
            np.testing.assert_allclose(handed[c][key], whole[key][:c + 1], rtol=1e-12, atol=1e-15, err_msg=key)
    assert (handed[0]["running_mean"] == 0).all() and (handed[0]["running_var"] == 1).all()


@pytest.mark.slow
def test_two_processes_give_the_one_process_result():
    """The two networks trained in two processes (one each, the baseline's also evaluating the BN network's
    early checkpoints, sent during training, and its last ones) or one after the other in this one: the
    same code on one thread each, so the results agree up to floating-point rounding."""
    config = paper.PaperRun(steps=300, checkpoints=6)  # the workers evaluate BN's 0-4 and 6, and 5
    one = paper.run_paper_experiment.compute(config, progress=False, workers=1)
    two = paper.run_paper_experiment.compute(config, progress=False, workers=2)
    assert set(one) == set(two)
    for key in set(one) - {"seconds"}:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert one["accuracy"][-1, 1] > 0.5  # 300 steps of real training, not a no-op


def test_the_paper_run_takes_both_cores_and_a_short_run_stays_in_this_process():
    assert paper.default_workers(paper.PAPER) == 2
    assert paper.default_workers(paper.SHORT_RUN.replace(batch_size=256)) == 2  # the explorer's largest
    assert paper.default_workers(paper.PaperRun(steps=40, checkpoints=4)) == 1


def test_bad_settings_are_refused_clearly():
    with pytest.raises(TypeError, match="learning_rate"):
        paper.PAPER.replace(learning_rate=0.1)
    with pytest.raises(TypeError, match="PaperRun"):
        paper.run_paper_experiment({"steps": 40, "checkpoints": 4})
    with pytest.raises(ValueError, match="multiple of checkpoints"):
        paper.PaperRun(steps=100, checkpoints=3)
    with pytest.raises(ValueError, match="at least 2"):
        paper.PAPER.replace(batch_size=1)
    images, labels = tiny_data(50)
    with pytest.raises(ValueError, match="multiple of checkpoints"):
        train(images, labels, True, 10, 8, 0, 3)
    with pytest.raises(ValueError, match="multiple of checkpoints"):
        train(images, labels, True, 10, 8, 0, 0)
    with pytest.raises(ValueError, match="at least 2"):
        train(images, labels, True, 10, 1, 0, 2)
    with pytest.raises(ValueError, match="workers must be 1 or 2"):
        paper.run_paper_experiment.compute(paper.PaperRun(steps=10, checkpoints=1), workers=3)


@pytest.mark.slow
def test_a_corrupt_cached_run_is_recomputed_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_DATA_DIR", str(tmp_path))
    settings = paper.PaperRun(steps=40, checkpoints=4)
    first = paper.run_paper_experiment(settings, progress=False)
    assert paper.run_paper_experiment.is_cached(settings)
    path = cache.cache_path("paper_mnist", settings, paper.__name__)
    raw = bytearray(path.read_bytes())
    offset = raw.index(b"accuracy.npy") + 200  # inside the stored accuracies
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged"):
        second = paper.run_paper_experiment(settings, progress=False)
    np.testing.assert_array_equal(first["accuracy"], second["accuracy"])
    np.testing.assert_array_equal(first["batch_mean"], second["batch_mean"])
