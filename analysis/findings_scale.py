"""Does a ranking's cross-lingual overlap exceed what neuron scale alone gives? (rows in, findings out)

Two answers. The scale control, below; and the attribute contrast (`analysis.attribute_overlap`): the same
method's overlap between the same attribute in two languages against its overlap between different
attributes in them, each ranking taken beyond the scale control's top k (`contrast_findings`).

The hypergeometric null of ``overlap_pairs`` assumes each language's top k is a uniformly random k-subset.
A ranking that favours high-variance neurons ("rogue dimensions", which are the same neurons in every
language) beats that null without any shared grammar. The scale control (`probing.rankers.VarianceRanker`:
neurons by pooled within-class standard deviation, so by size and not by what they encode) measures that
overlap on the same words. Per
(attribute, method): on the same (model, checkpoint, layer, seed, language pair), the method's overlap rate
minus the scale control's, one-sided Wilcoxon signed-rank test of "greater" over the pairs (pairs that tie
dropped), BH over every (attribute, method). The pairs share languages, so the test treats dependent
pairs as independent: it is a screen, read with the per-pair numbers beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from analysis.findings import ALPHA, Finding, benjamini_hochberg, pooled_trend

SCALE_CONTROL = "variance"
PAIR_KEY = ("model", "checkpoint", "layer", "seed", "language_a", "language_b", "k")


def scale_rows(pairs: Sequence[Mapping], controls: Sequence[str] = ("random",)) -> list[dict]:
    """One row per (attribute, method): mean overlap rate, the scale control's on the same pairs, Wilcoxon p, BH."""
    scale = {(p["attribute"], *(p[c] for c in PAIR_KEY)): p["rate"] for p in pairs if p["method"] == SCALE_CONTROL}
    paired: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for p in pairs:
        key = (p["attribute"], *(p[c] for c in PAIR_KEY))
        if p["method"] not in (SCALE_CONTROL, *controls) and key in scale:
            paired[(p["attribute"], p["method"])].append((p["rate"], scale[key]))
    rows = []
    for (attribute, method), values in sorted(paired.items()):
        diff = np.asarray([a - b for a, b in values])
        nonzero = diff[diff != 0]
        pvalue = float(stats.wilcoxon(nonzero, alternative="greater").pvalue) if len(nonzero) else 1.0
        rows.append(
            {
                "attribute": attribute,
                "method": method,
                "pairs": len(diff),
                "rate": float(np.mean([a for a, _ in values])),
                "scale_rate": float(np.mean([b for _, b in values])),
                "higher": int(np.sum(diff > 0)),
                "lower": int(np.sum(diff < 0)),
                "pvalue": pvalue,
            }
        )
    for row, adjusted in zip(rows, benjamini_hochberg([r["pvalue"] for r in rows]), strict=True):
        row["pvalue_bh"] = float(adjusted)
    return rows


def scale_findings(rows: Sequence[Mapping]) -> list[Finding]:
    """One sentence per (attribute, method): its overlap against the scale control's on the same pairs."""
    findings = []
    for row in rows:
        above = row["pvalue_bh"] <= ALPHA and row["rate"] > row["scale_rate"]
        verdict = "more than scale alone explains" if above else "no more than scale alone explains"
        sentence = (
            f"{row['attribute']}, {row['method']} against the scale control (neurons by within-class standard "
            f"deviation): overlap rate {row['rate']:.3f} vs {row['scale_rate']:.3f} on the same "
            f"{row['pairs']} language pairs (higher on {row['higher']}, lower on {row['lower']}; one-sided Wilcoxon "
            f"BH p = {row['pvalue_bh']:.2g}) — {verdict}."
        )
        findings.append(Finding("scale", sentence, dict(row) | {"above_scale": above}))
    return findings


def contrast_findings(rows: Sequence[Mapping], control: str = "random") -> list[Finding]:
    """Per (model, method, seed): where same-attribute overlap exceeds cross-attribute overlap (BH over the
    study's contrasts), at the first and the last checkpoint, and the excess's pooled trend over checkpoints
    (`analysis.findings.pooled_trend` over the layers' series; one-sided p for "rises")."""
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in rows:
        if not np.isnan(row["pvalue"]) and row["checkpoint_index"] >= 0:
            groups[(row["model"], row["method"], row["seed"])].append(row)
    findings = []
    for (model, method, seed), members in sorted(groups.items(), key=lambda g: (g[0][1] == control, str(g[0]))):
        members = sorted(members, key=lambda r: (r["checkpoint_index"], r["layer"]))
        first = [r for r in members if r["checkpoint_index"] == members[0]["checkpoint_index"]]
        last = [r for r in members if r["checkpoint_index"] == members[-1]["checkpoint_index"]]
        n_checkpoints = len({r["checkpoint_index"] for r in members})
        significant = sum(map(_significant, members))
        series = [
            [r["excess"] for r in members if r["layer"] == layer] for layer in sorted({r["layer"] for r in members})
        ]
        rho, rises, _ = pooled_trend(series)
        role = " (the control: no excess expected)" if method == control else ""
        trend = (
            f"over {n_checkpoints} checkpoints the excess's mean Spearman ρ = {rho:+.2f} (one-sided joint permutation "
            f"p = {rises:.2g})"
            if not np.isnan(rho)
            else "no trend tested (fewer than 3 checkpoints)"
        )
        removed = members[0]["scale_removed"]
        sentence = (
            f"{method}{role}: beyond the scale control's top {removed} neurons, same-attribute overlap across "
            f"languages exceeds cross-attribute overlap (same method, same language pairs) in {significant} of "
            f"{len(members)} (checkpoint, layer) cells after BH. "
            f"First checkpoint: {_cells(first)}; last: {_cells(last)}; {trend}."
        )
        numbers = {
            "model": model,
            "method": method,
            "seed": seed,
            "significant": significant,
            "cells": len(members),
            "first_significant": sum(map(_significant, first)),
            "last_significant": sum(map(_significant, last)),
            "mean_rho": rho,
            "pvalue_rises": rises,
        }
        findings.append(Finding("scale", sentence, numbers))
    return findings


def _significant(row: Mapping) -> bool:
    """A contrast above zero after the study's BH."""
    return row["pvalue_bh"] <= ALPHA and row["excess"] > 0


def _cells(rows: Sequence[Mapping]) -> str:
    """ "rate vs rate (excess, BH p) at layer L" for each row, by layer."""
    return "; ".join(
        f"layer {r['layer']} {r['same_rate']:.3f} vs {r['cross_rate']:.3f} (excess {r['excess']:+.3f}, BH p = "
        f"{r['pvalue_bh']:.2g})"
        for r in sorted(rows, key=lambda r: r["layer"])
    )
