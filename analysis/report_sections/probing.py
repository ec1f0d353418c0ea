"""Probing: each ranking's quality apart from probe quality, as tables and accuracy-against-k curves."""

from __future__ import annotations

from collections import defaultdict

import duckdb

from analysis.plots import plot_accuracy_vs_k
from analysis.report import Section
from analysis.report_sections.section import ReportContext, ReportSection


def evaluated_k(con: duckdb.DuckDBPyConnection, k: int) -> int:
    """The largest k of the evaluation grid that is at most the study's k (the smallest grid k if none is)."""
    grid = sorted(r[0] for r in con.execute("SELECT DISTINCT k FROM probe_metrics").fetchall())
    return max((g for g in grid if g <= k), default=grid[0])


def build(context: ReportContext) -> Section:
    con, study = context.con, context.study
    k = evaluated_k(con, study["k"])
    section = Section(
        "Probing: ranking quality apart from probe quality",
        paragraphs=[
            "Each ranking (top-to-bottom, its bottom-to-top reverse, and random) is evaluated by two classifiers "
            "trained on its top-k neurons only (Antverg & Belinkov, Pitfall I); selectivity = accuracy − accuracy "
            "on a control task with random labels per word type (Hewitt & Liang)."
        ],
    )
    section.tables.append(
        context.table(
            f"Mean test accuracy, NMI and selectivity at k = {k} over all datasets",
            f"SELECT method, direction, classifier, count(*) AS datasets, avg(accuracy) AS accuracy, avg(nmi) AS nmi, "
            f"avg(selectivity) AS selectivity, avg(majority) AS majority FROM probe_metrics WHERE k = {int(k)} "
            f"GROUP BY ALL ORDER BY classifier, accuracy DESC, method, direction",
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
                c,
                f"{m} ({'random' if m == 'random' else d})",
                ks,
                accs,
                "--" if m == "random" else (":" if d == "btt" else "-"),
            )
            for (c, m, d), (ks, accs) in sorted(curves.items())
        ]
        name = f"accuracy-vs-k-{model}-{attribute}-{language}.png"
        plot_accuracy_vs_k(
            styled,
            float(rows[0][5]),
            context.out_dir / name,
            f"{language} {attribute}, {model} {checkpoint}, layer {layer}",
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


PROBING = ReportSection("probing", ("probe_metrics",), build)
