"""Plots of a study (matplotlib, Agg backend): each function takes plain data and writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
