"""Does a ranking's cross-lingual overlap exceed what neuron scale alone gives? (rows in, findings out)

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

from analysis.findings import ALPHA, Finding, benjamini_hochberg

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
