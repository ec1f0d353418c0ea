"""The xling command line: a reader that closes the pipe early ends the command quietly."""

import subprocess
import sys
from pathlib import Path

from analysis.store import Store
from analysis.tables import rows_table

REPO = Path(__file__).resolve().parents[1]


def test_a_closed_pipe_ends_xling_sql_without_a_traceback(tmp_path):
    store = Store(tmp_path / "study")
    row = {"stage": "probe", "key": "k", "error": "e", "detail": "", "time": 0.0}
    store.write(rows_table("failures", [row]), store.path("failures", stage="probe"), "fp")
    command = (
        f"{sys.executable} -m ray_jobs.cli sql 'SELECT range AS i FROM range(200000)' --root {store.base} "
        "--max-rows 200000 | head -n 2"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.splitlines()[0].split() == ["i"]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
