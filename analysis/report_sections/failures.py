"""The parts of the study that could not run, grouped by reason."""

from __future__ import annotations

from analysis.report_sections.section import table_section

FAILURES = table_section(
    "failures",
    ("failures",),
    "Failures",
    "Parts of the study that could not run, grouped by reason (the rest finished); "
    "every part is a row of the failures table",
    "SELECT stage, split_part(error, chr(10), 1) AS error, count(*) AS parts, "
    "min(key) AS example FROM failures GROUP BY ALL ORDER BY stage, parts DESC, error",
)
