"""Zero-shot cross-lingual transfer: scores per target language, their correlation with overlap, and the
overlap-against-transfer scatter plots (cf. Wang et al. 2024, Table 1 and Figs. 3–4)."""

from __future__ import annotations

from collections import defaultdict

from analysis.plots import plot_scatter
from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection

#: The scatter plots: kind → the derived view that pairs overlap with transfer that way.
SCATTER_VIEWS = (("average", "overlap_transfer_average"), ("pairwise", "overlap_transfer_pairwise"))


def build(context: ReportContext) -> Section:
    con, study, views = context.con, context.study, context.views
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
            context.table(
                "Correlation of overlap with transfer across checkpoints",
                "SELECT model, task, metric, method, kind, n, pearson_r, pearson_p, spearman_rho, spearman_p "
                "FROM correlations ORDER BY model, task, metric, method, kind",
            )
        )
    for kind, view in SCATTER_VIEWS:
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
                context.out_dir / name,
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


TRANSFER = ReportSection("transfer", ("transfer",), build)
