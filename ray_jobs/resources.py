"""What one task of the study asks Ray for, and whether some node of the cluster can hold it.

Ray places a task or actor on one node, so a request larger than every node waits forever: on a
cluster of 1-CPU nodes, pre-training asked for all the cluster's CPUs in one task and a submitted
study hung. Every request is therefore sized against the largest node (`node_shapes`, read from
``ray.nodes()``), and `resource_problems` lists the config's requests that no node can hold, so that
a job stops at start with the field to change instead of waiting. On a cluster whose autoscaler adds
nodes on demand (``cluster.yaml``), ``--wait-for-nodes`` skips that check.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_jobs.config import StudyConfig

#: The most threads one pre-training task uses (more gain nothing on a model of this size).
PRETRAIN_MAX_CPUS = 16


@dataclass(frozen=True)
class NodeShape:
    """The CPUs and GPUs of one node."""

    cpus: float
    gpus: float

    def holds(self, cpus: float, gpus: float) -> bool:
        return self.cpus >= cpus and self.gpus >= gpus


def node_shapes() -> list[NodeShape]:
    """The shapes of the cluster's live nodes (Ray must be initialised)."""
    import ray

    return [
        NodeShape(node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0))
        for node in ray.nodes()
        if node["Alive"]
    ]


def fits(cpus: float, gpus: float, shapes: list[NodeShape]) -> bool:
    """Whether some node can hold a task asking for ``cpus`` and ``gpus``."""
    return any(shape.holds(cpus, gpus) for shape in shapes)


def pretrain_request(shapes: list[NodeShape]) -> tuple[int, int]:
    """(CPUs, GPUs) of one pre-training task: a GPU and a CPU where a node has both, else the CPUs of the
    largest node (at most `PRETRAIN_MAX_CPUS`, at least 1)."""
    if fits(1, 1, shapes):
        return 1, 1
    largest = max((shape.cpus for shape in shapes), default=1.0)
    return max(1, int(min(largest, PRETRAIN_MAX_CPUS))), 0


def transfer_gpus(config: StudyConfig, shapes: list[NodeShape]) -> int:
    """A transfer trial asks for a GPU when the config allows it and a node has one next to its CPUs."""
    return int(config.transfer.use_gpu and fits(config.transfer.num_cpus, 1, shapes))


def requests(config: StudyConfig, shapes: list[NodeShape]) -> dict[str, tuple[float, float]]:
    """The (CPUs, GPUs) of one task of each kind the config sizes, by the config field that sizes it."""
    asked = {
        "extraction.resources": (config.extraction.resources.num_cpus, config.extraction.resources.num_gpus),
        "probing.resources": (config.probing.resources.num_cpus, config.probing.resources.num_gpus),
    }
    if config.transfer is not None:
        asked["transfer.num_cpus"] = (config.transfer.num_cpus, transfer_gpus(config, shapes))
    return asked


def resource_problems(config: StudyConfig, shapes: list[NodeShape]) -> list[str]:
    """A problem for each of the config's requests that no node of the cluster can hold."""
    nodes = ", ".join(f"{s.cpus:g} CPU/{s.gpus:g} GPU" for s in shapes) or "none"
    return [
        f"{field}: one task asks for {cpus:g} CPU(s) and {gpus:g} GPU(s), which no node holds (nodes: {nodes}); "
        "lower it, or pass --wait-for-nodes when an autoscaler adds larger nodes"
        for field, (cpus, gpus) in requests(config, shapes).items()
        if not fits(cpus, gpus, shapes)
    ]
