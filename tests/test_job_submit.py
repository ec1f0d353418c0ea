"""`ray job submit --working-dir . -- python -m ray_jobs.pipeline ...` against a real `ray start --head`
cluster: the job runs the tiny study in a copy of the working dir, writes to the given output root,
and a resubmitted job finds the finished work there and does nothing."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A head node started with `ray start --head --block` in its own process group; stopped afterwards."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port, dashboard = free_port(), free_port()
    # every agent port is chosen here, so the head does not collide with the session's own Ray instance
    agent_ports = [
        f"--{name}={free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
        )
    ]
    log = open(tmp_path_factory.mktemp("ray-head") / "head.log", "w")  # noqa: SIM115 - open for the fixture's life
    process = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--port={port}",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--disable-usage-stats",
            *agent_ports,
            f"--temp-dir={tmp_path_factory.mktemp('ray-tmp')}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 300
    probe = None
    while time.time() < deadline:  # ready when a trivial job runs (the job agent starts after the dashboard)
        probe = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--", "python", "-c", "print('ready')"],
            env=env,
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            break
        time.sleep(3)
    else:
        pytest.fail(f"the Ray head did not come up; see {log.name}; last probe: {probe and probe.stderr[-2000:]}")
    yield address, env
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def submit(address: str, env: dict, output_root: Path, ud_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(REPO),
            "--",
            "python",
            "-m",
            "ray_jobs.pipeline",
            "--config",
            "configs/tiny.yaml",
            "--output-root",
            str(output_root),
            "--ud-dir",
            str(ud_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )


def test_job_submit_runs_the_study_and_a_resubmitted_job_does_no_work(head, tmp_path, ud_dir):
    address, env = head
    output_root = tmp_path / "submitted"
    first = submit(address, env, output_root, ud_dir)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "succeeded" in first.stdout + first.stderr
    with duckdb.connect(str(output_root / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rankings").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM overlap_summary").fetchone()[0] > 0
    assert (output_root / "report" / "index.html").is_file()

    second = submit(address, env, output_root, ud_dir)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "nothing to do" in second.stdout
