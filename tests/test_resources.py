"""Every task fits the largest node: pre-training is sized to it, and a config asking for more than any
node holds is an error at start, naming the field, instead of a job that waits forever."""

import dataclasses

import pytest

from ray_jobs import pipeline
from ray_jobs.config import Resources, load_config
from ray_jobs.resources import NodeShape, pretrain_request, resource_problems
from tests.conftest import tiny_config

ONE_CPU_NODES = [NodeShape(1, 0), NodeShape(1, 0)]


@pytest.mark.parametrize(
    ("shapes", "asked"),
    [
        (ONE_CPU_NODES, (1, 0)),  # the hang: it asked for the cluster's 2 CPUs in one task
        ([NodeShape(4, 0), NodeShape(64, 0)], (16, 0)),
        ([NodeShape(8, 0), NodeShape(4, 1)], (1, 1)),
        ([NodeShape(0, 0)], (1, 0)),  # a head without CPUs: one CPU, which an autoscaler adds
    ],
)
def test_pretraining_asks_for_what_the_largest_node_has(shapes, asked):
    assert pretrain_request(shapes) == asked


@pytest.fixture
def config(tmp_path, ud_dir):
    return load_config(tiny_config(tmp_path, ud_dir))


def test_the_tiny_study_fits_a_cluster_of_one_cpu_nodes(config):
    assert resource_problems(config, ONE_CPU_NODES) == []


def test_a_request_no_node_holds_names_its_field(config):
    extraction = dataclasses.replace(config.extraction, resources=Resources(num_cpus=2))
    probing = dataclasses.replace(config.probing, resources=Resources(num_gpus=1))
    problems = resource_problems(dataclasses.replace(config, extraction=extraction, probing=probing), ONE_CPU_NODES)
    assert [p.split(":")[0] for p in problems] == ["extraction.resources", "probing.resources"]
    assert "2 CPU(s)" in problems[0] and "1 GPU(s)" in problems[1] and "--wait-for-nodes" in problems[0]


def test_transfer_asks_for_a_gpu_only_where_a_node_has_one(config):
    assert resource_problems(config, [NodeShape(1, 0)]) == []
    assert resource_problems(config, [NodeShape(2, 1)]) == []


@pytest.mark.slow
def test_a_job_whose_tasks_no_node_holds_stops_at_start(ray_cluster, tmp_path, ud_dir, capsys):
    path = tiny_config(tmp_path, ud_dir, extraction={"batch_tokens": 4096, "resources": {"num_cpus": 3}})
    assert pipeline.main(["--config", str(path)]) == 2
    assert (
        "extraction.resources: one task asks for 3 CPU(s) and 0 GPU(s), which no node holds" in capsys.readouterr().err
    )
    assert not (tmp_path / "study" / "models").exists()  # no stage ran
