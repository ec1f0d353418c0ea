"""Lottery-ticket sub-networks (Foroutan et al. 2022, poster 004): dev score against sparsity, how much the
languages' sub-networks overlap (with the noise ceiling of a second seed and the one-shot and random
controls), the relative drop of sub-network transfer, how sub-network overlap relates to neuron overlap,
and whether the probing rankings' top neurons keep their weights."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from analysis.plots import plot_overlap_heatmap, plot_scatter, plot_series
from analysis.report import Section
from analysis.report_sections.section import ReportContext, ReportSection

ALPHA = 0.05


def _score_plots(context: ReportContext, section: Section) -> None:
    """Dev score against the sparsity of each round, one line per language, per (model, checkpoint, task)."""
    rows = context.records(
        "SELECT model, checkpoint, task, language, sparsity, avg(dev_metric) AS score FROM lottery_rounds "
        "GROUP BY ALL ORDER BY ALL"
    )
    groups: dict[tuple, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        groups[(r["model"], r["checkpoint"], r["task"])][r["language"]][r["sparsity"]] = r["score"]
    for (model, checkpoint, task), languages in sorted(groups.items()):
        sparsities = sorted({s for scores in languages.values() for s in scores})
        series = {lang: [scores.get(s, np.nan) for s in sparsities] for lang, scores in sorted(languages.items())}
        name = f"lottery-score-{model}-{checkpoint}-{task}.png"
        plot_series(
            [f"{s:.0%}" for s in sparsities],
            series,
            context.out_dir / name,
            f"{task}: dev score of the sub-network per sparsity ({model} {checkpoint}; mean over seeds)",
            "sparsity (share of prunable weights removed)",
            "dev score (accuracy)",
        )
        section.images.append((f"{task}: sub-network dev score against sparsity ({model} {checkpoint})", name))


def _heatmaps(context: ReportContext, section: Section) -> None:
    """Jaccard of the kept weights of every two languages' IMP masks (first seed), per task and sparsity."""
    rows = context.records(
        "SELECT model, checkpoint, task, sparsity, language_a, language_b, jaccard, pvalue FROM mask_overlap_summary "
        "WHERE kind_a = 'imp' AND kind_b = 'imp' AND seed_a = seed_b "
        "AND seed_a = (SELECT min(seed_a) FROM mask_overlap_summary) AND language_a <> language_b"
    )
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["checkpoint"], r["task"], r["sparsity"])].append(r)
    for (model, checkpoint, task, sparsity), pairs in sorted(groups.items()):
        languages = sorted({p["language_a"] for p in pairs} | {p["language_b"] for p in pairs})
        index = {lang: i for i, lang in enumerate(languages)}
        rates = np.full((len(languages), len(languages)), np.nan)
        significant = np.zeros_like(rates, dtype=bool)
        for p in pairs:
            i, j = index[p["language_a"]], index[p["language_b"]]
            rates[i, j] = rates[j, i] = p["jaccard"]
            significant[i, j] = significant[j, i] = p["pvalue"] * len(pairs) <= ALPHA  # Bonferroni in the matrix
        name = f"lottery-overlap-{model}-{checkpoint}-{task}-{sparsity:.2f}.png"
        title = f"{task}, {sparsity:.0%} sparsity: Jaccard of kept weights (dot: Bonferroni p ≤ {ALPHA})"
        plot_overlap_heatmap(languages, rates, significant, context.out_dir / name, title)
        section.images.append((f"{task}, {sparsity:.0%}: cross-lingual overlap of the sub-networks", name))


def _layer_plot(context: ReportContext, section: Section) -> None:
    """Mean Jaccard across language pairs per layer, against the random null, per (task, sparsity)."""
    rows = context.records(
        "SELECT task, sparsity, layer, avg(n_both / (n_a + n_b - n_both)) AS jaccard, "
        "avg((n_a * n_b / n_total) / (n_a + n_b - n_a * n_b / n_total)) AS chance FROM ("
        "  SELECT task, sparsity, layer, language_a, language_b, seed_a, sum(n_total) AS n_total, sum(n_a) AS n_a,"
        "         sum(n_b) AS n_b, sum(n_both) AS n_both FROM mask_overlaps"
        "  WHERE kind_a = 'imp' AND kind_b = 'imp' AND language_a <> language_b AND seed_a = seed_b AND layer >= 1"
        "  GROUP BY ALL) GROUP BY ALL ORDER BY ALL"
    )
    if not rows:
        return
    layers = sorted({r["layer"] for r in rows})
    series: dict[str, list[float]] = defaultdict(lambda: [np.nan] * len(layers))
    for r in rows:
        series[f"{r['task']} {r['sparsity']:.0%}"][layers.index(r["layer"])] = r["jaccard"]
        series[f"{r['task']} {r['sparsity']:.0%} (random null)"][layers.index(r["layer"])] = r["chance"]
    name = "lottery-overlap-per-layer.png"
    plot_series(
        layers,
        dict(series),
        context.out_dir / name,
        "Cross-lingual mask overlap per layer",
        "layer",
        "mean Jaccard of kept weights",
    )
    section.images.append(("Mask overlap across languages per layer, against its random null", name))


def _combined_scatter(context: ReportContext, section: Section) -> None:
    """Sub-network overlap against neuron overlap per language pair, one colour per ranking method."""
    if "lottery_overlap_transfer" not in context.views:
        return
    rows = context.records(
        "SELECT task, sparsity, method, neuron_overlap, mask_jaccard FROM lottery_overlap_transfer "
        "WHERE checkpoint IN (SELECT checkpoint FROM lottery_rounds)"
    )
    points: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in rows:
        label = f"{r['method']} / {r['task']} {r['sparsity']:.0%}"
        points[label][0].append(r["neuron_overlap"])
        points[label][1].append(r["mask_jaccard"])
    if points:
        name = "lottery-vs-neuron-overlap.png"
        plot_scatter(
            dict(points),
            context.out_dir / name,
            "Sub-network overlap against neuron overlap, per language pair",
            "neuron overlap rate (probing rankings)",
            "mask Jaccard (sub-networks)",
        )
        section.images.append(("Sub-network overlap against neuron overlap (one point per language pair)", name))


def build(context: ReportContext) -> Section:
    section = Section(
        "Lottery-ticket sub-networks",
        paragraphs=[
            "Iterative magnitude pruning per (checkpoint, task, language, seed): each round trains θ₀ ⊙ m for a "
            "fixed number of steps (full fine-tuning, pruned weights held at 0), prunes the smallest kept weights "
            "globally and rewinds to θ₀. Overlap is the Jaccard of two masks' kept weights; its random null keeps "
            "the same counts (expected_jaccard), a second seed of the same language is the noise ceiling, and the "
            "one-shot magnitude mask of θ₀ shows how much of a sub-network θ₀ alone decides. Relative drop "
            "(poster 004): mean over targets t ≠ s of (acc(s→t) − acc(t→t)) / acc(t→t)."
        ],
    )
    _score_plots(context, section)
    _heatmaps(context, section)
    _layer_plot(context, section)
    section.tables.append(
        context.table(
            "Mask overlap by comparison: across languages (same seed), within a language across seeds (noise "
            "ceiling), and against each control; Jaccard against its random null",
            "SELECT task, sparsity, CASE WHEN kind_b <> 'imp' THEN 'imp vs ' || kind_b "
            "WHEN language_a = language_b THEN 'same language, other seed' ELSE 'other language, same seed' END "
            "AS comparison, count(*) AS pairs, round(avg(jaccard), 4) AS jaccard, "
            "round(avg(expected_jaccard), 4) AS random_null, sum(CASE WHEN pvalue <= 0.05 THEN 1 ELSE 0 END) AS "
            "p_le_05 FROM mask_overlap_summary WHERE kind_a = 'imp' AND (kind_b <> 'imp' OR language_a <> "
            "language_b OR seed_a <> seed_b) AND (kind_b <> 'imp' OR language_a = language_b OR seed_a = seed_b) "
            "GROUP BY ALL ORDER BY ALL",
        )
    )
    if "relative_drop" in context.views:
        section.tables.append(
            context.table(
                "Relative drop of sub-network transfer per source language (negative: the source's sub-network "
                "serves the targets worse than their own)",
                "SELECT task, sparsity, source_language, round(relative_drop, 4) AS relative_drop, n_targets "
                "FROM relative_drop ORDER BY ALL",
            )
        )
        section.tables.append(
            context.table(
                "Target scores per kind of mask: each target's own sub-network, the other languages', a random "
                "mask of the same density, and the dense model",
                "SELECT task, sparsity, kind, CASE WHEN kind = 'subnetwork' AND source_language = target_language "
                "THEN 'own' WHEN kind = 'subnetwork' THEN 'other language' ELSE kind END AS mask, "
                "round(avg(score), 4) AS score, count(*) AS n FROM subnetwork_transfer GROUP BY ALL ORDER BY ALL",
            )
        )
    _combined_scatter(context, section)
    if "neuron_survival" in context.views:
        section.tables.append(
            context.table(
                "Do a ranking's top-k neurons keep their weights? Mean share of their writing weights kept by the "
                "language's sub-network, against all neurons of the layer",
                "SELECT task, sparsity, method, round(avg(top_k_survival), 4) AS top_k, "
                "round(avg(mean_survival), 4) AS all_neurons, round(avg(top_k_survival - mean_survival), 4) AS "
                "difference, count(*) AS rankings FROM neuron_survival GROUP BY ALL ORDER BY ALL",
            )
        )
    return section


LOTTERY = ReportSection("lottery", ("lottery_rounds", "mask_overlaps", "mask_overlap_summary"), build)
