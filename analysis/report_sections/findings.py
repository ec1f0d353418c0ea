"""What the study found, first: controls, rankings against random, overlap against chance, transfer,
interventions and sub-networks.

The sentences come from analysis/findings.py, findings_interventions.py and findings_lottery.py; this
section gathers their inputs from whichever of the overlap, probing, correlation, intervention and
lottery views the study has.
"""

from __future__ import annotations

from analysis.findings import (
    beats_random_findings,
    beats_random_rows,
    control_findings,
    overlap_findings,
    pooled_trend_findings,
    transfer_findings,
)
from analysis.findings_interventions import comparison_rows, intervention_findings
from analysis.findings_lottery import mask_findings
from analysis.findings_lottery import transfer_findings as ticket_findings
from analysis.findings_scale import contrast_findings, scale_findings, scale_rows
from analysis.report import Paragraph, Section, Table
from analysis.report_sections.probing import evaluated_k
from analysis.report_sections.section import ReportContext, ReportSection

TOPIC_ORDER = {
    "controls": 0,
    "rankings": 1,
    "overlap": 2,
    "scale": 3,
    "trend": 4,
    "transfer": 5,
    "interventions": 6,
    "lottery": 7,
}

#: The other sections (registry names, the report's anchors) whose plots and tables each topic's sentences rest on
#: (the findings section's own tables sit below its sentences).
TOPIC_SECTIONS = {
    "controls": ("overlap_heatmaps", "overlap_trajectory"),
    "rankings": ("probing",),
    "overlap": ("overlap_heatmaps", "overlap_trajectory", "neurons"),
    "scale": ("overlap_trajectory", "overlap_heatmaps"),
    "trend": ("overlap_trajectory",),
    "transfer": ("transfer",),
    "interventions": ("interventions",),
    "lottery": ("lottery",),
}


def build(context: ReportContext) -> Section:
    con, views = context.con, context.views
    section = Section(
        "Findings",
        paragraphs=[
            "Each sentence is computed from the tables below it in this report (analysis/findings.py states the "
            "tests): the random control must sit at chance; rankings are compared with the random control on the "
            "same datasets (one-sided Wilcoxon signed-rank, Benjamini–Hochberg over all comparisons); overlap "
            "p-values are exact hypergeometric tails, BH-corrected over every overlap test of the study; trends are "
            "Spearman's ρ of the overlap rate against checkpoint order, exact p, BH over all trends, and pooled per "
            "method over layers and attributes by a joint permutation of the checkpoints (one-sided: does it rise?); "
            "the attribute contrast compares a method's overlap between the same attribute in two languages with its "
            "overlap between different attributes in them, each ranking taken beyond the scale control's top k "
            "(each language's attribute labels permuted; BH)."
        ],
    )
    findings = []
    if "overlap_pairs" in views:
        pairs = context.records(
            "SELECT model, checkpoint, layer, seed, language_a, language_b, attribute, method, rate, expected, k, d, "
            "pvalue, significant, pvalue_bh FROM overlap_pairs",
        )
        trends = context.records("SELECT * FROM overlap_trends") if "overlap_trends" in views else []
        findings += control_findings(pairs) + overlap_findings(pairs, trends) + scale_findings(scale_rows(pairs))
        if trends:
            section.tables.append(
                context.table(
                    "Trend of the average overlap rate over checkpoints per layer (Spearman ρ, exact p, BH)",
                    "SELECT model, layer, attribute, method, n_checkpoints, first_rate, last_rate, expected_rate, "
                    "spearman_rho, pvalue, pvalue_bh FROM overlap_trends ORDER BY attribute, method, layer",
                )
            )
    if "pooled_trends" in views:
        findings += pooled_trend_findings(context.records("SELECT * FROM pooled_trends"))
    contrasts = context.records("SELECT * FROM attribute_contrasts") if "attribute_contrasts" in views else []
    if contrasts:
        findings += contrast_findings(contrasts)
        section.tables.append(
            context.table(
                "Same- against cross-attribute overlap across languages beyond the scale control's top neurons, per "
                "checkpoint, layer and method (permutation of each language's attribute labels; BH over the study)",
                "SELECT model, checkpoint, layer, method, k, scale_removed, same_rate, cross_rate, excess, "
                "n_same_pairs, n_cross_pairs, pvalue, pvalue_bh FROM attribute_contrasts "
                "ORDER BY method, layer, checkpoint_index",
            )
        )
    if "probe_metrics" in views:
        at = evaluated_k(con, context.study["k"])
        small = sorted(r[0] for r in con.execute(f"SELECT DISTINCT k FROM probe_metrics WHERE k <= {at}").fetchall())
        metrics = context.records(
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
        findings += transfer_findings(context.records("SELECT * FROM correlations"))
    if "intervention_rates" in views:
        findings += intervention_findings(
            comparison_rows(context.records("SELECT * FROM intervention_rates")), context.study["k"]
        )
    if "mask_overlap_summary" in views:
        findings += mask_findings(context.records("SELECT * FROM mask_overlap_summary"))
    if "subnetwork_transfer" in views:
        findings += ticket_findings(context.records("SELECT * FROM subnetwork_transfer"))
    section.paragraphs += [
        Paragraph(f.sentence, TOPIC_SECTIONS[f.topic]) for f in sorted(findings, key=lambda f: TOPIC_ORDER[f.topic])
    ]
    return section


FINDINGS = ReportSection(
    "findings",
    ("overlap_pairs", "probe_metrics", "intervention_rates", "mask_overlap_summary", "subnetwork_transfer"),
    build,
    needs_any=True,
)
