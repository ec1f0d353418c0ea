"""The whole study from one config: pre-train → prepare → extract → rank → transfer → analyse → report.

    python -m ray_jobs.pipeline --config configs/demo.yaml [--output-root PATH_OR_URI]
    ray job submit --working-dir . -- python -m ray_jobs.pipeline --config configs/tiny.yaml --output-root /abs/path

Every stage skips work already stored with the same fingerprint, so a rerun resumes where a run
stopped and a rerun of a finished study does no work (and says so). A part that fails is recorded in
``failures`` and the rest of the study still finishes; the exit status is then 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from analysis.database import format_table
from analysis.store import Store
from ray_jobs.common import Failures, StageResult, config_from_args, init_ray, job_arguments, ray_map
from ray_jobs.config import StudyConfig


def efficiency(busy_seconds: float, wall_seconds: float) -> str:
    """Busy CPU-seconds over wall seconds × the cluster's CPUs, as text ("" when the stage reports none)."""
    import ray

    if busy_seconds <= 0 or wall_seconds <= 0:
        return ""
    return f"{busy_seconds / (wall_seconds * ray.cluster_resources().get('CPU', 1.0)):.2f}"


def run_study(config: StudyConfig) -> tuple[list[dict], list[Failures]]:
    """Run every stage; return the summary rows and the failures of each stage."""
    from ray_jobs.analyse import report_path, run_correlations, run_overlaps, run_report
    from ray_jobs.extract import run_extraction
    from ray_jobs.prepare import run_prepare
    from ray_jobs.pretrain import run_pretraining
    from ray_jobs.probe import run_probing
    from ray_jobs.transfer import run_transfers

    store = Store(config.output_root)
    summary: list[dict] = []
    all_failures: list[Failures] = []

    def stage(name: str, work: Callable[[Failures], StageResult]) -> None:
        failures = Failures(name)
        began = time.perf_counter()
        try:
            result = work(failures)
        except Exception as err:  # a broken stage is recorded; the later stages still run on what exists
            failures.add(name, err)
            result = StageResult()
        failures.write(store)
        all_failures.append(failures)
        seconds = time.perf_counter() - began
        summary.append(
            {
                "stage": name,
                "run": result.run,
                "already stored": result.reused,
                "no data": result.no_data,
                "failed": len(failures.rows),
                "seconds": round(seconds, 1),
                "efficiency": efficiency(result.busy_seconds, seconds),
            }
        )

    state: dict = {"sources": {}, "data_fps": {}}

    def pretrain(failures: Failures) -> StageResult:
        state["sources"], result = run_pretraining(config, failures)
        return result

    def prepare(failures: Failures) -> StageResult:
        state["data_fps"], result = run_prepare(config, failures, runner=ray_map)  # one Ray task per language
        return result

    stage("pretrain", pretrain)
    stage("prepare", prepare)
    stage("extract", lambda f: run_extraction(config, state["sources"], state["data_fps"], f))
    stage("probe", lambda f: run_probing(config, state["sources"], state["data_fps"], f))
    if config.transfer is not None:
        stage("transfer", lambda f: run_transfers(config, state["sources"], f))

    def analyse(failures: Failures) -> StageResult:
        changed = [run_overlaps(config), run_correlations(config)]
        return StageResult(sum(changed), len(changed) - sum(changed))

    stage("analyse", analyse)
    nothing_done = all(row["run"] == 0 and row["failed"] == 0 for row in summary)
    if nothing_done and report_path(config).is_file():
        summary.append(
            {
                "stage": "report",
                "run": 0,
                "already stored": 1,
                "no data": 0,
                "failed": 0,
                "seconds": 0.0,
                "efficiency": "",
            }
        )
    else:
        stage("report", lambda f: StageResult(1, 0) if run_report(config, summary) else StageResult())
    return summary, all_failures


def main(argv: list[str] | None = None) -> int:
    args = job_arguments("Run a whole study: pre-train, extract, rank, analyse, report.").parse_args(argv)
    config = config_from_args(args)
    print(f"[pipeline] study '{config.name}' -> {config.output_root}")
    init_ray()
    summary, failures = run_study(config)
    columns = list(summary[0])
    print("\n" + format_table(columns, [tuple(r[c] for c in columns) for r in summary], max_rows=100))
    failed = [row for f in failures for row in f.rows]
    if all(r["run"] == 0 for r in summary) and not failed:
        print("[pipeline] nothing to do: every stage of this study is already complete")
    from ray_jobs.analyse import report_path

    print(f"[pipeline] report: {report_path(config)}")
    no_data = sum(row["no data"] for row in summary)
    if no_data:
        print(
            f"[pipeline] {no_data} unit(s) had no data to compute (e.g. an attribute a language does not annotate); "
            "their reasons are in the failures table (error LIKE 'CannotProbe%'), and they are not failures"
        )
    if failed:
        print(f"[pipeline] {len(failed)} part(s) failed (see the failures table); the rest finished")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
