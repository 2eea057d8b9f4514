"""Internal covariate shift, and why normalization has to sit inside the gradient.

Part 1, the drift. Layer k learns from layer k-1's outputs, and those move whenever layer k-1 trains.
We train the paper's sigmoid MLP on MNIST for a short while and record, on a fixed probe batch, the
last hidden layer's inputs u (layer 2's outputs) and its sigmoids' inputs x = W3 u + b3: for every unit,
the 15th, 50th and 85th percentile over the probe at regular steps (the paper's Figure 1b, in miniature). The learning rate, 2,
is four times that of the full 50,000-step reproduction (``bnlib.course.ch06.paper``), so that 3,000 steps reach about
90% accuracy.

Part 2, the bias that runs away (the paper's section 2). A layer adds a learned bias b to its input u and
subtracts the mean over the data:

    x = u + b,   x_hat = x - E[x].

If the gradient step treats E[x] as a constant (computed "outside" the gradient), then
d loss / d b = sum_i d loss / d x_hat_i, which is not zero, so b moves by Delta b. But
u + (b + Delta b) - E[u + (b + Delta b)] = u + b - E[u + b]: x_hat, the output and the loss do not change.
The step repeats forever and b grows without bound. With E[x] inside the gradient,
d x_hat_i / d b = 1 - (1/N) sum_j 1 = 0: the bias gets exactly no gradient and stays put.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from bnlib.course import drift
from bnlib.course.cache import cached
from bnlib.course.models import paper_mlp
from bnlib.course.plots import percentile_bands
from bnlib.course.training import accuracy, mnist, train_mlp

DRIFT_CONFIG = {"steps": 3000, "batch_size": 60, "lr": 2.0, "init_std": 0.01, "seed": 0, "record_every": 25,
                "probe_size": 1000, "snapshots": (500, 1000, 2000, 3000)}
DRIFT_FROM = 500  # the first steps only leave the tiny initialization; the drift after them is ordinary training
LAST_HIDDEN = 4  # index of the last hidden Linear in paper_mlp(): Linear, Sigmoid, Linear, Sigmoid, Linear, ...


def sigmoid_inputs(model, images, layer=LAST_HIDDEN):
    """``(x, u)``: the inputs x = W u + b of the sigmoids after ``model[layer]``, and that layer's input u."""
    u = images
    for module in model[:layer]:
        u = module(u)
    return model[layer](u), u


def train_and_record(steps, batch_size, lr, init_std, seed, record_every, probe_size, snapshots, progress=True):
    """SGD on MNIST's mean cross-entropy; every ``record_every`` steps, the percentiles of each unit's
    sigmoid input (and of the layer's input u, the previous layer's output) over the probe batch."""
    from tqdm.auto import tqdm

    images, labels = mnist(train=True)
    test_images, test_labels = mnist(train=False)
    probe, probe_labels = test_images[:probe_size], test_labels[:probe_size]
    torch.manual_seed(seed)
    model = paper_mlp(init_std=init_std)
    order = torch.randint(len(images), (steps, batch_size), generator=torch.Generator().manual_seed(seed))
    recorded = range(0, steps + 1, record_every)
    record = {"steps": [], "x_percentiles": [], "u_percentiles": [], "accuracy": [], "x_snapshots": [],
              "u_snapshots": []}

    @torch.no_grad()
    def measure(step):
        x, u = sigmoid_inputs(model, probe)
        if step in recorded:
            record["steps"].append(step)
            record["x_percentiles"].append(drift.percentiles(x.numpy()))  # (3, units): 15th, 50th, 85th
            record["u_percentiles"].append(drift.percentiles(u.numpy()))
            record["accuracy"].append(accuracy(model, probe, probe_labels))
        if step in snapshots:
            record["x_snapshots"].append(x.numpy())
            record["u_snapshots"].append(u.numpy())

    with tqdm(total=steps, desc="training", unit="step", disable=not progress, mininterval=1.0) as bar:
        train_mlp(model, images, labels, [[batch] for batch in order], lr, on_checkpoint=measure,
                  checkpoints={*recorded, *snapshots}, progress=bar)
    return {"snapshot_steps": np.array(snapshots), **{key: np.array(value) for key, value in record.items()}}


def drift_run(progress=True, **overrides):
    """The recorded run (cached): ``steps`` (S,), ``x_percentiles`` and ``u_percentiles`` (S, 3, units),
    ``accuracy`` (S,) on the probe, ``x_snapshots`` and ``u_snapshots`` (K, probe, units) at ``snapshot_steps``."""
    unknown = set(overrides) - set(DRIFT_CONFIG)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; drift_run accepts {sorted(DRIFT_CONFIG)}")
    config = {**DRIFT_CONFIG, **overrides}
    if config["steps"] % config["record_every"]:
        raise ValueError("steps must be a multiple of record_every, so the last step is recorded")
    return cached("hidden_input_drift", config, lambda: train_and_record(**config, progress=progress))


def drift_summary(run):
    """The drift (``bnlib.course.drift``) from step ``DRIFT_FROM`` to the end, of the layer's input u and of
    its sigmoid input x: the median over units, the share of units whose median moved over half a band,
    the median growth of the band width, and the typical unit."""
    start = int(np.searchsorted(run["steps"], DRIFT_FROM))
    summary = {"from_step": DRIFT_FROM, "to_step": int(run["steps"][-1]),
               "accuracy_from": float(run["accuracy"][start]), "accuracy_to": float(run["accuracy"][-1])}
    for key in ("u", "x"):
        percentiles = run[f"{key}_percentiles"]
        moved = drift.unit_drifts(percentiles, run["steps"], DRIFT_FROM)
        summary[key] = {"median_drift": float(np.median(moved)), "share_over_half_a_band": float(np.mean(moved > 0.5)),
                        "median_band_growth": float(np.median(drift.band_growth(percentiles, run["steps"], DRIFT_FROM))),
                        "typical_unit": drift.typical_unit(percentiles, run["steps"], DRIFT_FROM)}
    return summary


def hidden_input_drift(bins=40):
    """The last hidden layer during training: a typical input u_j (output of the layer before) and a typical
    sigmoid input x_k, as percentile bands over the steps, and histograms of u_j at a few steps."""
    run = drift_run()
    figure = Figure(figsize=(15, 4), layout="constrained")
    u_ax, x_ax, histogram_ax = figure.subplots(1, 3)
    data = {"steps": run["steps"], "accuracy": run["accuracy"], "summary": drift_summary(run)}
    titles = {"u": "layer 3's input $u_{%d}$ (layer 2's output)", "x": "sigmoid input $x_{%d}$ of layer 3"}
    for ax, key in ((u_ax, "u"), (x_ax, "x")):
        unit = data["summary"][key]["typical_unit"]
        percentiles = run[f"{key}_percentiles"][:, :, unit]
        percentile_bands(ax, run["steps"], *percentiles.T, label="median, with the 15th and 85th percentiles")
        ax.axvline(DRIFT_FROM, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(titles[key] % unit)
        ax.legend(fontsize=8)
        data[key] = {"unit": unit, "percentiles": dict(zip(drift.PERCENTILES, percentiles.T))}
    values = run["u_snapshots"][:, :, data["u"]["unit"]]
    edges = np.linspace(values.min(), values.max(), bins + 1)
    counts = np.array([np.histogram(snapshot, edges)[0] for snapshot in values])
    for step, count in zip(run["snapshot_steps"], counts):
        histogram_ax.stairs(count, edges, label=f"step {step}")
    histogram_ax.set(xlabel=f"$u_{{{data['u']['unit']}}}$", ylabel=f"probe examples (of {values.shape[1]})",
                     title="its distribution at a few steps")
    histogram_ax.legend(fontsize=8)
    data["histogram"] = {"steps": run["snapshot_steps"], "edges": edges, "counts": counts}
    return figure, data


def bias_problem(n=64, seed=0):
    """``(u, target)``: a unit's inputs u and downstream targets t whose mean (about 1) x_hat cannot reach."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(n, generator=generator, dtype=torch.float64)
    target = 1.0 + torch.randn(n, generator=generator, dtype=torch.float64)
    return u, target


def centered(x, mean_in_gradient):
    """x_hat = x - E[x]; with ``mean_in_gradient=False`` E[x] is a constant to autograd (``detach``)."""
    mean = x.mean()
    return x - (mean if mean_in_gradient else mean.detach())


def train_bias(mean_in_gradient, steps=100, lr=0.1, n=64, seed=0):
    """Gradient descent on b alone, loss = 1/2 mean((x_hat - t)^2) with x_hat = u + b - E[u + b].

    Returns arrays over the steps: ``bias`` (T+1,), ``loss`` (T+1,), ``gradient`` (T+1,) and ``x_hat`` (T+1, n).
    """
    u, target = bias_problem(n, seed)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    record = {"bias": [], "loss": [], "gradient": [], "x_hat": []}
    for _ in range(steps + 1):
        x_hat = centered(u + bias, mean_in_gradient)
        loss = 0.5 * torch.mean((x_hat - target) ** 2)
        loss.backward()
        for key, value in (("bias", bias), ("loss", loss), ("gradient", bias.grad), ("x_hat", x_hat)):
            record[key].append(value.detach().clone().reshape(-1).numpy())
        with torch.no_grad():
            bias -= lr * bias.grad  # b <- b - lr d loss / d b
        bias.grad = None
    record = {key: np.concatenate(value) if key != "x_hat" else np.stack(value) for key, value in record.items()}
    return record


def bias_blowup(steps=100, lr=0.1):
    """The bias under the two gradients: running away with the mean detached, still with it attached."""
    runs = {"mean outside the gradient": train_bias(False, steps, lr),
            "mean inside the gradient": train_bias(True, steps, lr)}
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    bias_ax, loss_ax = figure.subplots(1, 2)
    for (name, run), style in zip(runs.items(), ("-", "--")):
        bias_ax.plot(run["bias"], linestyle=style, label=name)
        loss_ax.plot(run["loss"], linestyle=style, label=name)
    bias_ax.set(xlabel="step", ylabel="bias $b$", title="the bias before the normalization")
    loss_ax.set(xlabel="step", ylabel="loss", title="the loss does not move",
                ylim=(0, 1.5 * max(run["loss"].max() for run in runs.values())))
    bias_ax.legend(fontsize=8)
    loss_ax.legend(fontsize=8)
    data = {name: {key: run[key] for key in ("bias", "loss", "gradient")} for name, run in runs.items()}
    return figure, data


FIGURES = {"hidden_input_drift": hidden_input_drift, "bias_blowup": bias_blowup}
