"""The pre-training of the study's own model: loss curves and the held-out loss at each checkpoint."""

from __future__ import annotations

import numpy as np

from analysis.plots import plot_loss_curve
from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection


def build(context: ReportContext) -> Section:
    con = context.con
    section = Section("Pre-training of the study's own model")
    for (model,) in con.execute("SELECT DISTINCT model FROM pretrain_loss ORDER BY 1").fetchall():
        rows = con.execute(
            "SELECT step, loss, heldout_loss FROM pretrain_loss WHERE model = ? ORDER BY step", [model]
        ).fetchall()
        steps, loss, heldout = (np.asarray(c, dtype=float) for c in zip(*rows, strict=True))
        at = ~np.isnan(heldout)
        name = f"loss-{model}.png"
        plot_loss_curve(steps[1:], loss[1:], steps[at], heldout[at], context.out_dir / name, f"pre-training of {model}")
        section.images.append((f"{model}: training and held-out loss; checkpoints at the dots", name))
        section.tables.append(
            Table(
                f"{model}: held-out loss at the checkpoints",
                ["step", "held-out loss"],
                [(int(s), float(h)) for s, h in zip(steps[at], heldout[at], strict=True)],
            )
        )
    return section


PRETRAINING = ReportSection("pretraining", ("pretrain_loss",), build)
