"""The registry of the study report's sections, in the order the report shows them.

Each family of results has its module here, which defines its section(s) as a `ReportSection`
(the views it needs and the function that builds it). Adding a section is one new module and one
line below; `analysis.study_report.build_report` shows every section whose views the study has.
"""

from __future__ import annotations

from analysis.report_sections.checkpoints import CHECKPOINTS
from analysis.report_sections.datasets import DATASETS
from analysis.report_sections.failures import FAILURES
from analysis.report_sections.findings import FINDINGS
from analysis.report_sections.interventions import INTERVENTIONS
from analysis.report_sections.lottery import LOTTERY
from analysis.report_sections.neurons import NEURONS
from analysis.report_sections.overlap import HEATMAPS, METHOD_AGREEMENT, TRAJECTORY
from analysis.report_sections.overview import OVERVIEW
from analysis.report_sections.pretraining import PRETRAINING
from analysis.report_sections.probing import PROBING
from analysis.report_sections.queries import QUERIES
from analysis.report_sections.section import ReportContext, ReportSection
from analysis.report_sections.transfer import TRANSFER

SECTIONS: list[ReportSection] = [
    OVERVIEW,
    FINDINGS,
    PRETRAINING,
    CHECKPOINTS,
    DATASETS,
    TRAJECTORY,
    HEATMAPS,
    NEURONS,
    PROBING,
    TRANSFER,
    LOTTERY,
    INTERVENTIONS,
    METHOD_AGREEMENT,
    FAILURES,
    QUERIES,
]

__all__ = ["SECTIONS", "ReportContext", "ReportSection"]
