"""Stops what remains of the local Ray a driver started, once the driver is gone.

``ray.init()`` starts Ray's services as children of the driver. When the driver is killed (SIGKILL),
the raylet and GCS die with it, but the dashboard and runtime-env agents they started, and idle
workers, are left running for good. `watch` starts this module as a process of its own session: it
follows the processes Ray started (and their descendants) while the driver lives, and once the
driver is gone it kills those still running, then exits. A driver that connects to a running cluster
(``ray job submit``, ``RAY_ADDRESS``) started nothing and is not watched.

    python -m ray_jobs.reaper DRIVER_PID RAY_PID...
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

#: Seconds between two looks at the driver and at the processes it started.
POLL_SECONDS = 1.0


def watch(started: list[int]) -> None:
    """Start the reaper of this driver and of the Ray processes ``started`` by it."""
    subprocess.Popen(
        [sys.executable, "-m", "ray_jobs.reaper", str(os.getpid()), *map(str, started)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def existing(pids: list[int]) -> list[psutil.Process]:
    """The processes of these pids that exist."""
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def reap(driver_pid: int, started: list[int]) -> None:
    """Follow the ``started`` processes and their descendants while the driver runs; then kill every one
    still running."""
    driver = existing([driver_pid])
    known = {process.pid: process for process in existing(started)}
    while driver and alive(driver[0]):
        for process in [p for p in known.values() if alive(p)]:
            try:
                known.update({child.pid: child for child in process.children(recursive=True)})
            except psutil.NoSuchProcess:
                continue
        time.sleep(POLL_SECONDS)
    for process in known.values():
        if alive(process):  # is_running() also compares the creation time: never a reused pid
            process.kill()


def main(argv: list[str] | None = None) -> int:
    driver, *started = (int(pid) for pid in (sys.argv[1:] if argv is None else argv))
    reap(driver, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
