"""The study report: key tables and every plot, read from the study's DuckDB views."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np

from analysis.findings import (
    beats_random_findings,
    beats_random_rows,
    control_findings,
    overlap_findings,
    transfer_findings,
)
from analysis.plots import plot_accuracy_vs_k, plot_loss_curve, plot_overlap_heatmap, plot_scatter, plot_series
from analysis.report import Section, Table, write_report
from probing.models import LAYER_CONVENTION

EXAMPLE_QUERIES = [
    "-- average cross-lingual overlap rate of Number neurons per checkpoint\n"
    "SELECT model, checkpoint, layer, method, round(avg(average_rate), 3) AS overlap_rate\n"
    "FROM overlap_summary WHERE attribute = 'Number' GROUP BY ALL ORDER BY model, checkpoint, layer, method;",
    "-- language pairs whose overlap is significant (Holm-corrected) at layer 2\n"
    "SELECT checkpoint, attribute, method, language_a, language_b, overlap, pvalue_holm\n"
    "FROM overlap_pairs WHERE layer = 2 AND significant ORDER BY pvalue_holm;",
    "-- probe accuracy at k = 50 per method and classifier (ranking quality apart from probe quality)\n"
    "SELECT method, direction, classifier, round(avg(accuracy), 3) AS accuracy, round(avg(selectivity), 3) AS sel\n"
    "FROM probe_metrics WHERE k = 50 GROUP BY ALL ORDER BY classifier, accuracy DESC;",
]


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


def _table(con: duckdb.DuckDBPyConnection, caption: str, sql: str) -> Table:
    result = con.execute(sql)
    return Table(caption, [c[0] for c in result.description], result.fetchall())


def build_report(con: duckdb.DuckDBPyConnection, out_dir: Path | str, study: dict) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir`` from the study's tables in ``con``.

    ``study`` holds plain facts: name, k, methods (config order), checkpoint order per model
    (``checkpoints``: {model: [revision, ...]}), and ``stages`` (rows of the pipeline summary).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    views = _views(con)
    sections = [_overview(study)]
    if "overlap_pairs" in views or "probe_metrics" in views:
        sections.append(_findings(con, study, views))
    if "pretrain_loss" in views:
        sections.append(_pretraining(con, out_dir))
    if "dataset_stats" in views:
        sections.append(
            Section(
                "Word datasets",
                tables=[
                    _table(
                        con,
                        "Examples per lemma-disjoint split, and the values kept (rarer values dropped)",
                        "SELECT language, attribute, n_train, n_dev, n_test, n_values, values, note "
                        "FROM dataset_stats ORDER BY language, attribute",
                    )
                ],
            )
        )
    if "overlap_summary" in views:
        sections += _overlap_sections(con, out_dir, study)
    if "probe_metrics" in views:
        sections.append(_probing_section(con, out_dir, study))
    if "transfer" in views:
        sections.append(_transfer_section(con, out_dir, study, views))
    if "method_overlaps" in views:
        sections.append(
            Section(
                "Agreement between methods",
                tables=[
                    _table(
                        con,
                        "Mean top-k overlap of two methods' rankings of one dataset (chance: k²/d)",
                        "SELECT method_a, method_b, count(*) AS configs, avg(overlap) AS mean_overlap, "
                        "avg(expected) AS expected, avg(CAST(pvalue < 0.05 AS INTEGER)) AS share_p_below_05 "
                        "FROM method_overlaps GROUP BY ALL ORDER BY mean_overlap DESC",
                    )
                ],
            )
        )
    for extra in study.get("extra_sections", []):
        sections.append(extra)
    if "failures" in views:
        sections.append(
            Section(
                "Failures",
                tables=[
                    _table(
                        con,
                        "Parts of the study that could not run, grouped by reason (the rest finished); "
                        "every part is a row of the failures table",
                        "SELECT stage, split_part(error, chr(10), 1) AS error, count(*) AS parts, "
                        "min(key) AS example FROM failures GROUP BY ALL ORDER BY stage, parts DESC",
                    )
                ],
            )
        )
    sections.append(
        Section(
            "Query the results",
            paragraphs=[
                "Every table is a view in results.duckdb (DuckDB), over the Parquet files in place. "
                'Open it with `duckdb results.duckdb` or `xling sql "..." --root <output root>`.'
            ],
            code=EXAMPLE_QUERIES,
        )
    )
    return write_report(out_dir / "index.html", f"Study report: {study['name']}", sections)


def _records(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    result = con.execute(sql)
    columns = [c[0] for c in result.description]
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def _findings(con: duckdb.DuckDBPyConnection, study: dict, views: set[str]) -> Section:
    """What the study found, first: controls, rankings against random, overlap against chance, transfer."""
    section = Section(
        "Findings",
        paragraphs=[
            "Each sentence is computed from the tables below it in this report (analysis/findings.py states the "
            "tests): the random control must sit at chance; rankings are compared with the random control on the "
            "same datasets (one-sided Wilcoxon signed-rank, Benjamini–Hochberg over all comparisons); overlap "
            "p-values are exact hypergeometric tails, BH-corrected over every overlap test of the study; trends are "
            "Spearman's ρ of the overlap rate against checkpoint order, exact p, BH over all trends."
        ],
    )
    findings = []
    if "overlap_pairs" in views:
        pairs = _records(
            con,
            "SELECT model, attribute, method, rate, expected, k, d, pvalue, significant, pvalue_bh FROM overlap_pairs",
        )
        trends = _records(con, "SELECT * FROM overlap_trends") if "overlap_trends" in views else []
        findings += control_findings(pairs) + overlap_findings(pairs, trends)
        if trends:
            section.tables.append(
                _table(
                    con,
                    "Trend of the average overlap rate over checkpoints per layer (Spearman ρ, exact p, BH)",
                    "SELECT model, layer, attribute, method, n_checkpoints, first_rate, last_rate, expected_rate, "
                    "spearman_rho, pvalue, pvalue_bh FROM overlap_trends ORDER BY attribute, method, layer",
                )
            )
    if "probe_metrics" in views:
        at = _evaluated_k(con, study["k"])
        small = sorted(r[0] for r in con.execute(f"SELECT DISTINCT k FROM probe_metrics WHERE k <= {at}").fetchall())
        metrics = _records(
            con,
            "SELECT model, checkpoint, layer, language, attribute, classifier, seed, k, method, direction, accuracy "
            "FROM probe_metrics WHERE direction = 'ttb'",
        )
        rows = beats_random_rows(metrics, small)
        findings += beats_random_findings(rows, small[-1])
        columns = ["attribute", "method", "k", "n", "accuracy", "random_accuracy", "difference", "wins", "pvalue_bh"]
        section.tables.append(
            Table(
                "Test accuracy of each ranking's top k against the random control's on the same datasets",
                columns,
                [tuple(r[c] for c in columns) for r in rows],
            )
        )
    if "correlations" in views:
        findings += transfer_findings(_records(con, "SELECT * FROM correlations"))
    order = {"controls": 0, "rankings": 1, "overlap": 2, "transfer": 3}
    section.paragraphs += [f.sentence for f in sorted(findings, key=lambda f: order[f.topic])]
    return section


def _overview(study: dict) -> Section:
    section = Section(
        "Study",
        paragraphs=[
            f"Models and checkpoints: {', '.join(f'{m} ({len(c)})' for m, c in study['checkpoints'].items())}. "
            f"Languages: {', '.join(study['languages'])}. Attributes: {', '.join(study['attributes'])}. "
            f"Layers: {', '.join(map(str, study['layers']))}. Methods: {', '.join(study['methods'])}; "
            f"k = {study['k']}.",
            f"Layer numbers: {LAYER_CONVENTION}.",
        ],
    )
    if study.get("stages"):
        columns = list(study["stages"][0])
        section.tables.append(
            Table(
                "What each stage did in the last run", columns, [tuple(r[c] for c in columns) for r in study["stages"]]
            )
        )
    return section


def _pretraining(con: duckdb.DuckDBPyConnection, out_dir: Path) -> Section:
    section = Section("Pre-training of the study's own model")
    for (model,) in con.execute("SELECT DISTINCT model FROM pretrain_loss ORDER BY 1").fetchall():
        rows = con.execute(
            "SELECT step, loss, heldout_loss FROM pretrain_loss WHERE model = ? ORDER BY step", [model]
        ).fetchall()
        steps, loss, heldout = (np.asarray(c, dtype=float) for c in zip(*rows, strict=True))
        at = ~np.isnan(heldout)
        name = f"loss-{model}.png"
        plot_loss_curve(steps[1:], loss[1:], steps[at], heldout[at], out_dir / name, f"pre-training of {model}")
        section.images.append((f"{model}: training and held-out loss; checkpoints at the dots", name))
        section.tables.append(
            Table(
                f"{model}: held-out loss at the checkpoints",
                ["step", "held-out loss"],
                [(int(s), float(h)) for s, h in zip(steps[at], heldout[at], strict=True)],
            )
        )
    return section


def _overlap_sections(con: duckdb.DuckDBPyConnection, out_dir: Path, study: dict) -> list[Section]:
    rows = con.execute(
        "SELECT model, checkpoint, checkpoint_index, layer, attribute, method, avg(average_rate), "
        "avg(expected_rate), sum(n_significant), sum(n_pairs) FROM overlap_summary WHERE n_languages > 1 "
        "GROUP BY ALL ORDER BY model, method, attribute, checkpoint_index, layer"
    ).fetchall()
    trajectory = Section(
        "Cross-lingual overlap across checkpoints and layers",
        paragraphs=[
            "Average pairwise overlap rate of the top-k neurons between languages (the alignment metric of Wang et al. "
            "2024); the dashed line is the rate expected between random rankings (k/d)."
        ],
    )
    by_method: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        by_method[(row[0], row[5])].append(row)
    for (model, method), group in by_method.items():
        order = study["checkpoints"].get(model, [])
        checkpoints = [c for c in order if any(r[1] == c for r in group)]
        layers = sorted({r[3] for r in group})
        attributes = sorted({r[4] for r in group})
        expected = float(np.mean([r[7] for r in group]))
        per_ckpt = {
            a: [np.mean([r[6] for r in group if r[4] == a and r[1] == c] or [np.nan]) for c in checkpoints]
            for a in attributes
        }
        name = f"overlap-by-checkpoint-{model}-{method}.png"
        plot_series(
            checkpoints,
            per_ckpt,
            out_dir / name,
            f"{model}, {method}: overlap across checkpoints (mean of layers {', '.join(map(str, layers))})",
            "checkpoint",
            "average overlap rate",
            expected,
            "random",
        )
        trajectory.images.append((f"{model}, {method}: overlap rate against checkpoint (cf. Wang et al. Fig. 1)", name))
        last = checkpoints[-1] if checkpoints else None
        per_layer = {
            a: [
                np.mean([r[6] for r in group if r[4] == a and r[3] == layer and r[1] == last] or [np.nan])
                for layer in layers
            ]
            for a in attributes
        }
        name = f"overlap-by-layer-{model}-{method}.png"
        plot_series(
            layers,
            per_layer,
            out_dir / name,
            f"{model}, {method}: overlap across layers at {last}",
            "layer",
            "average overlap rate",
            expected,
            "random",
        )
        trajectory.images.append((f"{model}, {method}: overlap rate against layer at {last} (cf. Fig. 2)", name))
    trajectory.tables.append(
        Table(
            "Average overlap rate and significant pairs (Holm, α = 0.05) per matrix",
            ["model", "checkpoint", "layer", "attribute", "method", "overlap rate", "random", "significant", "pairs"],
            [(r[0], r[1], r[3], r[4], r[5], r[6], r[7], int(r[8]), int(r[9])) for r in rows],
        )
    )
    return [trajectory, _heatmaps(con, out_dir, study)]


def _heatmaps(con: duckdb.DuckDBPyConnection, out_dir: Path, study: dict) -> Section:
    section = Section(
        "Pairwise overlap between languages",
        paragraphs=[
            "Overlap rate of the top-k neurons for each pair of languages at the last checkpoint and deepest layer; "
            "an orange dot marks pairs whose overlap is significant after Holm correction (exact hypergeometric test)."
        ],
    )
    stored = {row[0] for row in con.execute("SELECT DISTINCT method FROM overlap_pairs").fetchall()}
    present = [m for m in study["methods"] if m in stored]
    for model, checkpoints in study["checkpoints"].items():
        if not present:
            break
        method = present[0]
        found = con.execute(
            "SELECT DISTINCT checkpoint, layer FROM overlap_pairs WHERE model = ? AND method = ?", [model, method]
        ).fetchall()
        if not found:
            continue
        last = max(found, key=lambda r: (checkpoints.index(r[0]) if r[0] in checkpoints else -1, r[1]))
        for (attribute,) in con.execute(
            "SELECT DISTINCT attribute FROM overlap_pairs WHERE model = ? ORDER BY 1", [model]
        ).fetchall():
            pairs = con.execute(
                "SELECT language_a, language_b, rate, significant FROM overlap_pairs WHERE model = ? "
                "AND checkpoint = ? AND layer = ? AND method = ? AND attribute = ? "
                "AND seed = (SELECT min(seed) FROM overlap_pairs)",
                [model, last[0], last[1], method, attribute],
            ).fetchall()
            if not pairs:
                continue
            languages = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
            index = {lang: i for i, lang in enumerate(languages)}
            rates = np.eye(len(languages))
            significant = np.zeros_like(rates, dtype=bool)
            for a, b, rate, sig in pairs:
                rates[index[a], index[b]] = rates[index[b], index[a]] = rate
                significant[index[a], index[b]] = significant[index[b], index[a]] = sig
            name = f"heatmap-{model}-{attribute}.png"
            plot_overlap_heatmap(
                languages,
                rates,
                significant,
                out_dir / name,
                f"{attribute}: {model} {last[0]}, layer {last[1]}, {method}",
            )
            section.images.append((f"{attribute} ({method}, {last[0]}, layer {last[1]})", name))
    return section


def _evaluated_k(con: duckdb.DuckDBPyConnection, k: int) -> int:
    """The largest k of the evaluation grid that is at most the study's k (the smallest grid k if none is)."""
    grid = sorted(r[0] for r in con.execute("SELECT DISTINCT k FROM probe_metrics").fetchall())
    return max((g for g in grid if g <= k), default=grid[0])


def _probing_section(con: duckdb.DuckDBPyConnection, out_dir: Path, study: dict) -> Section:
    k = _evaluated_k(con, study["k"])
    section = Section(
        "Probing: ranking quality apart from probe quality",
        paragraphs=[
            "Each ranking (top-to-bottom, its bottom-to-top reverse, and random) is evaluated by two classifiers "
            "trained on its top-k neurons only (Antverg & Belinkov, Pitfall I); selectivity = accuracy − accuracy "
            "on a control task with random labels per word type (Hewitt & Liang)."
        ],
    )
    section.tables.append(
        _table(
            con,
            f"Mean test accuracy, NMI and selectivity at k = {k} over all datasets",
            f"SELECT method, direction, classifier, count(*) AS datasets, avg(accuracy) AS accuracy, avg(nmi) AS nmi, "
            f"avg(selectivity) AS selectivity, avg(majority) AS majority FROM probe_metrics WHERE k = {int(k)} "
            f"GROUP BY ALL ORDER BY classifier, accuracy DESC",
        )
    )
    configs = con.execute(
        "SELECT model, checkpoint, layer, attribute, min(language) FROM probe_metrics GROUP BY ALL"
    ).fetchall()
    chosen: dict[tuple[str, str], tuple] = {}
    for model, checkpoint, layer, attribute, language in configs:
        order = study["checkpoints"].get(model, [])
        rank = (order.index(checkpoint) if checkpoint in order else -1, layer)
        current = chosen.get((model, attribute))
        if current is None or rank > current[0]:
            chosen[(model, attribute)] = (rank, checkpoint, layer, language)
    for (model, attribute), (_, checkpoint, layer, language) in sorted(chosen.items()):
        rows = con.execute(
            "SELECT method, direction, classifier, k, avg(accuracy), avg(majority) FROM probe_metrics WHERE model = ? "
            "AND checkpoint = ? AND layer = ? AND attribute = ? AND language = ? GROUP BY ALL ORDER BY k",
            [model, checkpoint, layer, attribute, language],
        ).fetchall()
        curves = defaultdict(lambda: ([], []))
        for method, direction, classifier, kk, accuracy, _ in rows:
            ks, accs = curves[(classifier, method, direction)]
            ks.append(kk)
            accs.append(accuracy)
        styled = [
            (
                f"{c} by {m} ({'random' if m == 'random' else d})",
                ks,
                accs,
                "--" if m == "random" else (":" if d == "btt" else "-"),
            )
            for (c, m, d), (ks, accs) in sorted(curves.items())
        ]
        name = f"accuracy-vs-k-{model}-{attribute}-{language}.png"
        plot_accuracy_vs_k(
            styled, float(rows[0][5]), out_dir / name, f"{language} {attribute}, {model} {checkpoint}, layer {layer}"
        )
        section.images.append(
            (
                f"{language} {attribute}: classifier × ranking accuracy against k "
                "(solid: top-to-bottom, dotted: bottom-to-top, dashed: random; cf. Antverg & Belinkov "
                "Fig. 3)",
                name,
            )
        )
    return section


def _transfer_section(con: duckdb.DuckDBPyConnection, out_dir: Path, study: dict, views: set[str]) -> Section:
    section = Section(
        "Zero-shot cross-lingual transfer and its correlation with overlap",
        paragraphs=[
            "Each checkpoint is fine-tuned on English only and evaluated on every target language. Pearson and "
            "Spearman correlations across checkpoints relate the neuron overlap to transfer (Wang et al. 2024, "
            "Table 1): Average = overlap averaged over language pairs vs score averaged over targets, one point per "
            "checkpoint; Pairwise = overlap of each target with English vs the score on that target."
        ],
    )
    languages = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT target_language FROM transfer ORDER BY target_language = 'en' DESC, 1"
        ).fetchall()
    ]
    rows = con.execute("SELECT model, task, metric, checkpoint, target_language, value FROM transfer").fetchall()
    pivot: dict[tuple, dict[str, float]] = defaultdict(dict)
    for model, task, metric, checkpoint, language, value in rows:
        pivot[(model, task, metric, checkpoint)][language] = value
    order = {m: {c: i for i, c in enumerate(cs)} for m, cs in study["checkpoints"].items()}
    keys = sorted(pivot, key=lambda k: (k[0], k[1], k[2], order.get(k[0], {}).get(k[3], -1)))
    section.tables.append(
        Table(
            "Scores per checkpoint and target language (en = in-language reference)",
            ["model", "task", "metric", "checkpoint", *languages],
            [(*k, *(pivot[k].get(lang, float("nan")) for lang in languages)) for k in keys],
        )
    )
    if "correlations" in views:
        section.tables.append(
            _table(
                con,
                "Correlation of overlap with transfer across checkpoints",
                "SELECT model, task, metric, method, kind, n, pearson_r, pearson_p, spearman_rho, spearman_p "
                "FROM correlations ORDER BY model, task, metric, method, kind",
            )
        )
    for kind, view in (("average", "overlap_transfer_average"), ("pairwise", "overlap_transfer_pairwise")):
        if view not in views:
            continue
        colour = "checkpoint" if kind == "average" else "target_language"
        extra = "" if kind == "average" else "AND target_language <> source_language"
        groups = con.execute(
            f"SELECT DISTINCT model, task, metric, method FROM {view} WHERE metric = 'accuracy'"
        ).fetchall()
        for model, task, metric, method in groups:
            if method != next((m for m in study["methods"] if m != "random"), method):
                continue
            points: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
            for label, x, y in con.execute(
                f"SELECT {colour}, overlap_rate, value FROM {view} WHERE model = ? AND task = ? AND metric = ? "
                f"AND method = ? {extra} ORDER BY 1",
                [model, task, metric, method],
            ).fetchall():
                points[label][0].append(x)
                points[label][1].append(y)
            name = f"transfer-{kind}-{model}-{task}.png"
            plot_scatter(
                dict(points),
                out_dir / name,
                f"{model} {task}: overlap ({method}) vs transfer ({kind})",
                "neuron overlap rate",
                f"{task} {metric}",
            )
            section.images.append(
                (
                    f"{model} {task}, {kind}: overlap against zero-shot {metric}, coloured by "
                    f"{colour.replace('_', ' ')} (cf. Wang et al. Fig. {3 if kind == 'average' else 4})",
                    name,
                )
            )
    return section
