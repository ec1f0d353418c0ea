"""What a report section is: the views it needs and a function that builds it from the study's database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analysis.report import Section, Table


@dataclass(frozen=True)
class ReportContext:
    """What a section builder reads: the database, the views present, the study's facts, and where plots go.

    ``study`` holds plain facts: name, k, methods (config order), languages, attributes, layers,
    checkpoint order per model (``checkpoints``: {model: [revision, ...]}), ``stages`` (rows of
    the pipeline summary) and ``provenance`` (the run's, `analysis.provenance`).
    """

    con: duckdb.DuckDBPyConnection
    views: frozenset[str]
    study: dict
    out_dir: Path

    def table(self, caption: str, sql: str) -> Table:
        """A captioned table of a query's result, its columns named as the query names them."""
        result = self.con.execute(sql)
        return Table(caption, [c[0] for c in result.description], result.fetchall())

    def records(self, sql: str) -> list[dict]:
        """A query's rows as dicts by column name."""
        result = self.con.execute(sql)
        columns = [c[0] for c in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]

    def grouped(self, sql: str, by: tuple[str, ...]) -> dict[tuple, list[dict]]:
        """A query's rows as dicts, grouped by their values of the columns ``by``, groups in the rows' order."""
        groups: dict[tuple, list[dict]] = {}
        for row in self.records(sql):
            groups.setdefault(tuple(row[c] for c in by), []).append(row)
        return groups


@dataclass(frozen=True)
class ReportSection:
    """One entry of the report's registry: a unique name, the views it reads, and its builder.

    The section is left out of a report whose database lacks its ``needs`` (all of them, or with
    ``needs_any`` at least one); views a builder reads only when present it checks in ``context.views``.
    """

    name: str
    needs: tuple[str, ...]
    build: Callable[[ReportContext], Section]
    needs_any: bool = False

    def shown(self, views: frozenset[str]) -> bool:
        """Whether a database with these views has what this section needs."""
        present = (view in views for view in self.needs)
        return any(present) if self.needs_any else all(present)


def table_section(name: str, needs: tuple[str, ...], title: str, caption: str, sql: str) -> ReportSection:
    """A section that is one captioned table: the result of one query."""

    def build(context: ReportContext) -> Section:
        return Section(title, tables=[context.table(caption, sql)])

    return ReportSection(name, needs, build)
