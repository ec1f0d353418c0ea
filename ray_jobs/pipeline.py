"""The whole study from one config: every stage of `ray_jobs.stages.STAGES`, in order.

    python -m ray_jobs.pipeline --config configs/demo.yaml [--output-root PATH_OR_URI]
    ray job submit --working-dir . -- python -m ray_jobs.pipeline --config configs/tiny.yaml --output-root /abs/path

Every stage skips work already stored with the same fingerprint, so a rerun resumes where a run
stopped and a rerun of a finished study does no work (and says so). A part that fails is recorded in
``failures`` and the rest of the study still finishes; the exit status is then 1. A run holds the
study's lease (`ray_jobs.lease`): a second run on the same root exits with status 75 naming the
first, or waits with ``--wait``.
"""

from __future__ import annotations

import sys

from analysis.database import format_table
from ray_jobs.common import config_from_args, job_arguments, run_job
from ray_jobs.context import StudyContext
from ray_jobs.stages import STAGES, run_stage
from ray_jobs.weights import duplicate_warning


def run_study(context: StudyContext) -> None:
    """Run every stage the study asks for; the context keeps their summary rows and failures."""
    for stage in STAGES:
        if stage.applies(context):
            run_stage(stage, context)


def main(argv: list[str] | None = None) -> int:
    args = job_arguments("Run a whole study: pre-train, extract, rank, analyse, report.").parse_args(argv)
    config = config_from_args(args)
    print(f"[pipeline] study '{config.name}' -> {config.output_root}")
    context = StudyContext.open(config, verify=args.verify)
    return run_job(context, args, lambda: run_and_summarise(context))


def run_and_summarise(context: StudyContext) -> int:
    """Run the study, print its summary; 1 when a part failed."""
    run_study(context)
    summary = context.summary
    columns = list(summary[0])
    print("\n" + format_table(columns, [tuple(r[c] for c in columns) for r in summary], max_rows=100))
    failed = context.failure_rows()
    if all(r["run"] == 0 for r in summary) and not failed:
        print("[pipeline] nothing to do: every stage of this study is already complete")
    from ray_jobs.report import report_path

    print(f"[pipeline] report: {report_path(context.store)}")
    no_data = sum(row["no data"] for row in summary)
    if no_data:
        print(
            f"[pipeline] {no_data} unit(s) had no data to compute (e.g. an attribute a language does not annotate); "
            "their reasons are in the failures table (error LIKE 'CannotProbe%'), and they are not failures"
        )
    repaired = sum(row["repaired"] for row in summary)
    if repaired:
        print(f"[pipeline] {repaired} stored file(s) were damaged; they were moved aside (.*.damaged) and recomputed")
    duplicated = duplicate_warning(context.store)
    if duplicated:
        print(f"[pipeline] {duplicated}")
    if failed:
        print(f"[pipeline] {len(failed)} part(s) failed (see the failures table); the rest finished")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
