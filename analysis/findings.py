"""What a study found, as sentences with the numbers and tests behind them (rows in, rows out).

Four questions, each answered against its null:

1. *Are the controls at chance?* The random ranking's cross-lingual overlap rate should be k/d, and
   about α of its pairs significant before correction, none after BH over the control's own pairs.
2. *Do the rankings beat random at small k?* Per (attribute, method, k): the paired difference of
   test accuracy between the ranking's top k and the random control's top k over the same datasets
   (model, checkpoint, layer, language, attribute, classifier), one-sided Wilcoxon signed-rank test,
   Benjamini–Hochberg over every (attribute, method, k) tested.
3. *Does overlap exceed chance, and does it rise over checkpoints?* Per (attribute, method): the mean
   pairwise overlap rate against k/d and the share of language pairs significant after BH across the
   whole study (``pvalue_bh`` of ``overlap_pairs``); the trend is Spearman's ρ of the matrix's average
   overlap rate with the checkpoint's position (``overlap_trends``; the order of log-spaced steps, so ρ is
   the same against log step), with its exact permutation p-value for up to 8 checkpoints (with 5
   checkpoints no two-sided p can be below 1/60), BH over every trend tested. Because one series has so
   little power, the trend is also pooled per (model, method, seed) over every (layer, attribute) series
   (``pooled_trends``): the mean of their ρ, with the p-value of a joint permutation test that reorders
   the checkpoints of all series by the same permutation (valid however the series depend on each other,
   since under "no trend" the checkpoints are exchangeable), one-sided for "rises" (paper 002's
   hypothesis) and two-sided, BH over the methods.
4. *Does overlap track transfer?* Pearson r and p of the ``correlations`` table, as computed there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
from scipy import stats

ALPHA = 0.05
#: Up to this many checkpoints the trend's p-value is exact (all n! orderings); above it, the t approximation.
EXACT_TREND_MAX = 8
TREND_KEY = ("model", "layer", "attribute", "method", "seed")


@dataclass(frozen=True)
class Finding:
    """One sentence of the report's findings, with the numbers it states."""

    topic: str
    sentence: str
    numbers: dict = field(default_factory=dict)


def benjamini_hochberg(pvalues: Sequence[float], method: str = "bh") -> np.ndarray:
    """FDR-adjusted p-values (``scipy.stats.false_discovery_control``): Benjamini–Hochberg, or with
    ``method="by"`` Benjamini–Yekutieli, valid under any dependence between the tests (overlap tests of one
    study share languages and neurons). NaN p-values stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(p[finite], method=method)
    return adjusted


def spearman_trend(position: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Spearman's ρ of ``values`` against ``position`` and its two-sided p-value (exact for n ≤ 8).

    The exact p is the share of the n! orderings of the values whose |ρ| is at least the observed one.
    NaN for fewer than 3 points or constant values.
    """
    x, y = np.asarray(position, dtype=float), np.asarray(values, dtype=float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rho = float(stats.spearmanr(x, y).statistic)
    if n > EXACT_TREND_MAX:
        return rho, float(stats.spearmanr(x, y).pvalue)
    rank_x = stats.rankdata(x) - (n + 1) / 2
    orderings = np.asarray(list(permutations(stats.rankdata(y))), dtype=float)  # (n!, n), ties kept
    orderings -= orderings.mean(axis=1, keepdims=True)
    rhos = orderings @ rank_x / (np.linalg.norm(orderings, axis=1) * np.linalg.norm(rank_x))
    return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def trend_rows(summaries: Iterable[Mapping]) -> list[dict]:
    """One trend per (model, layer, attribute, method, seed) over checkpoints, with BH across all trends.

    ``summaries`` are ``overlap_summary`` rows (``checkpoint_index``, ``average_rate``, ``n_languages``).
    """
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in summaries:
        if row["n_languages"] > 1 and row["checkpoint_index"] >= 0:
            groups[tuple(row[c] for c in TREND_KEY)].append(row)
    rows = []
    for key, members in sorted(groups.items(), key=lambda g: str(g[0])):
        members = sorted(members, key=lambda r: r["checkpoint_index"])
        rates = [r["average_rate"] for r in members]
        rho, p = spearman_trend([r["checkpoint_index"] for r in members], rates)
        rows.append(
            {
                **dict(zip(TREND_KEY, key, strict=True)),
                "n_checkpoints": len(members),
                "first_rate": float(rates[0]),
                "last_rate": float(rates[-1]),
                "expected_rate": float(members[0]["expected_rate"]),
                "spearman_rho": rho,
                "pvalue": p,
            }
        )
    for row, adjusted in zip(rows, benjamini_hochberg([r["pvalue"] for r in rows]), strict=True):
        row["pvalue_bh"] = float(adjusted)
    return rows


POOLED_KEY = ("model", "method", "seed")


def pooled_trend(series: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """Mean Spearman ρ of several series against checkpoint position, and its joint permutation p-values.

    ``series`` are rates over the same checkpoints, in checkpoint order (series with fewer points or a
    NaN are left out). Every ordering of the checkpoints (n! of them, n ≤ `EXACT_TREND_MAX`) is applied to
    all series at once; p_rises is the share whose mean ρ is at least the observed one, p_two_sided the
    share whose |mean ρ| is. Returns (mean ρ, p_rises, p_two_sided); NaN when no series can be ranked.
    """
    lengths = {len(s) for s in series}
    n = max(lengths, default=0)
    usable = [np.asarray(s, dtype=float) for s in series if len(s) == n and not np.isnan(s).any() and np.ptp(s) > 0]
    if n < 3 or n > EXACT_TREND_MAX or not usable:
        return float("nan"), float("nan"), float("nan")
    ranks = np.stack([stats.rankdata(s) for s in usable])
    ranks -= ranks.mean(axis=1, keepdims=True)
    ranks /= np.linalg.norm(ranks, axis=1, keepdims=True)
    orders = np.asarray(list(permutations(range(n))), dtype=int)  # (n!, n); the identity comes first
    positions = orders - (n - 1) / 2
    positions /= np.linalg.norm(positions, axis=1, keepdims=True)
    mean_rhos = (ranks @ positions.T).mean(axis=0)  # mean ρ of the series under each ordering of the checkpoints
    observed = mean_rhos[0]
    rises = float(np.mean(mean_rhos >= observed - 1e-12))
    two_sided = float(np.mean(np.abs(mean_rhos) >= abs(observed) - 1e-12))
    return float(observed), rises, two_sided


def pooled_trend_rows(summaries: Iterable[Mapping]) -> list[dict]:
    """One pooled trend per (model, method, seed) over its (layer, attribute) series (`pooled_trend`), BH over
    the rows on the one-sided p."""
    series: dict[tuple, dict[tuple, list[Mapping]]] = defaultdict(lambda: defaultdict(list))
    for row in summaries:
        if row["n_languages"] > 1 and row["checkpoint_index"] >= 0:
            series[tuple(row[c] for c in POOLED_KEY)][(row["layer"], row["attribute"])].append(row)
    rows = []
    for key, members in sorted(series.items(), key=lambda g: str(g[0])):
        ordered = [sorted(m, key=lambda r: r["checkpoint_index"]) for _, m in sorted(members.items())]
        rates = [[r["average_rate"] for r in m] for m in ordered]
        rho, rises, two_sided = pooled_trend(rates)
        rows.append(
            {
                **dict(zip(POOLED_KEY, key, strict=True)),
                "n_series": len(rates),
                "n_checkpoints": max(len(r) for r in rates),
                "first_rate": float(np.mean([r[0] for r in rates])),
                "last_rate": float(np.mean([r[-1] for r in rates])),
                "mean_rho": rho,
                "pvalue_rises": rises,
                "pvalue": two_sided,
            }
        )
    for row, adjusted in zip(rows, benjamini_hochberg([r["pvalue_rises"] for r in rows]), strict=True):
        row["pvalue_rises_bh"] = float(adjusted)
    return rows


def control_findings(pairs: Sequence[Mapping], control: str = "random") -> list[Finding]:
    """Is the random control's cross-lingual overlap at chance? (``overlap_pairs`` rows.)

    At chance means: no pair significant after BH over the control's own pairs (every one of them is a true
    null, so BH there controls the family-wise error: a rejection happens with probability ≤ α), and a mean
    overlap rate within 4 standard errors of k/d (the hypergeometric variance, pairs treated as independent).
    The study-wide BH count is reported, not tested: with real discoveries in the pool, BH's threshold rises
    to α·R/m (R discoveries of m tests) and lets about that share of the true nulls through, the control's
    included. Holm is per matrix, so about α of the matrices may hold one Holm-significant pair by chance;
    its count is reported, not tested.
    """
    mine = [p for p in pairs if p["method"] == control]
    if not mine:
        return []
    rate = float(np.mean([p["rate"] for p in mine]))
    chance = float(np.mean([p["expected"] / p["k"] for p in mine]))
    variance = [hypergeometric_rate_variance(p["d"], p["k"]) for p in mine]
    standard_error = float(np.sqrt(np.sum(variance)) / len(mine))
    raw = int(sum(p["pvalue"] <= ALPHA for p in mine))
    holm = int(sum(p["significant"] for p in mine))
    own = int(np.sum(benjamini_hochberg([p["pvalue"] for p in mine]) <= ALPHA))
    bh = int(sum(p["pvalue_bh"] <= ALPHA for p in mine))
    at_chance = own == 0 and abs(rate - chance) <= 4 * standard_error
    sentence = (
        f"Random control: mean overlap rate {rate:.3f} against chance k/d = {chance:.3f} (standard error "
        f"{standard_error:.3f}); {raw} of {len(mine)} language pairs have p ≤ {ALPHA} before correction (about "
        f"{ALPHA * len(mine):.0f} expected by chance), {own} after BH over the control's own pairs, {holm} after "
        f"Holm within each matrix and {bh} after study-wide BH (whose discoveries may be {ALPHA:.0%} false, in "
        "expectation) — "
        + ("at chance, as it must be." if at_chance else "NOT at chance: a defect or too few pairs to tell.")
    )
    numbers = {"rate": rate, "chance": chance, "pairs": len(mine), "raw": raw, "holm": holm, "bh": bh, "own_bh": own}
    return [Finding("controls", sentence, numbers | {"at_chance": at_chance, "standard_error": standard_error})]


def hypergeometric_rate_variance(d: int, k: int) -> float:
    """Variance of overlap / k when both top-k sets are uniformly random k-subsets of d neurons."""
    return float(stats.hypergeom.var(d, k, k)) / k**2


def beats_random_rows(metrics: Iterable[Mapping], ks: Sequence[int], control: str = "random") -> list[dict]:
    """Paired accuracy of each ranking's top k against the random control's, per (attribute, method, k).

    ``metrics`` are ``probe_metrics`` rows (top-to-bottom direction only). One-sided Wilcoxon signed-rank
    test of "ranking > random" over the datasets both have, BH over all rows.
    """
    data_key = ("model", "checkpoint", "layer", "language", "attribute", "classifier", "seed", "k")
    random_accuracy = {
        tuple(m[c] for c in data_key): m["accuracy"]
        for m in metrics
        if m["method"] == control and m["direction"] == "ttb"
    }
    paired: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for m in metrics:
        key = tuple(m[c] for c in data_key)
        if m["method"] == control or m["direction"] != "ttb" or m["k"] not in ks or key not in random_accuracy:
            continue
        paired[(m["attribute"], m["method"], m["k"])].append((m["accuracy"], random_accuracy[key]))
    rows = []
    for (attribute, method, k), values in sorted(paired.items()):
        diff = np.asarray([a - r for a, r in values])
        nonzero = diff[diff != 0]
        p = float(stats.wilcoxon(nonzero, alternative="greater").pvalue) if len(nonzero) >= 1 else 1.0
        rows.append(
            {
                "attribute": attribute,
                "method": method,
                "k": int(k),
                "n": len(diff),
                "accuracy": float(np.mean([a for a, _ in values])),
                "random_accuracy": float(np.mean([r for _, r in values])),
                "difference": float(diff.mean()),
                "wins": int(np.sum(diff > 0)),
                "pvalue": p,
            }
        )
    for row, adjusted in zip(rows, benjamini_hochberg([r["pvalue"] for r in rows]), strict=True):
        row["pvalue_bh"] = float(adjusted)
    return rows


def beats_random_findings(rows: Sequence[Mapping], k: int) -> list[Finding]:
    """One sentence per attribute: which rankings beat random at ``k`` (BH), by how much."""
    findings = []
    for attribute in sorted({r["attribute"] for r in rows}):
        at_k = [r for r in rows if r["attribute"] == attribute and r["k"] == k]
        if not at_k:
            continue
        parts = [
            f"{r['method']} {r['accuracy']:.3f} vs {r['random_accuracy']:.3f} "
            f"({'+' if r['difference'] >= 0 else ''}{r['difference']:.3f}, wins {r['wins']}/{r['n']}, "
            f"BH p = {r['pvalue_bh']:.2g})"
            for r in sorted(at_k, key=lambda r: -r["difference"])
        ]
        winners = [r["method"] for r in at_k if r["pvalue_bh"] <= ALPHA and r["difference"] > 0]
        verdict = (
            f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} random"
            if winners
            else "no ranking beats random significantly"
        )
        sentence = f"{attribute}, top {k} neurons: {verdict}. Test accuracy vs random: " + "; ".join(parts) + "."
        findings.append(Finding("rankings", sentence, {"attribute": attribute, "k": k, "winners": winners}))
    return findings


def pooled_trend_findings(pooled: Sequence[Mapping], control: str = "random") -> list[Finding]:
    """Per method: does overlap rise over checkpoints, pooled over layers and attributes (BH over methods)?
    The control's row is reported as what no trend looks like."""
    findings = []
    for row in sorted(pooled, key=lambda r: (r["method"] == control, r["method"])):
        if math.isnan(row["mean_rho"]):
            continue
        rises = row["pvalue_rises_bh"] <= ALPHA and row["mean_rho"] > 0
        verdict = "rises significantly" if rises else "does not rise significantly"
        role = " (the control: no trend expected)" if row["method"] == control else ""
        sentence = (
            f"{row['method']}{role}: over {row['n_checkpoints']} checkpoints, pooled over {row['n_series']} "
            f"(layer, attribute) series, overlap {verdict}: mean Spearman ρ = {row['mean_rho']:+.2f}, mean rate "
            f"{row['first_rate']:.3f} → {row['last_rate']:.3f}, one-sided joint permutation p = "
            f"{row['pvalue_rises']:.3g} (BH {row['pvalue_rises_bh']:.3g}; two-sided p = {row['pvalue']:.3g})."
        )
        findings.append(Finding("trend", sentence, dict(row) | {"rises": rises}))
    return findings


def overlap_findings(pairs: Sequence[Mapping], trends: Sequence[Mapping], control: str = "random") -> list[Finding]:
    """Per (attribute, method) but the control: overlap against chance (study-wide BH) and its trend."""
    findings = []
    by_group: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for p in pairs:
        if p["method"] != control:
            by_group[(p["attribute"], p["method"])].append(p)
    for (attribute, method), members in sorted(by_group.items()):
        rate = float(np.mean([p["rate"] for p in members]))
        chance = float(np.mean([p["expected"] / p["k"] for p in members]))
        significant = int(sum(p["pvalue_bh"] <= ALPHA for p in members))
        mine = [t for t in trends if t["attribute"] == attribute and t["method"] == method]
        rising = [t for t in mine if t["pvalue_bh"] <= ALPHA and t["spearman_rho"] > 0]
        falling = [t for t in mine if t["pvalue_bh"] <= ALPHA and t["spearman_rho"] < 0]
        rhos = [t["spearman_rho"] for t in mine if not math.isnan(t["spearman_rho"])]
        trend = (
            f"over checkpoints, mean Spearman ρ = {np.mean(rhos):+.2f} across {len(rhos)} layer(s); "
            f"{len(rising)} rise and {len(falling)} fall significantly (BH)"
            if rhos
            else "no trend tested (fewer than 3 checkpoints)"
        )
        sentence = (
            f"{attribute}, {method}: mean cross-lingual overlap rate {rate:.3f} = {rate / chance:.2f}× chance "
            f"({chance:.3f}); {significant} of {len(members)} language pairs above chance after study-wide BH; "
            f"{trend}."
        )
        numbers = {
            "attribute": attribute,
            "method": method,
            "rate": rate,
            "chance": chance,
            "significant": significant,
            "pairs": len(members),
            "rising": len(rising),
        }
        findings.append(Finding("overlap", sentence, numbers))
    return findings


def transfer_findings(correlations: Sequence[Mapping], control: str = "random") -> list[Finding]:
    """Overlap against zero-shot transfer: Pearson r and p per (task, method, kind), accuracy only."""
    findings = []
    for row in sorted(correlations, key=lambda r: (r["task"], r["kind"], r["method"])):
        if row["metric"] != "accuracy" or row["method"] == control or math.isnan(row["pearson_r"]):
            continue
        verdict = "significant" if row["pearson_p"] <= ALPHA else "not significant"
        sentence = (
            f"{row['task']} transfer vs {row['method']} overlap ({row['kind']}, n = {row['n']}): "
            f"Pearson r = {row['pearson_r']:+.2f}, p = {row['pearson_p']:.2g} ({verdict} at {ALPHA})."
        )
        findings.append(Finding("transfer", sentence, dict(row)))
    return findings
