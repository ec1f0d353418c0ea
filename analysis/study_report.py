"""The study report: every registered section whose views the study's DuckDB database has, with its plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from analysis.provenance import provenance_line
from analysis.report import write_report
from analysis.report_sections import SECTIONS, ReportContext, ReportSection


def _views(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    return frozenset(
        row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    )


def build_report(
    con: duckdb.DuckDBPyConnection, out_dir: Path | str, study: dict, sections: Sequence[ReportSection] = SECTIONS
) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir`` from the study's tables in ``con``.

    Each of ``sections`` (the registry, in order) is built when ``con`` has the views it needs and
    left out otherwise. ``study`` holds the plain facts that `ReportContext` describes; its
    ``provenance`` (the run's, `analysis.provenance`), when given, is the report's footer.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = ReportContext(con, _views(con), study, out_dir)
    built = []
    for section in sections:
        if section.shown(context.views):
            page = section.build(context)
            page.anchor = section.name
            built.append(page)
    footer = provenance_line(study["provenance"]) if study.get("provenance") else ""
    return write_report(out_dir / "index.html", f"Study report: {study['name']}", built, footer)
