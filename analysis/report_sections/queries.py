"""The report's last section: how to query the study's database, with example queries."""

from __future__ import annotations

from analysis.report import Section
from analysis.report_sections.section import ReportContext, ReportSection

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
    "-- which ranking reaches the highest CLWV with the fewest neurons (translation, paper 003 Table 1)\n"
    "SELECT layer, attribute, method, round(avg(clwv_at_saturation), 3) AS clwv, round(avg(saturation_k), 1) AS k\n"
    "FROM intervention_saturation WHERE intervention = 'translation' AND split = 'test' AND direction = 'ttb'\n"
    "GROUP BY ALL ORDER BY clwv DESC, k;",
]


def build(context: ReportContext) -> Section:
    return Section(
        "Query the results",
        paragraphs=[
            "Every table is a view in results.duckdb (DuckDB), over the Parquet files in place. "
            'Open it with `duckdb results.duckdb` or `xling sql "..." --root <output root>`.'
        ],
        code=EXAMPLE_QUERIES,
    )


QUERIES = ReportSection("queries", (), build)
