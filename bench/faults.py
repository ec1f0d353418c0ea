"""The fault campaign of issue 14 against the tiny study: which faults a study survives with results
identical to a clean run.

    python bench/faults.py [--ud-dir ../shared/data/ud] [--workdir /tmp/xling-faults]

A clean run of configs/tiny.yaml is the reference. One more study is then run to the end through a
chain of runs, each resuming the last, whose drivers are SIGKILLed in pre-training, extraction,
probing, transfer and the lottery (their Ray processes must all go), the last one finishing while a second run
is started on the study (it must be refused); the chain's final tables judge its faults. On copies
of the reference: an extraction actor, a probe trial and an IMP trial SIGKILLed while they redo dropped
results (the IMP trial then resumes from its last finished round),
a file of every table damaged each way (truncated, garbled, one bit flipped; rerun with --verify),
the study moved to another path (the rerun must do nothing), the disk filled up (a tmpfs; left out
where mounting is not allowed), and SQL that tries to write or read outside the tables. The
multi-node fault (a worker node's raylet killed mid-probe) is `tests/test_job_submit.py`.
Prints a table (fault, survived identical yes/no) and, last, ``ratio: X`` = faults survived with
identical results / faults injected (target 1.0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import UD_DIR  # noqa: E402  (needs REPO on the path)
from bench.fault_injection import (  # noqa: E402
    DAMAGE,
    damage_every_table,
    differences,
    fill_the_disk,
    small_disk,
    table_rows,
    wait_for,
)
from ray_jobs.lease import BUSY_EXIT, LEASE_NAME  # noqa: E402
from ray_jobs.reaper import alive  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
    "PYTHONUNBUFFERED": "1",
    "RAY_AUTH_MODE": "disabled",
}


def write_config(directory: Path, ud_dir: Path) -> Path:
    """configs/tiny.yaml with the given UD folder and its output root in ``directory``."""
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config.update(ud_dir=str(ud_dir), output_root=str(directory / "study"))
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path, root: Path, log: Path, *extra: str) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ray_jobs.pipeline", "--config", str(config), "--output-root", str(root), *extra],
            cwd=REPO,
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run(config: Path, root: Path, log: Path, *extra: str) -> tuple[int, str]:
    status = start(config, root, log, *extra).wait()
    return status, log.read_text()


def descendants(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def titled(process: psutil.Process, title: str) -> bool:
    """Whether a process's title (Ray's ``ray::ActorClass.method``) names ``title``."""
    try:
        return title in " ".join(process.cmdline())
    except psutil.Error:  # it ended meanwhile
        return False


def kill_worker(driver: subprocess.Popen, title: str) -> bool:
    """SIGKILL the first of the driver's Ray workers whose process title names ``title`` (waiting for one to
    start); False when the run ends first."""

    def workers() -> list[psutil.Process]:
        return [p for p in descendants(driver) if titled(p, title)]

    wait_for(lambda: bool(workers()) or driver.poll() is not None, 300, f"a {title} worker")
    found = workers()
    if found:
        found[0].kill()
    return bool(found)


def at_moment(driver: subprocess.Popen, log: Path, moment: str) -> bool:
    """Wait until the run prints ``moment`` and two seconds more; False when it ended first."""
    wait_for(lambda: moment in log.read_text() or driver.poll() is not None, 900, moment)
    time.sleep(2)
    return driver.poll() is None


#: Where the driver is killed, each in one run of the chain: (fault, what the run prints at that moment).
DRIVER_KILLS = [
    ("driver SIGKILL in pre-training", "[pretrain] tiny-bloom:"),
    ("driver SIGKILL in extraction", "extract:"),
    ("driver SIGKILL in probing", "[probe]"),
    ("driver SIGKILL in transfer", "[transfer]"),
    ("driver SIGKILL in the lottery", "[lottery]"),
]


def killed_drivers(config: Path, root: Path, logs: Path, expected: dict) -> list[tuple[str, bool]]:
    """Run a fresh study through `DRIVER_KILLS`, each run resuming the last, then to the end while a second
    run is started on it (it must be refused). A kill survived when it hit a running driver whose Ray
    processes then all went, and the finished study equals the reference."""
    clean = []
    for number, (_, moment) in enumerate(DRIVER_KILLS):
        log = logs / f"driver-{number}.log"
        driver = start(config, root, log)
        hit = at_moment(driver, log, moment)
        processes = descendants(driver) if hit else []
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not any(map(alive, processes)), 30, "the killed run's processes")  # noqa: B023
        clean.append(hit and not any(map(alive, processes)))
    last = start(config, root, logs / "driver-last.log")
    wait_for(lambda: (root / LEASE_NAME).exists(), 120, "the last run's lease")
    refused, _ = run(config, root, logs / "driver-refused.log")
    identical = last.wait() == 0 and not differences(expected, table_rows(root))
    return [(name, ok and identical) for (name, _), ok in zip(DRIVER_KILLS, clean, strict=True)] + [
        ("a second run while one runs (refused)", refused == BUSY_EXIT and identical)
    ]


def killed_worker(
    name: str, title: str, moment: str, drop: str, reference: Path, work: Path, config: Path, expected: dict
) -> tuple[str, bool]:
    """On a copy of the reference without the files ``drop`` globs, SIGKILL a ``title`` worker when the
    rerun prints ``moment``; then rerun to the end: identical?"""
    slug = "-".join(name.lower().replace("/", " ").split())
    root = copy(reference, work / f"worker-{slug}" / "study")
    for path in root.glob(drop):
        path.unlink()
    log = work / f"worker-{slug}.log"
    driver = start(config, root, log)
    hit = at_moment(driver, log, moment) and kill_worker(driver, title)
    driver.wait()
    status, _ = run(config, root, work / f"worker-{slug}-rerun.log")
    return name, hit and status == 0 and not differences(expected, table_rows(root))


def copy(reference: Path, root: Path) -> Path:
    return shutil.copytree(reference, root, ignore=shutil.ignore_patterns("_tune"))


def damaged(kind: str, reference: Path, work: Path, config: Path, expected: dict) -> bool:
    """A file of every table damaged one way, then a rerun with --verify: identical?"""
    root = copy(reference, work / f"damaged-{kind}" / "study")
    damage_every_table(root, (kind,))
    status, _ = run(config, root, work / f"damaged-{kind}.log", "--verify")
    return status == 0 and not differences(expected, table_rows(root))


def moved(reference: Path, work: Path, config: Path, expected: dict) -> bool:
    root = copy(reference, work / "elsewhere" / "study")
    status, output = run(config, root, work / "moved.log")
    return status == 0 and "nothing to do" in output and not differences(expected, table_rows(root))


def sql_attempts(reference: Path, work: Path, expected: dict) -> bool:
    """SQL that tries to overwrite a partition, read a file outside the tables, install or attach: all refused."""
    root = copy(reference, work / "sql" / "study")
    outside = work / "sql"
    attempts = [
        f"COPY (SELECT 1 AS x) TO '{root}/failures/stage=probe/part-0.parquet' (FORMAT parquet)",
        f"SELECT * FROM read_text('{REPO}/README.md')",
        "INSTALL httpfs",
        f"ATTACH '{outside}/other.duckdb' AS other",
    ]
    refused = [
        subprocess.run(
            [sys.executable, "-m", "ray_jobs.sql", sql, "--root", str(root)], cwd=REPO, env=ENV, capture_output=True
        ).returncode
        == 2
        for sql in attempts
    ]
    return all(refused) and not (outside / "other.duckdb").exists() and not differences(expected, table_rows(root))


def disk_full(reference: Path, work: Path, config: Path) -> bool | None:
    """A full disk: a clear error, nothing half-written in view, identical after space is freed (None: no tmpfs)."""
    try:
        with small_disk(work / "disk") as mount:
            outcome = fill_the_disk(reference, mount, lambda root: run(config, root, work / "disk.log"))
    except OSError as err:
        print(f"[faults] disk full left out: {err}")
        return None
    clear = outcome.full_status == 1 and "No space left on device" in outcome.full_output
    return clear and not outcome.half_written_in_view and outcome.freed_status == 0 and not outcome.differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ud-dir", type=Path, default=UD_DIR)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards when given")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="xling-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work, args.ud_dir.resolve())
    began = time.perf_counter()
    status, _ = run(config, work / "study", work / "reference.log")
    if status != 0:
        print(f"the clean reference run failed (exit {status}); see {work / 'reference.log'}")
        return 1
    reference = work / "study"
    expected = table_rows(reference)
    results = killed_drivers(config, work / "chain" / "study", work, expected)
    results += [
        killed_worker(*fault, reference, work, config, expected)
        for fault in (
            (
                "extraction actor SIGKILL",
                "CheckpointWorker",
                "extract:",
                "*/model=*/checkpoint=step-000000/*/language=en/*.parquet",
            ),
            (
                "Tune trial SIGKILL",
                "ImplicitFunc",
                "[probe]",
                "*/model=*/checkpoint=step-000000/layer=1/*/*/*/*.parquet",
            ),
            (  # one IMP trial's rounds and masks dropped, its trial killed while it prunes: resumes per round
                "lottery trial SIGKILL mid-IMP",
                "ImplicitFunc",
                "IMP trials",
                "*/model=*/checkpoint=*/task=pos/language=en/seed-0-*.parquet",
            ),
        )
    ]
    results += [(f"every table {kind}", damaged(kind, reference, work, config, expected)) for kind in DAMAGE]
    results += [("study moved to another path", moved(reference, work, config, expected))]
    results += [("SQL that writes or reads outside the tables", sql_attempts(reference, work, expected))]
    full = disk_full(reference, work, config)
    if full is not None:
        results += [("disk full, then space freed", full)]
    width = max(len(name) for name, _ in results)
    print(f"\n{'fault'.ljust(width)}  survived identical")
    for name, survived in results:
        print(f"{name.ljust(width)}  {'yes' if survived else 'no'}")
    print(f"\n{len(results)} faults in {time.perf_counter() - began:.0f} s; work in {work}")
    print(f"ratio: {sum(s for _, s in results) / len(results):.3f}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
