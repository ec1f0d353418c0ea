"""`ray job submit --working-dir . -- python -m ray_jobs.pipeline ...` against a real cluster of two nodes
started with `ray start` (a head and a worker, 1 CPU each): the job runs the tiny study in a copy of the
working dir, writes to the given output root, survives the worker's raylet being killed mid-probe with
rankings identical to a single-node run, and a resubmitted job finds the finished work and does nothing."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psutil
import pytest

from bench.fault_injection import differences, table_rows, wait_for
from ray_jobs import probe

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
#: The ports every node opens, each chosen here, so that two nodes (and the session's own Ray) never collide.
NODE_PORTS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(log: Path, env: dict, *options: str) -> subprocess.Popen:
    """`ray start --block` of one node with 1 CPU, in its own process group, logging to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [
                RAY,
                "start",
                "--block",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                "--disable-usage-stats",
                *(f"--{name}={free_port()}" for name in NODE_PORTS),
                *options,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def job(address: str, env: dict, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, "job", "submit", "--address", address, "--", *command], env=env, capture_output=True, text=True
    )


def stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)


@dataclass
class Cluster:
    address: str
    env: dict
    worker: subprocess.Popen


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node started with `ray start`; stopped afterwards."""
    logs = tmp_path_factory.mktemp("ray-nodes")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port, dashboard = free_port(), free_port()
    head = start_node(
        logs / "head.log",
        env,
        "--head",
        "--dashboard-host=127.0.0.1",
        f"--port={port}",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={tmp_path_factory.mktemp('ray-tmp')}",
    )
    address = f"http://127.0.0.1:{dashboard}"
    # ready when a trivial job runs (the job agent starts after the dashboard)
    wait_for(lambda: job(address, env, "python", "-c", "print('ready')").returncode == 0, 300, "the Ray head")
    # a temp dir of its own, as a node on its own machine has: Ray's clean-up of a lost node would
    # otherwise delete the job's working dir, which the nodes of one machine would share
    worker = start_node(
        logs / "worker.log", env, f"--address=127.0.0.1:{port}", f"--temp-dir={tmp_path_factory.mktemp('ray-tmp')}"
    )
    count = "import ray; ray.init(); print('nodes', sum(n['Alive'] for n in ray.nodes()))"
    wait_for(lambda: "nodes 2" in job(address, env, "python", "-c", count).stdout, 120, "the worker node")
    yield Cluster(address, env, worker)
    for node in (worker, head):
        stop(node)


def submit(cluster: Cluster, output_root: Path, ud_dir: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                RAY,
                "job",
                "submit",
                "--address",
                cluster.address,
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
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def kill_raylet(node: subprocess.Popen) -> None:
    """SIGKILL the raylet of a node: the node is lost with whatever runs on it."""
    [raylet] = [p for p in psutil.Process(node.pid).children(recursive=True) if p.name() == "raylet"]
    raylet.kill()


def single_node_probe(study: Path, tmp_path: Path, ud_dir: Path) -> Path:
    """The probe stage alone, on this machine's one-node Ray, over a copy of the study's activations."""
    copy = shutil.copytree(study, tmp_path / "single-node", ignore=shutil.ignore_patterns("_tune"))
    for stored in ("rankings", "probe_metrics", "failures/stage=probe"):
        shutil.rmtree(copy / stored)
    args = ["--config", "configs/tiny.yaml", "--output-root", str(copy), "--ud-dir", str(ud_dir)]
    assert probe.main(args) == 0
    return copy


@pytest.mark.campaign
def test_a_study_on_two_nodes_survives_losing_one_mid_probe_and_a_resubmitted_job_does_no_work(
    cluster, ray_cluster, tmp_path, ud_dir, monkeypatch
):
    output_root, log = tmp_path / "submitted", tmp_path / "first.log"
    first = submit(cluster, output_root, ud_dir, log)
    wait_for(lambda: "[probe]" in log.read_text(), 900, "the probe stage")
    time.sleep(2)  # its trials run on both nodes
    kill_raylet(cluster.worker)
    assert first.wait(timeout=900) == 0, log.read_text()[-4000:]
    assert "succeeded" in log.read_text() and "has been marked dead" in log.read_text()  # lost, mid-run
    with duckdb.connect(str(output_root / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rankings").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM overlap_summary").fetchone()[0] > 0
    assert (output_root / "report" / "index.html").is_file()

    monkeypatch.chdir(REPO)
    single = table_rows(single_node_probe(output_root, tmp_path, ud_dir))
    submitted = table_rows(output_root)
    probed = ("rankings", "probe_metrics")
    assert differences({t: submitted[t] for t in probed}, {t: single[t] for t in probed}) == []

    second = submit(cluster, output_root, ud_dir, tmp_path / "second.log")
    assert second.wait(timeout=900) == 0
    assert "nothing to do" in (tmp_path / "second.log").read_text()
