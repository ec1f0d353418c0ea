"""The word datasets: examples per split and the values kept."""

from __future__ import annotations

from analysis.report_sections.section import table_section

DATASETS = table_section(
    "datasets",
    ("dataset_stats",),
    "Word datasets",
    "Examples per lemma-disjoint split, and the values kept (rarer values dropped)",
    "SELECT language, attribute, n_train, n_dev, n_test, n_values, values, note "
    "FROM dataset_stats ORDER BY language, attribute",
)
