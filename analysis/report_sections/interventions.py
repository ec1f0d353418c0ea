"""Interventions (paper 003 §4): do the neurons a ranking puts first change what the model predicts, and into
the same word with another value? Error rate and CLWV against k per ranking and direction (003 Figs. 4–5,
as small multiples: ablation and translation in rows, rankings in columns), the saturation points, and the
cross-lingual causal matrix beside the overlap matrix, with their correlation."""

from __future__ import annotations

import numpy as np

from analysis.correlation import correlate
from analysis.plots import Curve, plot_curve_grid, plot_heatmap_pair
from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection

#: Line colour per direction of a ranking; the random control is grey in every panel.
COLOURS = {"ttb": "tab:blue", "btt": "tab:orange", "random": "grey"}


def _panel_curves(rows: list[dict], method: str) -> list[Curve]:
    """Per direction of a method and the random control, against k: for a masked LM the error rate (solid) and
    CLWV (dashed), as 003 Figs. 4–5; for a causal LM, read at the next word, whose error rate is high before
    any edit, the flip rate against the unedited model (solid)."""
    curves: list[Curve] = []
    for name in ("ttb", "btt", "random"):
        mine = [
            r
            for r in rows
            if (r["method"] == "random" if name == "random" else (r["method"], r["direction"]) == (method, name))
        ]
        if not mine or (name == "random" and method == "random"):
            continue
        ks = [r["k"] for r in mine]
        if mine[0]["readout"] == "masked":
            curves.append((f"{name} error", ks, [r["error_rate"] for r in mine], COLOURS[name], "-"))
            curves.append((f"{name} CLWV", ks, [r["clwv_rate"] for r in mine], COLOURS[name], "--"))
        else:
            curves.append((f"{name} flips", ks, [r["flip_rate"] for r in mine], COLOURS[name], "-"))
    return curves


def _finite_mean(values: list) -> float:
    """The mean of the values that are numbers (a ratio is null where B's own top-k flips nothing); NaN if none."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _curve_plots(context: ReportContext, section: Section) -> None:
    """One figure of small multiples per (model, checkpoint, layer, attribute), means over languages."""
    groups = context.grouped(
        "SELECT model, checkpoint, layer, attribute, intervention, readout, method, direction, k, avg(error_rate) "
        "AS error_rate, avg(clwv_rate) AS clwv_rate, avg(flip_rate) AS flip_rate FROM intervention_rates "
        "WHERE split = 'test' "
        "AND source_language = language GROUP BY ALL ORDER BY ALL",
        ("model", "checkpoint", "layer", "attribute"),
    )
    for (model, checkpoint, layer, attribute), members in groups.items():
        stored = {r["method"] for r in members}
        methods = [m for m in context.study["methods"] if m in stored and m != "random"] or ["random"]
        panels = {
            (intervention, method): _panel_curves([r for r in members if r["intervention"] == intervention], method)
            for intervention in sorted({r["intervention"] for r in members})
            for method in methods
        }
        name = f"interventions-{model}-{checkpoint}-{layer}-{attribute}.png"
        masked = members[0]["readout"] == "masked"
        measure = "error rate (solid) and CLWV (dashed)" if masked else "next-word flip rate"
        plot_curve_grid(
            panels,
            context.out_dir / name,
            f"{attribute}, layer {layer} ({model} {checkpoint}): {measure}, mean over languages",
            "k (top-ranked neurons edited)",
            "share of predictions",
        )
        section.images.append((f"{attribute}, layer {layer}: {measure} against k ({checkpoint})", name))


def _cross_lingual(context: ReportContext, section: Section) -> None:
    """Heatmaps of A's neurons edited on B's words (relative to B's own) beside the overlap, and the correlation."""
    sql = (
        "SELECT model, checkpoint, layer, attribute, method, intervention, k, source_language, target_language, "
        "relative_flip_rate, relative_clwv_rate, random_flip_rate / nullif(own_flip_rate, 0) AS random_relative, "
        "overlap_rate FROM causal_overlap WHERE overlap_rate IS NOT NULL ORDER BY ALL"
    )
    groups = context.grouped(sql, ("model", "checkpoint", "layer", "attribute", "method", "intervention"))
    first = next((m for m in context.study["methods"] if any(key[4] == m for key in groups)), None)
    for (model, checkpoint, layer, attribute, method, intervention), pairs in groups.items():
        if method != first or intervention != "translation":
            continue
        languages = sorted({p["source_language"] for p in pairs} | {p["target_language"] for p in pairs})
        index = {lang: i for i, lang in enumerate(languages)}
        causal, overlap = (np.full((len(languages), len(languages)), np.nan) for _ in range(2))
        for p in pairs:
            i, j = index[p["source_language"]], index[p["target_language"]]
            causal[i, j], overlap[i, j] = p["relative_flip_rate"], p["overlap_rate"]
        name = f"causal-overlap-{model}-{checkpoint}-{layer}-{attribute}.png"
        plot_heatmap_pair(
            languages,
            causal,
            overlap,
            (
                "flip rate of A's top-k on B's words / B's own (blank: B's own flips nothing)",
                "overlap rate of A's and B's top-k",
            ),
            context.out_dir / name,
            f"{attribute}, layer {layer}, {method}, k = {pairs[0]['k']} ({model} {checkpoint})",
        )
        section.images.append((f"{attribute}, layer {layer}: causal matrix (left) and overlap (right)", name))
    table = []
    for key, members in context.grouped(sql, ("model", "layer", "attribute", "method", "intervention")).items():
        overlap = [m["overlap_rate"] for m in members]
        flips = correlate(np.asarray(overlap), np.asarray([m["relative_flip_rate"] for m in members], dtype=float))
        clwv = correlate(np.asarray(overlap), np.asarray([m["relative_clwv_rate"] for m in members], dtype=float))
        relative, random = (_finite_mean([m[c] for m in members]) for c in ("relative_flip_rate", "random_relative"))
        table.append(
            (*key, flips["n"], relative, random, flips["spearman_rho"], flips["spearman_p"], clwv["spearman_rho"])
        )
    section.tables.append(
        Table(
            "Cross-lingual causal effect against overlap, over language pairs and checkpoints: A's top-k edited on "
            "B's words, flip rate relative to B's own top-k (random: B's random ranking relative to B's own), and "
            "Spearman's ρ of overlap with the relative flip rate and the relative CLWV",
            [
                "model",
                "layer",
                "attribute",
                "method",
                "intervention",
                "pairs",
                "relative flips",
                "random",
                "ρ (flips)",
                "p",
                "ρ (CLWV)",
            ],
            table,
        )
    )


def build(context: ReportContext) -> Section:
    section = Section(
        "Interventions: are the top neurons used?",
        paragraphs=[
            "Paper 003 §4: at the layer probed, on every sub-word of the words that carry the attribute, the top-k "
            "neurons of a ranking are set to 0 (ablation) or moved toward another value (translation: h += α ⊙ "
            "(q(z′) − q(z)) on those neurons, α log-spaced by rank from β to 10⁻³), and only the blocks above run "
            "again. Masked LMs are read at the word itself, causal LMs at the next word. A prediction is correct, "
            "CLWV (correct lemma, wrong value: the edit changed only the attribute), another form of the lemma, or "
            "a wrong lemma, by a lexicon of the language's UD files; forms in no treebank are counted apart. Error "
            "rate and CLWV are shares of the predictions with a known form. Saturation (003 footnote 5): the first "
            "k from which CLWV rises by less than 5% at the next two k."
        ],
    )
    _curve_plots(context, section)
    section.tables.append(
        context.table(
            "Ablation against translation per ranking and direction (test split, means over languages): CLWV and "
            "error rate at the saturation point, the k where CLWV saturates, and the highest CLWV",
            "SELECT layer, attribute, method, direction, intervention, beta, count(*) AS languages, "
            "count(saturation_k) AS saturated, round(avg(saturation_k), 1) AS saturation_k, "
            "round(avg(clwv_at_saturation), 3) AS clwv_at_saturation, round(avg(error_at_saturation), 3) AS "
            "error_at_saturation, round(avg(max_clwv), 3) AS max_clwv FROM intervention_saturation "
            "WHERE split = 'test' GROUP BY ALL ORDER BY ALL",
        )
    )
    if "causal_overlap" in context.views:
        _cross_lingual(context, section)
    return section


INTERVENTIONS = ReportSection("interventions", ("intervention_rates", "intervention_saturation"), build)
