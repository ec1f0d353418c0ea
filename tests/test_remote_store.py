"""A study whose output root is an S3 URI (a real S3 API served by moto on localhost): every stage reads
and writes through pyarrow's S3 filesystem, pre-trained checkpoints travel through the store, the
report is written locally, and a rerun finds the finished work in the bucket."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import yaml

from analysis.store import Store
from ray_jobs import pipeline

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s3_root():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    yield (
        f"s3://testing:testing@xling-bucket/tiny?endpoint_override=127.0.0.1:{port}&scheme=http"
        f"&region=us-east-1&allow_bucket_creation=true"
    )
    server.terminate()
    server.wait(timeout=10)


def test_a_study_on_an_s3_root_runs_resumes_and_keeps_everything_in_the_bucket(
    ray_cluster, s3_root, tmp_path, ud_dir, capsys
):
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["ud_dir"] = str(ud_dir)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert pipeline.main(["--config", str(path), "--output-root", s3_root]) == 0
    store = Store(s3_root)
    assert isinstance(store.fs, pafs.S3FileSystem)
    files = [i.path for i in store.fs.get_file_info(pafs.FileSelector(store.base, recursive=True))]
    assert any("/models/tiny-bloom-" in f and f.endswith("step-000020/model.safetensors") for f in files)
    assert ds.dataset(store.table_dir("rankings"), filesystem=store.fs, partitioning="hive").count_rows() == 2 * 32
    assert ds.dataset(store.table_dir("transfer"), filesystem=store.fs, partitioning="hive").count_rows() > 0
    assert store.read("overlap_summary").num_rows == 16
    assert not any(Path(f).name.startswith(".") for f in files)  # no temporary file left in view
    assert (store.local_dir() / "report" / "index.html").is_file()

    capsys.readouterr()
    assert pipeline.main(["--config", str(path), "--output-root", s3_root]) == 0
    assert "nothing to do" in capsys.readouterr().out
