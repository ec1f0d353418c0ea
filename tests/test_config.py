"""Study config: typed loading, path resolution, and every problem reported at once."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from probing.datasets import DataParams
from probing.evaluation import CLASSIFIERS
from probing.extraction import ExtractionParams
from probing.pretrain import PretrainParams
from probing.rankers import RANKERS
from probing.validation import InvalidParams
from ray_jobs.config import (
    ConfigError,
    ExtractionConfig,
    ModelSpec,
    ProbingConfig,
    Resources,
    TransferConfig,
    device_map_problems,
    load_config,
    model_revisions,
)

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, **overrides) -> Path:
    config = {
        "name": "t",
        "ud_dir": str(REPO.parent / "shared" / "data" / "ud"),
        "output_root": "out",
        "languages": ["en", "fr"],
        "attributes": ["POS", "Number"],
        "layers": [1, 2],
        "models": [{"name": "m", "pretrain": {"n_layer": 2, "hidden_size": 64, "n_head": 4, "steps": 10}}],
    }
    config.update(overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_valid_config_loads_typed_and_resolves_paths(tmp_path):
    config = load_config(
        write_config(
            tmp_path,
            probing={"k": 20, "methods": ["linear"], "seeds": [0, 1]},
            data={"split_fractions": [0.7, 0.15, 0.15]},
        )
    )
    assert config.layers == (1, 2) and config.probing.seeds == (0, 1) and config.probing.k == 20
    assert config.output_root == str(tmp_path / "out")
    assert config.data.split_fractions == (0.7, 0.15, 0.15)
    assert config.models[0].pretrain.hidden_size == 64
    # default: 5 checkpoints, step 0 then spaced by a factor of ~3 up to the last step
    assert model_revisions(config.models[0]) == tuple(f"step-{s:06d}" for s in (0, 1, 2, 5, 10))


def test_command_line_overrides_take_precedence(tmp_path):
    config = load_config(write_config(tmp_path), output_root="/tmp/elsewhere")
    assert config.output_root == "/tmp/elsewhere"


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_config(
        tmp_path,
        languages=["en", "xx"],
        attributes=["Number", "Numbr"],
        layers=[1, 9],
        probing={"k": 100, "methods": ["linear", "magic"]},
        extraction={"dtype": "int8"},
        colour="blue",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert "unknown language 'xx'" in problems
    assert "unknown attribute 'Numbr'" in problems
    assert "layer 9 is beyond model 'm' (2 layers" in problems
    assert "probing.k: 100 is larger than the hidden size 64" in problems
    assert "unknown method 'magic'" in problems
    assert "extraction.dtype: expected float32 or float16" in problems
    assert "colour: unknown key" in problems
    assert len(err.value.problems) == 7


def test_missing_ud_dir_and_wrong_types(tmp_path):
    path = write_config(tmp_path, ud_dir=str(tmp_path / "nowhere"), layers=[1, "two"], probing={"k": "fifty"})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert "ud_dir:" in problems and "is not a directory" in problems
    assert "layers[1]: expected int, got str 'two'" in problems
    assert "probing.k: expected int, got str 'fifty'" in problems


def test_model_specs_need_exactly_one_source_and_unique_names(tmp_path):
    path = write_config(
        tmp_path, models=[{"name": "a"}, {"name": "a", "id": "x", "pretrain": {}}, {"name": "b/c", "id": "bert"}]
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, check_models=False)
    problems = "\n".join(err.value.problems)
    assert problems.count("exactly one of 'id'") == 2
    assert "name 'a' is used twice" in problems
    assert "name must be non-empty without '/'" in problems


def test_local_model_is_checked_against_its_own_config(tmp_path, tiny_bloom_dir):
    path = write_config(
        tmp_path,
        layers=[3],
        probing={"k": 33},
        models=[{"name": "t", "id": str(tiny_bloom_dir), "revisions": ["step-a", "step-b"]}],
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "layer 3 is beyond model 't' (2 layers" in str(err.value)
    assert "k: 33 is larger than the hidden size 32" in str(err.value)


def test_extends_merges_a_base_config_key_by_key(tmp_path):
    base = write_config(tmp_path, probing={"k": 20, "methods": ["linear", "probeless"]})
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": base.name, "name": "child", "probing": {"k": 10}, "layers": [1]}))
    config = load_config(child)
    assert config.name == "child" and config.layers == (1,)
    assert config.probing.k == 10 and config.probing.methods == ("linear", "probeless")
    assert config.output_root == str(tmp_path / "out")
    loop = tmp_path / "loop.yaml"
    loop.write_text(yaml.safe_dump({"extends": "loop.yaml"}))
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(loop)


def test_unreadable_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [en\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_shipped_configs_are_valid(ud_dir):
    for name in ("tiny.yaml", "demo.yaml", "demo-xnli.yaml"):
        load_config(REPO / "configs" / name)
    dynamics = load_config(REPO / "configs" / "bloom-dynamics.yaml", ud_dir=str(ud_dir), check_models=False)
    # paper 002 reads hidden_states[L - 1] for its "layer L": its layers 13 and 17 are 12 and 16 here
    assert dynamics.layers == (12, 16) and [len(m.revisions) for m in dynamics.models] == [6, 8, 4]
    assert dynamics.output_root.startswith("s3://")
    pitfalls = load_config(REPO / "configs" / "mbert-pitfalls.yaml", ud_dir=str(ud_dir), check_models=False)
    assert pitfalls.layers == (2, 7, 12) and pitfalls.probing.k == 100


def test_compute_dtype_auto_is_bfloat16_with_a_gpu_and_float32_without(tmp_path):
    cpu = load_config(write_config(tmp_path))
    assert cpu.extraction.compute_dtype == "auto" and cpu.extraction.params.compute_dtype == "float32"
    assert not cpu.extraction.overlap  # the background tokenizer only pays with an accelerator
    gpu = load_config(write_config(tmp_path, extraction={"resources": {"num_gpus": 1}}))
    assert gpu.extraction.params.compute_dtype == "bfloat16" and gpu.extraction.overlap
    explicit = load_config(write_config(tmp_path, extraction={"compute_dtype": "bfloat16", "dtype": "float16"}))
    assert explicit.extraction.params.compute_dtype == "bfloat16"  # on CPU only when asked for
    assert explicit.extraction.params.dtype == "float16"
    forced = load_config(write_config(tmp_path, extraction={"overlap_tokenization": True}))
    assert forced.extraction.overlap


def config_problems(path: Path) -> list[str]:
    """The problems load_config reports for a config that must be rejected."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


def test_bad_compute_dtype_and_device_map_on_cpu_are_config_errors(tmp_path):
    reported = config_problems(write_config(tmp_path, extraction={"compute_dtype": "fp8", "device_map": "balanced"}))
    problems = "\n".join(reported)
    assert "extraction.compute_dtype: expected auto, float32, bfloat16, float16, got 'fp8'" in problems
    assert "extraction.device_map: expected null or auto, got 'balanced'" in problems
    assert "extraction.device_map: spreads a checkpoint over GPUs, but extraction.resources.num_gpus is 0" in problems
    assert len(reported) == 3


def test_device_map_needs_accelerate_and_gpus():
    assert device_map_problems(None, 0, accelerate_installed=False) == []
    assert device_map_problems("auto", 2, accelerate_installed=True) == []
    [missing] = device_map_problems("auto", 2, accelerate_installed=False)
    assert "needs the 'accelerate' package, which is not installed" in missing
    assert len(device_map_problems("auto", 0, accelerate_installed=False)) == 2


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DataParams(split="random"), "split"),
        (lambda: DataParams(split_fractions=(0.5, 0.5, 0.5)), "split_fractions"),
        (lambda: PretrainParams(hidden_size=65, n_head=4), "hidden_size"),
        (lambda: PretrainParams(checkpoints=0), "checkpoints"),
        (lambda: ExtractionParams(dtype="int8"), "dtype"),
        (lambda: ExtractionParams(batch_tokens=0), "batch_tokens"),
        (lambda: Resources(num_gpus=-1), "num_gpus"),
        (lambda: ModelSpec(name="m"), "id"),
        (lambda: ModelSpec(name="a/b", id="x"), "name"),
        (lambda: ExtractionConfig(workers=0), "workers"),
        (lambda: ExtractionConfig(compute_dtype="fp8"), "compute_dtype"),
        (lambda: ProbingConfig(k=0), "k"),
        (lambda: ProbingConfig(classifiers=("svm",)), "classifiers"),
        (lambda: ProbingConfig(methods=("linear",), params={"latent": {}}), "params.latent"),
        (lambda: TransferConfig(tasks=("qa",)), "tasks"),
        (lambda: TransferConfig(pos={"epochs": 0}), "pos"),
    ],
)
def test_each_section_rejects_a_bad_value_naming_its_field(make, field):
    with pytest.raises(ValueError, match="^" + re.escape(field) + ": "):
        make()


def test_a_section_lists_all_its_problems_at_once():
    with pytest.raises(InvalidParams) as err:
        DataParams(split="random", min_types_per_value=0)
    assert err.value.fields == {"split", "min_types_per_value"}
    assert "split: expected one of lemma, ud, got 'random'" in str(err.value)


def test_methods_and_classifiers_are_read_from_the_registries(tmp_path):
    problems = "\n".join(config_problems(write_config(tmp_path, probing={"classifiers": ["svm"]})))
    assert f"probing.classifiers: unknown classifier 'svm' (known: {', '.join(CLASSIFIERS)})" in problems
    config = load_config(write_config(tmp_path, probing={"methods": list(RANKERS), "classifiers": list(CLASSIFIERS)}))
    assert config.probing.methods == tuple(RANKERS)


def test_a_section_with_unreadable_values_is_not_judged_on_its_stand_ins(tmp_path):
    """A pre-training section whose n_layer is not a number: its type is the one problem, not a model without source."""
    models = [{"name": "m", "pretrain": {"n_layer": "two"}}]
    assert config_problems(write_config(tmp_path, models=models)) == [
        "models[0].pretrain.n_layer: expected int, got str 'two'"
    ]


def test_nested_problems_carry_their_yaml_path(tmp_path):
    models = [{"name": "m", "pretrain": {"hidden_size": 64, "n_head": 3, "steps": 0}}]
    problems = config_problems(write_config(tmp_path, models=models, extraction={"batch_tokens": 0, "workers": 0}))
    assert sorted(problems) == [
        "extraction.batch_tokens: must be at least 1, got 0",
        "extraction.workers: must be at least 1, got 0",
        "models[0].pretrain.hidden_size: 64 is not divisible by n_head 3",
        "models[0].pretrain.steps: must be at least 1, got 0",
    ]


@pytest.mark.parametrize("name", ["tiny.yaml", "demo.yaml"])
def test_the_flat_extraction_section_fills_the_params_hashed_into_activations(name):
    """The activations' fingerprint hashes these exact fields and values (unchanged by issue 9's reshape)."""
    section = yaml.safe_load((REPO / "configs" / name).read_text())["extraction"]
    config = load_config(REPO / "configs" / name, check_models=False)
    assert dataclasses.asdict(config.extraction.params) == {
        "batch_tokens": section.get("batch_tokens", 8192),
        "dtype": section.get("dtype", "float32"),
        "max_length": section.get("max_length"),
        "compute_dtype": "float32",
    }
    assert config.extraction.workers == section.get("workers", 1)
