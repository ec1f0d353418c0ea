"""Cross-lingual overlap: its trajectory over checkpoints and layers, the pairwise heatmaps, and how far
the methods' rankings agree with each other."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from analysis.findings import ALPHA
from analysis.plots import plot_overlap_heatmap, plot_series
from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection, table_section


def build_trajectory(context: ReportContext) -> Section:
    """The overlap rate against checkpoint and against layer per model and method (cf. Wang et al. Figs. 1–2)."""
    rows = context.con.execute(
        "SELECT model, checkpoint, checkpoint_index, layer, attribute, method, avg(average_rate), "
        "avg(expected_rate), sum(n_significant), sum(n_pairs) FROM overlap_summary WHERE n_languages > 1 "
        "GROUP BY ALL ORDER BY model, method, attribute, checkpoint_index, layer"
    ).fetchall()
    section = Section(
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
        order = context.study["checkpoints"].get(model, [])
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
            context.out_dir / name,
            f"{model}, {method}: overlap across checkpoints (mean of layers {', '.join(map(str, layers))})",
            "checkpoint",
            "average overlap rate",
            expected,
            "random",
        )
        section.images.append((f"{model}, {method}: overlap rate against checkpoint (cf. Wang et al. Fig. 1)", name))
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
            context.out_dir / name,
            f"{model}, {method}: overlap across layers at {last}",
            "layer",
            "average overlap rate",
            expected,
            "random",
        )
        section.images.append((f"{model}, {method}: overlap rate against layer at {last} (cf. Fig. 2)", name))
    if "attribute_contrasts" in context.views:
        section.images += contrast_plots(context)
    section.tables.append(
        Table(
            "Average overlap rate and significant pairs (Holm, α = 0.05) per matrix",
            ["model", "checkpoint", "layer", "attribute", "method", "overlap rate", "random", "significant", "pairs"],
            [(r[0], r[1], r[3], r[4], r[5], r[6], r[7], int(r[8]), int(r[9])) for r in rows],
        )
    )
    return section


def contrast_plots(context: ReportContext) -> list[tuple[str, str]]:
    """Per model: same- minus cross-attribute overlap rate against checkpoint, one line per method (mean of the
    layers); 0 is what attribute-blind sharing (scale, frequency) gives (`analysis.attribute_overlap`)."""
    rows = context.con.execute(
        "SELECT model, checkpoint, method, avg(excess) FROM attribute_contrasts WHERE checkpoint_index >= 0 "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    images = []
    for model in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == model]
        checkpoints = [c for c in context.study["checkpoints"].get(model, []) if any(r[1] == c for r in mine)]
        excess = {
            method: [next((r[3] for r in mine if r[1] == c and r[2] == method), np.nan) for c in checkpoints]
            for method in sorted({r[2] for r in mine})
        }
        name = f"attribute-contrast-{model}.png"
        plot_series(
            checkpoints,
            excess,
            context.out_dir / name,
            f"{model}: same- minus cross-attribute overlap across languages",
            "checkpoint",
            "excess overlap rate",
            0.0,
            "attribute-blind sharing",
        )
        images.append((f"{model}: overlap specific to the attribute, against checkpoint (Findings: its tests)", name))
    return images


def build_heatmaps(context: ReportContext) -> Section:
    """Per model and attribute, the language-by-language overlap at the last checkpoint and deepest layer."""
    con, study = context.con, context.study
    section = Section(
        "Pairwise overlap between languages",
        paragraphs=[
            "Overlap rate of the top-k neurons for each pair of languages at the last checkpoint and deepest layer; "
            "an orange dot marks pairs whose overlap is significant after Holm correction (exact hypergeometric test). "
            "The table counts the pairs above chance under each correction, over every checkpoint."
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
                context.out_dir / name,
                f"{attribute}: {model} {last[0]}, layer {last[1]}, {method}",
            )
            section.images.append((f"{attribute} ({method}, {last[0]}, layer {last[1]})", name))
    section.tables.append(context.table(*error_control_query()))
    return section


def error_control_query(alpha: float = ALPHA) -> tuple[str, str]:
    """Caption and query of the error-control table: per (model, attribute, method, layer), the language pairs
    whose overlap is above chance at ``alpha`` before correction, after Holm within each matrix, and after the
    study-wide Benjamini–Hochberg and Benjamini–Yekutieli corrections (over every overlap test of the study)."""
    caption = (
        f"Language pairs above chance at α = {alpha} over all checkpoints: uncorrected, Holm within each matrix, "
        "and study-wide BH and BY (BY holds under any dependence between the tests)"
    )
    sql = (
        "SELECT model, attribute, method, layer, count(*) AS pairs, round(avg(rate), 3) AS mean_rate, "
        f"round(avg(expected / k), 3) AS chance_rate, count_if(pvalue <= {alpha}) AS uncorrected, "
        f"count_if(pvalue_holm <= {alpha}) AS holm, count_if(pvalue_bh <= {alpha}) AS bh, "
        f"count_if(pvalue_by <= {alpha}) AS by FROM overlap_pairs GROUP BY ALL ORDER BY ALL"
    )
    return caption, sql


TRAJECTORY = ReportSection("overlap_trajectory", ("overlap_summary",), build_trajectory)
#: Shown with the trajectory (the overlap stage writes both tables together).
HEATMAPS = ReportSection("overlap_heatmaps", ("overlap_summary", "overlap_pairs"), build_heatmaps)
METHOD_AGREEMENT = table_section(
    "method_agreement",
    ("method_overlaps",),
    "Agreement between methods",
    "Mean top-k overlap of two methods' rankings of one dataset (chance: k²/d)",
    "SELECT method_a, method_b, count(*) AS configs, avg(overlap) AS mean_overlap, "
    "avg(expected) AS expected, avg(CAST(pvalue < 0.05 AS INTEGER)) AS share_p_below_05 "
    "FROM method_overlaps GROUP BY ALL ORDER BY mean_overlap DESC, method_a, method_b",
)
