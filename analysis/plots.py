"""Plots of a study (matplotlib, Agg backend): each function takes plain data and writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

#: Colour-blind-safe colours for every plot (Tableau's colour-blind palette).
plt.style.use("tableau-colorblind10")


def plot_loss_curve(
    steps: np.ndarray,
    loss: np.ndarray,
    heldout_steps: np.ndarray,
    heldout_loss: np.ndarray,
    path: Path | str,
    title: str,
) -> Path:
    """Training loss (smoothed) and held-out loss at the checkpoints against the step."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    if len(loss):
        window = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[: len(smooth)] + window // 2, smooth, label="training loss (smoothed)", color="tab:blue")
    ax.plot(heldout_steps, heldout_loss, "o-", label="held-out loss at checkpoints", color="tab:orange")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _decorate(ax, xlabel: str, ylabel: str, title: str, **legend) -> None:
    """Axis labels, a small title, a light grid and a legend (``legend``: its keyword arguments)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(**legend)


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_overlap_heatmap(
    languages: list[str], rates: np.ndarray, significant: np.ndarray, path: Path | str, title: str
) -> Path:
    """Pairwise overlap rates between languages; a dot marks pairs significant after Holm (paper 002 App. B.1)."""
    n = len(languages)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.5 * n), max(3.6, 1.0 + 0.45 * n)), dpi=120)
    shown = np.where(np.eye(n, dtype=bool), np.nan, rates)
    image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=max(0.05, float(np.nanmax(shown)) if n > 1 else 1))
    for i in range(n):
        for j in range(n):
            if i != j:
                ax.text(
                    j,
                    i,
                    f"{rates[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] < 0.6 * np.nanmax(shown) else "black",
                )
                if significant[i, j]:
                    ax.plot(j + 0.32, i - 0.32, "o", color="orange", markersize=4)
    ax.set_xticks(range(n), languages)
    ax.set_yticks(range(n), languages)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="overlap rate")
    return _save(fig, path)


def plot_series(
    x: list,
    series: dict[str, list[float]],
    path: Path | str,
    title: str,
    xlabel: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "",
) -> Path:
    """One line per series over categorical x (checkpoints or layers), with an optional reference line."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    positions = np.arange(len(x))
    for label, values in series.items():
        ax.plot(positions, values, "o-", label=label)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
    ax.set_xticks(positions, [str(v) for v in x], rotation=30 if len(x) > 4 else 0, fontsize=8)
    _decorate(ax, xlabel, ylabel, title, fontsize=7)
    return _save(fig, path)


def plot_accuracy_vs_k(
    curves: list[tuple[str, str, list[int], list[float], str]], majority: float, path: Path | str, title: str
) -> Path:
    """Accuracy against k (paper 003 Fig. 3) as small multiples: one panel per classifier, one colour per ranking
    method; ``curves`` are (classifier, label, ks, accuracies, style) with style '-', ':' or '--'."""
    classifiers = sorted({c for c, *_ in curves})
    fig, axes = plt.subplots(
        1, len(classifiers), figsize=(4.2 * len(classifiers), 3.6), dpi=120, sharey=True, squeeze=False
    )
    colours: dict[str, str] = {}
    for ax, classifier in zip(axes[0], classifiers, strict=True):
        for _, label, ks, accuracy, style in (c for c in curves if c[0] == classifier):
            family = label.split(" (")[0]
            colours.setdefault(family, f"C{len(colours)}")
            ax.plot(ks, accuracy, style, color=colours[family], label=label, linewidth=1.3)
        ax.axhline(majority, color="black", linewidth=0.8, label="majority baseline")
        ax.set_xscale("log")
        _decorate(ax, "k (top-ranked neurons used, log scale)", "test accuracy", f"{classifier} classifier", fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_scatter(
    points: dict[str, tuple[list[float], list[float]]], path: Path | str, title: str, xlabel: str, ylabel: str
) -> Path:
    """Scatter of y against x, one colour per group (e.g. overlap vs transfer, coloured by target language)."""
    fig, ax = plt.subplots(figsize=(5.6, 4), dpi=120)
    colours = plt.get_cmap("tab20" if len(points) > 10 else "tab10")
    for i, (label, (xs, ys)) in enumerate(points.items()):
        ax.scatter(xs, ys, label=label, s=22, color=colours(i % colours.N))
    _decorate(ax, xlabel, ylabel, title, fontsize=7)
    return _save(fig, path)


#: One line of a panel: (label, x, y, colour, line style).
Curve = tuple[str, list, list, str, str]


def plot_curve_grid(
    panels: dict[tuple[str, str], list[Curve]], path: Path | str, title: str, xlabel: str, ylabel: str
) -> Path:
    """Small multiples: one panel per (row, column) key, rows and columns in first-seen order, shared axes; the
    legend of the first panel stands for all."""
    rows = list(dict.fromkeys(r for r, _ in panels))
    columns = list(dict.fromkeys(c for _, c in panels))
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(max(6.0, 2.6 * len(columns) + 0.6), 2.2 * len(rows) + 0.8),
        dpi=120,
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            for label, xs, ys, colour, style in panels.get((row, column), []):
                ax.plot(xs, ys, style, color=colour, label=label, linewidth=1.2)
            ax.set_title(f"{row} · {column}", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_heatmap_pair(
    languages: list[str], left: np.ndarray, right: np.ndarray, titles: tuple[str, str], path: Path | str, title: str
) -> Path:
    """Two language × language matrices side by side (row: source, column: target), NaN cells blank, each cell
    written; the diagonal is left blank."""
    n = len(languages)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.0 + 1.0 * n), max(3.6, 1.2 + 0.45 * n)), dpi=120)
    for ax, matrix, subtitle in zip(axes, (left, right), titles, strict=True):
        shown = np.where(np.eye(n, dtype=bool), np.nan, matrix)
        finite = shown[np.isfinite(shown)]
        low, high = (min(0.0, float(finite.min())), max(0.05, float(finite.max()))) if finite.size else (0.0, 1.0)
        image = ax.imshow(shown, cmap="viridis", vmin=low, vmax=high)
        for i in range(n):
            for j in range(n):
                if i != j and np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(n), languages)
        ax.set_yticks(range(n), languages)
        ax.set_xlabel("target language", fontsize=8)
        ax.set_ylabel("source language", fontsize=8)
        ax.set_title(subtitle, fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
