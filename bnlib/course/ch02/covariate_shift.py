"""Internal covariate shift, measured; and why normalization has to sit inside the gradient.

Part 1, the drift. Layer k learns from layer k-1's outputs, and those move whenever layer k-1 trains.
``bnlib.course.ch02.recording`` trains the paper's sigmoid MLP on MNIST for 3,000 steps and records, on a
fixed probe batch, the quantiles of every hidden layer's sigmoid inputs x and of the last hidden layer's
inputs u (layer 2's outputs). Here: the drift of each unit from step ``DRIFT_FROM`` to the end
(``bnlib.course.drift``), and the figure.

Part 2, the bias that runs away (the paper's section 2). A layer adds a learned bias b to its input u and
subtracts the mean over the data:

    x = u + b,   x_hat = x - E[x],   loss = 1/(2N) sum_i (x_hat_i - t_i)^2.

If the gradient step treats E[x] as a constant (computed "outside" the gradient), then
d loss / d b = sum_i d loss / d x_hat_i = mean_i (x_hat_i - t_i), which is not zero, so b moves by Delta b.
But u + (b + Delta b) - E[u + (b + Delta b)] = u + b - E[u + b]: x_hat, the output and the loss do not change.
The step repeats forever and b grows without bound. With E[x] inside the gradient,
d x_hat_i / d b = 1 - (1/N) sum_j 1 = 0: the bias gets exactly no gradient and stays put.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from bnlib.course import drift
from bnlib.course.ch02.recording import drift_percentiles, drift_run
from bnlib.course.plots import percentile_bands

DRIFT_FROM = 500  # the first steps only leave the tiny initialization; the drift after them is ordinary training


def layer3_percentiles(run):
    """The 15th, 50th and 85th percentiles (steps, 3, units) of layer 3's inputs u and of its sigmoid inputs x."""
    return {"u": drift_percentiles(run["u_quantiles"]), "x": drift_percentiles(run["x_quantiles"][:, 2])}


def drift_summary(run):
    """The drift (``bnlib.course.drift``) from step ``DRIFT_FROM`` to the end. For layer 3's inputs u and its
    sigmoid inputs x: the median over units, the share of units whose median moved over half a band, the
    median growth of the band width, and the typical unit. ``x_by_layer``: the median drift of each hidden
    layer's sigmoid inputs."""
    steps = run["steps"]
    start = drift.start_index(steps, DRIFT_FROM)
    summary = {"from_step": DRIFT_FROM, "to_step": int(steps[-1]),
               "accuracy_from": float(run["accuracy"][start]), "accuracy_to": float(run["accuracy"][-1])}
    for key, percentiles in layer3_percentiles(run).items():
        moved = drift.unit_drifts(percentiles, steps, DRIFT_FROM)
        summary[key] = {"median_drift": float(np.median(moved)), "share_over_half_a_band": float(np.mean(moved > 0.5)),
                        "median_band_growth": float(np.median(drift.band_growth(percentiles, steps, DRIFT_FROM))),
                        "typical_unit": drift.typical_unit(percentiles, steps, DRIFT_FROM)}
    summary["x_by_layer"] = [float(np.median(drift.unit_drifts(drift_percentiles(layer), steps, DRIFT_FROM)))
                             for layer in np.moveaxis(run["x_quantiles"], 1, 0)]
    return summary


def hidden_input_drift(bins=40):
    """The last hidden layer during training: a typical input u_j (output of the layer before) and a typical
    sigmoid input x_k, as percentile bands over the steps, and histograms of u_j at a few steps."""
    run = drift_run()
    figure = Figure(figsize=(8.4, 7), layout="constrained")
    grid = figure.add_gridspec(2, 2)
    u_ax, x_ax, histogram_ax = (figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]),
                                figure.add_subplot(grid[1, :]))
    data = {"steps": run["steps"], "accuracy": run["accuracy"], "summary": drift_summary(run)}
    titles = {"u": "layer 3's input $u_{%d}$\n(layer 2's output)", "x": "sigmoid input $x_{%d}$\nof layer 3"}
    for ax, key in ((u_ax, "u"), (x_ax, "x")):
        unit = data["summary"][key]["typical_unit"]
        percentiles = layer3_percentiles(run)[key][:, :, unit]
        percentile_bands(ax, run["steps"], *percentiles.T, label="median, 15th-85th percentiles")
        ax.axvline(DRIFT_FROM, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(titles[key] % unit)
        ax.legend(loc="upper right")
        data[key] = {"unit": unit, "percentiles": dict(zip(drift.PERCENTILES, percentiles.T))}
    values = run["u_snapshots"][:, :, data["u"]["unit"]]
    edges = np.linspace(values.min(), values.max(), bins + 1)
    counts = np.array([np.histogram(snapshot, edges)[0] for snapshot in values])
    for step, count in zip(run["snapshot_steps"], counts):
        histogram_ax.stairs(count, edges, label=f"step {step}")
    histogram_ax.set(xlabel=f"$u_{{{data['u']['unit']}}}$", ylabel=f"probe examples (of {values.shape[1]})",
                     title=f"the distribution of $u_{{{data['u']['unit']}}}$ at a few steps")
    histogram_ax.legend()
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


def train_bias(mean_in_gradient, steps=100, lr=0.1):
    """Gradient descent on b alone: loss = 1/(2N) sum_i (x_hat_i - t_i)^2, x_hat = u + b - E[u + b].
    Returns, for steps 0 to ``steps``: ``bias``, ``loss``, ``gradient`` (of b) and ``x_hat`` (steps + 1, N)."""
    u, target = bias_problem()
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    record = {"bias": [], "loss": [], "gradient": [], "x_hat": []}
    for _ in range(steps + 1):
        x_hat = centered(u + b, mean_in_gradient)
        loss = 0.5 * ((x_hat - target) ** 2).mean()
        loss.backward()
        record["bias"].append(b.item())
        record["loss"].append(loss.item())
        record["gradient"].append(b.grad.item())
        record["x_hat"].append(x_hat.detach().numpy().copy())
        with torch.no_grad():
            b -= lr * b.grad  # b <- b - lr d loss / d b
        b.grad = None
    return {name: np.array(values) for name, values in record.items()}


def bias_blowup(steps=100, lr=0.1):
    """The bias under the two gradients: running away with the mean detached, still with it attached."""
    runs = {"mean outside the gradient": train_bias(False, steps, lr),
            "mean inside the gradient": train_bias(True, steps, lr)}
    figure = Figure(figsize=(8.4, 3.8), layout="constrained")
    bias_ax, loss_ax = figure.subplots(1, 2)
    for (name, run), style in zip(runs.items(), ("-", "--")):
        bias_ax.plot(run["bias"], linestyle=style, label=name)
        loss_ax.plot(run["loss"], linestyle=style, label=name)
    bias_ax.set(xlabel="step", ylabel="bias $b$", title="the bias before the normalization")
    loss_ax.set(xlabel="step", ylabel="loss", title="the loss does not move",
                ylim=(0, 1.5 * max(run["loss"].max() for run in runs.values())))
    bias_ax.legend()
    loss_ax.legend()
    data = {name: {key: run[key] for key in ("bias", "loss", "gradient")} for name, run in runs.items()}
    return figure, data


FIGURES = {"hidden_input_drift": hidden_input_drift, "bias_blowup": bias_blowup}
