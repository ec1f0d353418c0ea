"""cluster.yaml: a valid Ray autoscaler config with GPU workers that installs the project."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_against_rays_autoscaler_schema():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    for name, node in types.items():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"], name
    gpu_types = [n for n in types.values() if n["node_config"]["InstanceType"].startswith(("g5", "g6", "p4", "p5"))]
    assert gpu_types and all(n["max_workers"] > 0 for n in gpu_types)
    assert any("install.sh" in command for command in config["setup_commands"])
    assert "." in config["file_mounts"].values()
