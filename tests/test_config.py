"""Study config: typed loading, path resolution, and every problem reported at once."""

import dataclasses
import os
import re
import shutil
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


# --- rejected before any Ray work (issue 14) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"output_root": "${XLING_NOT_SET_ANYWHERE}/study"}, "output_root: ${XLING_NOT_SET_ANYWHERE} is not set"),
        ({"ud_dir": "$XLING_NOT_SET_ANYWHERE/ud"}, "ud_dir: ${XLING_NOT_SET_ANYWHERE} is not set"),
        ({"languages": ["en", "../ud/fr"]}, "languages: '../ud/fr' is a path, not a language"),
        ({"data": {"seed": -1}}, "data.seed: must be at least 0, got -1"),
        ({"data": {"max_sentences_per_language": 0}}, "data.max_sentences_per_language: must be at least 1"),
        ({"probing": {"seeds": [0, -3]}}, "probing.seeds: every seed must be at least 0, got -3"),
        ({"probing": {"max_examples": -5}}, "probing.max_examples: must be at least 1, got -5"),
        ({"extraction": {"max_length": 0}}, "extraction.max_length: must be at least 2, got 0"),
        ({"transfer": {"pos": {"lr": -1.0, "lora_dropout": 1.5}}}, "transfer.pos: lr: must be at least 0"),
        ({"transfer": {"pos": {"max_train_examples": 0}}}, "transfer.pos: max_train_examples: must be at least 1"),
        (
            {"models": [{"name": "m", "pretrain": {"n_layer": 0, "hidden_size": -64, "seq_len": 1, "lr": 0}}]},
            "models[0].pretrain.n_layer: must be at least 1, got 0",
        ),
    ],
)
def test_absurd_values_and_unresolvable_paths_are_rejected_naming_the_field(tmp_path, overrides, expected):
    problems = config_problems(write_config(tmp_path, **overrides))
    assert any(p.startswith(expected) for p in problems), problems
    assert not (tmp_path / "${XLING_NOT_SET_ANYWHERE}").exists()


def test_an_output_root_that_is_a_file_or_cannot_be_created_is_rejected(tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert config_problems(write_config(tmp_path, output_root="a-file")) == [
        f"output_root: {tmp_path / 'a-file'} is a file"
    ]
    assert config_problems(write_config(tmp_path, output_root="a-file/study")) == [
        f"output_root: {tmp_path / 'a-file' / 'study'} cannot be created: {tmp_path / 'a-file'} is a file"
    ]
    load_config(write_config(tmp_path, output_root="not/yet/there"))
    assert not (tmp_path / "not").exists()  # checked, not created


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder; no read-only mount here")
def test_a_read_only_output_root_is_rejected(tmp_path):
    (tmp_path / "locked").mkdir(mode=0o555)
    assert config_problems(write_config(tmp_path, output_root="locked"))[0].startswith("output_root:")


def test_a_missing_or_truncated_local_model_is_named_before_anything_runs(tmp_path, tiny_bloom_dir):
    missing = config_problems(write_config(tmp_path, models=[{"name": "m", "id": str(tmp_path / "no-model")}]))
    assert missing == [f"models.m: the local model directory {tmp_path / 'no-model'} does not exist"]
    model = shutil.copytree(tiny_bloom_dir, tmp_path / "model")
    weights = model / "step-b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    models = [{"name": "m", "id": str(model), "revisions": ["step-a", "step-b", "step-c"]}]
    problems = config_problems(write_config(tmp_path, models=models))
    size = weights.stat().st_size
    assert problems[0] == f"models.m: step-b: model.safetensors: truncated ({size} bytes; its header says {size + 100})"
    assert problems[1].startswith("models.m: checkpoint 'step-c' of local model")


def test_malformed_xnli_files_stop_the_config_not_a_transfer_trial(tmp_path):
    xnli = tmp_path / "xnli"
    xnli.mkdir()
    (xnli / "dev-en.tsv").write_text("\ufeffa\tb\tneutral\nc\td\tentailment\n", encoding="utf-8")  # a BOM: accepted
    (xnli / "dev-fr.tsv").write_text("a\tb\tneutral\nc\td\n", encoding="utf-8")
    transfer = {"tasks": ["xnli"], "xnli_dir": str(xnli)}
    assert config_problems(write_config(tmp_path, transfer=transfer)) == [
        f"transfer.xnli_dir: {xnli / 'dev-fr.tsv'}:2: expected 3 tab-separated columns (premise, hypothesis, label); "
        "test-<lang>.tsv has no labels, and official XNLI-1.0 files with a header are read by read_xnli_official, "
        "found 2 columns"
    ]
    (xnli / "dev-fr.tsv").write_text("a\tb\tneutral\nc\td\tentailment\n", encoding="utf-8")
    assert load_config(write_config(tmp_path, transfer=transfer)).transfer.tasks == ("xnli",)


def test_a_broken_treebank_file_is_named_at_config_time(tmp_path, ud_dir):
    ud = tmp_path / "ud"
    shutil.copytree(ud_dir / "en", ud / "en")
    shutil.copytree(ud_dir / "fr", ud / "fr")
    (ud / "fr" / "extra.conllu").symlink_to(tmp_path / "gone.conllu")
    problems = config_problems(write_config(tmp_path, ud_dir=str(ud)))
    assert problems == [
        f"languages: {ud / 'fr' / 'extra.conllu'}: file: expected a CoNLL-U file, found a broken "
        f"symbolic link to {tmp_path / 'gone.conllu'}"
    ]
