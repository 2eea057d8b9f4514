"""Input normalization: standardize each feature, and why gradient descent cares.

A linear model fitted by least squares has the loss

    L(w) = 1/(2N) ||X w - y||^2,   gradient  X^T (X w - y) / N,   Hessian  H = X^T X / N.

L is a quadratic bowl shaped by H. Gradient descent, w <- w - lr * grad L(w), multiplies the error
along each eigenvector of H by (1 - lr * lambda_i) at every step, so

- it is stable iff |1 - lr * lambda_max| < 1, that is lr < 2 / lambda_max;
- its slowest direction shrinks by (1 - lr * lambda_min) per step: even at lr = 1 / lambda_max that is
  1 - 1/kappa, with kappa = lambda_max / lambda_min the condition number.

Two features on very different scales (here 1-5 and 1,000-99,999) give kappa ~ 1e9: a narrow ravine.
Standardizing each column, z = (x - mean) / std, gives kappa ~ 1: a round bowl.
"""

import numpy as np
from matplotlib.figure import Figure

FEATURE_RANGES = ((1.0, 5.0), (1_000.0, 99_999.0))
TRUE_WEIGHTS = (0.8, 4e-5)
START_OFFSET = np.array([-1.5, 1.0])
TOLERANCE = 1e-3
ROUNDING_FLOOR = 1e-16  # relative loss gaps below this are float64 rounding, drawn at the floor
NAMES = {False: "raw features", True: "standardized features"}


def two_scale_data(n=200, seed=0):
    """``(X, y)``: x1 uniform in [1, 5], x2 uniform in [1000, 99999], y = 0.8 x1 + 4e-5 x2 + noise."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(low, high, n) for low, high in FEATURE_RANGES])
    y = X @ np.array(TRUE_WEIGHTS) + rng.normal(0.0, 0.3, n)
    return X, y


def standardize(X):
    """``(Z, mean, std)`` with z_ij = (x_ij - mean_j) / std_j, statistics per column over the rows."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"standardize expects a 2-D array (examples, features), got shape {X.shape}")
    mean, std = X.mean(axis=0), X.std(axis=0)
    if np.any(std == 0):
        raise ValueError(f"columns {np.flatnonzero(std == 0).tolist()} are constant; drop them before standardizing")
    return (X - mean) / std, mean, std


def problem(normalize):
    """The least-squares problem ``(X, y)`` on raw or standardized features.

    With centered features the best intercept is exactly mean(y), so the standardized model is
    y_hat = mean(y) + w . z: we fit the centered target and keep two weights in both problems.
    """
    X, y = two_scale_data()
    if normalize:
        return standardize(X)[0], y - y.mean()
    return X, y


def loss(w, X, y):
    """L(w) = 1/(2N) ||X w - y||^2; ``w`` may hold many weight vectors along its last axis."""
    residual = np.asarray(w) @ X.T - y
    return 0.5 * np.mean(residual ** 2, axis=-1)


def gradient(w, X, y):
    """grad L(w) = X^T (X w - y) / N."""
    return X.T @ (X @ w - y) / len(y)


def hessian(X):
    """H = X^T X / N, the same everywhere since L is quadratic."""
    return X.T @ X / len(X)


def eigenvalues(X):
    """Eigenvalues of H, ascending."""
    return np.linalg.eigvalsh(hessian(X))


def condition_number(X):
    """kappa = lambda_max / lambda_min of H."""
    low, high = eigenvalues(X)[[0, -1]]
    return high / low


def max_stable_lr(X):
    """lr_max = 2 / lambda_max: above it the error along the top eigenvector grows by |1 - lr lambda_max| > 1."""
    return 2.0 / eigenvalues(X)[-1]


def optimum(X, y):
    """w* minimizing L, from least squares."""
    return np.linalg.lstsq(X, y, rcond=None)[0]


def start(X, y):
    """Where gradient descent starts: the same offset from the optimum in both problems."""
    return optimum(X, y) + START_OFFSET


def converged_gap(y, tolerance=TOLERANCE):
    """Converged once the predictions are within ``tolerance * std(y)`` (RMS) of the best ones.

    For least squares L(w) - L(w*) = 1/2 mean((y_hat - y_hat*)^2), so that is a loss gap of
    tolerance^2 var(y) / 2, the same criterion whatever the features' scale.
    """
    return 0.5 * tolerance ** 2 * np.var(y)


def gradient_descent(X, y, lr, steps, w0=None, blow_up=1e12):
    """Run ``steps`` steps of w <- w - lr grad L(w); stop early once the loss exceeds ``blow_up`` times its start.

    Returns ``(weights (T+1, 2), losses (T+1,), diverged)``.
    """
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    w = start(X, y) if w0 is None else np.asarray(w0, dtype=float)
    weights, losses = [w], [loss(w, X, y)]
    for _ in range(steps):
        w = w - lr * gradient(w, X, y)
        weights.append(w)
        losses.append(loss(w, X, y))
        if not losses[-1] <= blow_up * losses[0]:
            return np.array(weights), np.array(losses), True
    return np.array(weights), np.array(losses), False


def steps_to_converge(X, y, lr, max_steps=100_000, w0=None):
    """Measured: the first step at which the loss gap falls below :func:`converged_gap`, or None."""
    w = start(X, y) if w0 is None else np.asarray(w0, dtype=float)
    best, target = loss(optimum(X, y), X, y), converged_gap(y)
    for step in range(max_steps + 1):
        if loss(w, X, y) - best <= target:
            return step
        w = w - lr * gradient(w, X, y)
    return None


def gap_after(X, y, lr, steps, w0=None):
    """The loss gap after ``steps`` steps, in closed form (``steps`` may be an array).

    In the eigenbasis of H the error e = w - w* evolves as e_i(t) = (1 - lr lambda_i)^t e_i(0), so
    L(w_t) - L(w*) = 1/2 sum_i lambda_i (1 - lr lambda_i)^(2t) e_i(0)^2.
    """
    lambdas, vectors = np.linalg.eigh(hessian(X))
    w = start(X, y) if w0 is None else np.asarray(w0, dtype=float)
    error = vectors.T @ (w - optimum(X, y))
    t = np.asarray(steps, dtype=float)[..., None]
    return 0.5 * np.sum(lambdas * (1 - lr * lambdas) ** (2 * t) * error ** 2, axis=-1)


def predicted_steps_to_converge(X, y, lr, w0=None):
    """The closed-form count: the smallest t with gap_after(t) below :func:`converged_gap` (None if unstable)."""
    if lr >= max_stable_lr(X):
        return None
    target = converged_gap(y)
    high = 1
    while gap_after(X, y, lr, high, w0) > target:
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if gap_after(X, y, lr, middle, w0) > target else (low, middle)
    return high if gap_after(X, y, lr, low, w0) > target else low


def summary(normalize):
    """The numbers of one problem: eigenvalues, kappa, lr_max and the steps to converge at lr = 1/lambda_max."""
    X, y = problem(normalize)
    lambdas = eigenvalues(X)
    lr = 1.0 / lambdas[-1]
    return {
        "lambda_min": lambdas[0], "lambda_max": lambdas[-1], "condition_number": lambdas[-1] / lambdas[0],
        "max_stable_lr": 2.0 / lambdas[-1], "lr": lr,
        "measured_steps": steps_to_converge(X, y, lr, max_steps=10_000),
        "predicted_steps": predicted_steps_to_converge(X, y, lr),
    }


def draw_contours(ax, X, y, weights=None, radius=2.0, levels=14):
    """Loss contours around w* (equal axes, log-spaced levels of the gap) and a trajectory on top."""
    center = optimum(X, y)
    grid = np.linspace(-radius, radius, 301)
    W1, W2 = np.meshgrid(center[0] + grid, center[1] + grid)
    gap = loss(np.stack([W1, W2], axis=-1), X, y) - loss(center, X, y)
    top = gap.max()
    ax.contour(W1, W2, gap, levels=top * np.logspace(-6, 0, levels), colors="0.6", linewidths=0.7)
    ax.plot(*center, marker="*", color="black", markersize=10, linestyle="none", label="optimum $w^*$")
    line, = ax.plot([], [], marker="o", markersize=3, color="tab:red", linewidth=1.2, label="gradient descent")
    if weights is not None:
        line.set_data(weights[:, 0], weights[:, 1])
    ax.set(xlim=(center[0] - radius, center[0] + radius), ylim=(center[1] - radius, center[1] + radius),
           xlabel="$w_1$", ylabel="$w_2$", aspect="equal")
    return line


def ravine_vs_bowl(steps=50):
    """Gradient descent at lr = 1/lambda_max on raw and standardized features, and its loss gap over steps."""
    figure = Figure(figsize=(8.4, 7.4), layout="constrained")
    grid = figure.add_gridspec(2, 2, height_ratios=(1.25, 1))
    axes = [figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1]), figure.add_subplot(grid[1, :])]
    data = {}
    for ax, normalize in zip(axes[:2], (False, True)):
        X, y = problem(normalize)
        numbers = summary(normalize)
        weights, losses, _ = gradient_descent(X, y, numbers["lr"], steps)
        gaps = losses - loss(optimum(X, y), X, y)
        draw_contours(ax, X, y, weights)
        ax.set_title(f"{NAMES[normalize]}: $\\kappa$ = {numbers['condition_number']:.3g}")
        axes[2].semilogy(np.maximum(gaps, 1e-300), label=NAMES[normalize])
        key = "standardized" if normalize else "raw"
        data[key] = {"weights": weights, "loss_gap": gaps, "optimum": optimum(X, y), **numbers}
    axes[0].legend(loc="upper right")
    axes[2].axhline(converged_gap(problem(True)[1]), color="0.5", linestyle="--", label="converged")
    top = max(entry["loss_gap"][0] for entry in data.values())
    axes[2].set(xlabel="step", ylabel="$L(w) - L(w^*)$", title="loss gap at lr = 1/$\\lambda_{max}$",
                ylim=(1e-12, 10 * top))
    axes[2].legend()
    return figure, data


def stable_learning_rate(steps=100, ratios=np.logspace(-1, np.log10(3), 41)):
    """The loss gap after ``steps`` steps (relative to the start) against lr / lr_max: it explodes past 1."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    data = {"lr_over_max": ratios}
    for normalize in (False, True):
        X, y = problem(normalize)
        lr_max = max_stable_lr(X)
        best = loss(optimum(X, y), X, y)
        final = np.array([gradient_descent(X, y, ratio * lr_max, steps, blow_up=np.inf)[1][-1] - best
                          for ratio in ratios]) / (loss(start(X, y), X, y) - best)
        ax.loglog(ratios, np.maximum(final, ROUNDING_FLOOR), marker=".",
                  label=f"{NAMES[normalize]} (lr_max = {lr_max:.3g})")
        data["standardized" if normalize else "raw"] = {"lr_max": lr_max, "gap_ratio": final}
    ax.axvline(1.0, color="0.5", linestyle="--", label="lr = 2/$\\lambda_{max}$")
    ax.axhline(1.0, color="0.8", linewidth=0.8)
    ax.set(xlabel="learning rate / (2/$\\lambda_{max}$)", ylabel=f"loss gap after {steps} steps / initial gap",
           title="the stability limit")
    ax.legend(fontsize=8)
    return figure, data


FIGURES = {"ravine_vs_bowl": ravine_vs_bowl, "stable_learning_rate": stable_learning_rate}
