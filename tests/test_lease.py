"""The study lease: one run at a time per output root; a second is refused naming the first, or waits;
a lease whose process is gone or whose heartbeat stopped is taken over."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analysis.store import Store
from ray_jobs.lease import BUSY_EXIT, LEASE_NAME, StudyBusy, StudyLease, holding_study


def lease_of(root: Path) -> dict:
    return json.loads((root / LEASE_NAME).read_text())


def test_the_lease_names_its_run_renews_its_heartbeat_and_goes_on_release(tmp_path):
    with StudyLease(Store(tmp_path), heartbeat=0.1) as lease:
        first = lease_of(tmp_path)
        assert first["pid"] == lease.mine["pid"] and first["host"] and "pid" in first["owner"]
        time.sleep(0.5)
        assert lease_of(tmp_path)["heartbeat"] > first["heartbeat"]
    assert not (tmp_path / LEASE_NAME).exists()


def test_a_second_run_is_refused_with_the_name_of_the_first(tmp_path, capsys):
    with StudyLease(Store(tmp_path)) as first:
        with pytest.raises(StudyBusy, match=f"pid {first.mine['pid']}"):
            StudyLease(Store(tmp_path)).__enter__()
        assert holding_study(Store(tmp_path), False, lambda: 0) == BUSY_EXIT
        assert "in use by another run" in capsys.readouterr().err


def test_a_waiting_run_starts_when_the_first_releases(tmp_path):
    held = StudyLease(Store(tmp_path)).__enter__()
    threading.Timer(1.0, held.__exit__, (None, None, None)).start()
    began = time.time()
    assert holding_study(Store(tmp_path), True, lambda: 7) == 7
    assert time.time() - began >= 0.9


def write_lease(root: Path, **fields) -> None:
    lease = {"token": "t", "owner": "someone", "host": "h", "pid": 1, "command": "c", "started": 0.0}
    (root / LEASE_NAME).write_text(json.dumps({**lease, "heartbeat": time.time(), **fields}))


def test_a_lease_whose_process_is_gone_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_lease(tmp_path, host=StudyLease(Store(tmp_path)).mine["host"], pid=int(gone.stdout))
    with StudyLease(Store(tmp_path)) as lease:
        assert lease_of(tmp_path)["token"] == lease.mine["token"]


def test_a_lease_without_a_recent_heartbeat_is_taken_over_and_a_fresh_one_is_not(tmp_path):
    write_lease(tmp_path, host="another-host", heartbeat=time.time() - 5)
    with pytest.raises(StudyBusy):
        StudyLease(Store(tmp_path), timeout=60).__enter__()
    with StudyLease(Store(tmp_path), timeout=1) as lease:
        assert lease_of(tmp_path)["token"] == lease.mine["token"]


def test_an_unreadable_lease_belongs_to_nobody(tmp_path):
    (tmp_path / LEASE_NAME).write_text('{"token": "cut sh')
    with StudyLease(Store(tmp_path)):
        assert lease_of(tmp_path)["pid"]
