"""What the interventions found, as sentences with their numbers (rows in, findings out).

Does editing a ranking's top-k neurons change what the model produces more than editing k random
neurons? Per (model, checkpoint, layer, attribute, intervention, readout, k) and ranking (top-to-bottom),
from ``intervention_rates`` rows on the test split, each language's edit on its own words, pooled over
languages and seeds:

- the effect: for a causal LM (next-word readout) the flip rate, words whose next word changed against
  the unedited model (flips / n_words); for a masked LM the CLWV rate, the word reconstructed with its
  lemma and another value of the attribute (n_clwv / relevant; paper 003 §4);
- against the random control at the same k: one-sided Fisher exact test on the pooled 2×2 counts,
  BH over every (ranking, k) tested. The same words are edited by both, so the two samples are paired
  and positively correlated; the unpaired test is then conservative (per-word outcomes are not stored,
  so McNemar's test cannot be computed);
- the ranking's bottom-to-top reverse at the same k is reported beside it (it should do least).

One sentence per (attribute, intervention, ranking) at the study's k, with the smallest k at which the
ranking beats random (BH).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from scipy import stats

from analysis.findings import ALPHA, Finding, benjamini_hochberg

GROUP = ("model", "checkpoint", "layer", "attribute", "intervention", "readout", "k")


def effect_counts(row: Mapping) -> tuple[int, int]:
    """(words with the effect, words it could have happened to) of one ``intervention_rates`` row."""
    if row["readout"] == "masked":
        return int(row["n_clwv"]), int(row["relevant"])
    return int(row["flips"]), int(row["n_words"])


def _pooled(rows: Sequence[Mapping]) -> tuple[int, int]:
    counts = [effect_counts(r) for r in rows]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def comparison_rows(rates: Sequence[Mapping], control: str = "random") -> list[dict]:
    """One row per (group, ranking): pooled effect of its top-k, its reverse and random's, Fisher p and BH p."""
    groups: dict[tuple, dict[tuple[str, str], list[Mapping]]] = defaultdict(lambda: defaultdict(list))
    for row in rates:
        if row["split"] == "test" and row["source_language"] == row["language"] and row["k"] > 0:
            groups[tuple(row[c] for c in GROUP)][(row["method"], row["direction"])].append(row)
    out = []
    for key, by_ranking in sorted(groups.items(), key=lambda g: tuple(map(str, g[0]))):
        random_hits, random_total = _pooled(by_ranking.get((control, "ttb"), []))
        if not random_total:
            continue
        for (method, direction), members in sorted(by_ranking.items()):
            if method == control or direction != "ttb":
                continue
            hits, total = _pooled(members)
            reverse = _pooled(by_ranking.get((method, "btt"), []))
            table = [[hits, total - hits], [random_hits, random_total - random_hits]]
            pvalue = float(stats.fisher_exact(table, alternative="greater").pvalue) if total else float("nan")
            out.append(
                dict(zip(GROUP, key, strict=True))
                | {
                    "method": method,
                    "rate": _rate(hits, total),
                    "reverse_rate": _rate(*reverse),
                    "random_rate": _rate(random_hits, random_total),
                    "n": total,
                    "pvalue": pvalue,
                }
            )
    for row, adjusted in zip(out, benjamini_hochberg([r["pvalue"] for r in out]), strict=True):
        row["pvalue_bh"] = float(adjusted)
    return out


def intervention_findings(comparisons: Sequence[Mapping], k: int) -> list[Finding]:
    """Per (model, checkpoint, layer, attribute, intervention, readout, ranking): the effect at the evaluated k
    nearest ``k`` against random and the reverse, and the smallest k at which it beats random (BH)."""
    series: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in comparisons:
        series[(*(row[c] for c in GROUP[:-1]), row["method"])].append(row)
    findings = []
    for key, rows in sorted(series.items(), key=lambda g: tuple(map(str, g[0]))):
        model, checkpoint, layer, attribute, intervention, readout, method = key
        at = min(rows, key=lambda r: (abs(r["k"] - k), r["k"]))
        beating = sorted(r["k"] for r in rows if r["pvalue_bh"] <= ALPHA and r["rate"] > r["random_rate"])
        measure = "CLWV rate" if readout == "masked" else "next-word flip rate"
        significant = at["pvalue_bh"] <= ALPHA and at["rate"] > at["random_rate"]
        verdict = "more than random" if significant else "not significantly more than random"
        first = f"; it first beats random at k = {beating[0]}" if beating else "; it beats random at no k tested"
        sentence = (
            f"{attribute}, {intervention} at layer {layer} ({model}, {checkpoint}): editing {method}'s top "
            f"{at['k']} neurons changes the {measure} to {at['rate']:.3f}, {verdict} ({at['random_rate']:.3f} for "
            f"{at['k']} random neurons, {at['reverse_rate']:.3f} for its bottom {at['k']}; n = {at['n']} words, "
            f"one-sided Fisher BH p = {at['pvalue_bh']:.2g}){first}."
        )
        numbers = {
            "attribute": attribute,
            "intervention": intervention,
            "method": method,
            "k": at["k"],
            "rate": at["rate"],
            "random_rate": at["random_rate"],
            "significant": significant,
            "first_k": beating[0] if beating else None,
        }
        findings.append(Finding("interventions", sentence, numbers))
    return findings
