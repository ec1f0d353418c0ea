"""The study's overview, first in the report: what was studied, how layers are numbered, what each stage did."""

from __future__ import annotations

from analysis.report import Section, Table
from analysis.report_sections.section import ReportContext, ReportSection
from probing.models import LAYER_CONVENTION


def build(context: ReportContext) -> Section:
    study = context.study
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


OVERVIEW = ReportSection("overview", (), build)
