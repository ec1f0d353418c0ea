"""The Ray Tune probe sweep on a real local cluster: the expected rows, a dataset that cannot be probed
recorded without stopping the sweep, identical rankings for the same seed, a rerun that does no work, and a
config change that redoes only what it affects."""

import dataclasses
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from analysis.store import Store
from ray_jobs import extract, prepare, probe
from ray_jobs.config import load_config
from ray_jobs.context import StudyContext

pytestmark = pytest.mark.slow
K_GRID = [1, 5, 10, 30]  # d = 32


def sweep_config(tmp_path: Path, ud_dir: Path, model_dir: Path, name: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "ud_dir": str(ud_dir),
                "output_root": str(tmp_path / name),
                "languages": ["en", "vi"],
                "attributes": ["Number", "POS"],
                "layers": [2],
                "models": [{"name": "tiny", "id": str(model_dir), "revisions": ["step-b"]}],
                "data": {"max_sentences_per_language": 300, "min_examples_per_split": 5},
                "probing": {
                    "methods": ["probeless", "gaussian", "random"],
                    "k": 8,
                    "k_grid": K_GRID,
                    "params": {"gaussian": {"chunk_size": 8}},
                },
            }
        )
    )
    return load_config(path)


@pytest.fixture(scope="module")
def swept(ray_cluster, tmp_path_factory, ud_dir, tiny_bloom_dir):
    tmp_path = tmp_path_factory.mktemp("sweep")
    config = sweep_config(tmp_path, ud_dir, tiny_bloom_dir, "sweep")
    sources = {"tiny": str(tiny_bloom_dir)}
    context = StudyContext.open(config, sources)
    prepare.run(context)
    extract.run(context)
    result = probe.run(context)
    return config, sources, context.data_fps, result, context.failure_rows()


def probe_again(config, sources):
    """Prepare, extract and probe ``config`` in a fresh context; its stage results and its failure rows."""
    context = StudyContext.open(config, sources)
    results = [stage.run(context) for stage in (prepare, extract, probe)]
    return (*results, context.failure_rows())


def test_sweep_writes_one_ranking_per_trial_and_metrics_per_classifier_and_k(swept):
    config, _, _, result, failures = swept
    assert not failures
    # 2 languages x 2 attributes x 3 methods; Vietnamese has no Number, so its 3 trials cannot probe
    assert result.run == 2 * 2 * 3 and result.reused == 0 and result.no_data == 3
    con = duckdb.connect()
    root = config.output_root
    rankings = con.execute(
        f"SELECT language, attribute, method, direction, len(ranking), n_greedy FROM read_parquet("
        f"'{root}/rankings/*/*/*/*/*/*/*.parquet', hive_partitioning = true) ORDER BY ALL"
    ).fetchall()
    # probeless and gaussian have a bottom-to-top reverse; random has not
    methods = (("gaussian", "btt"), ("gaussian", "ttb"), ("probeless", "btt"), ("probeless", "ttb"), ("random", "ttb"))
    assert [r[:4] for r in rankings] == [
        (lang, attribute, m, d)
        for lang, attribute in (("en", "Number"), ("en", "POS"), ("vi", "POS"))
        for m, d in methods
    ]
    assert all(r[4] == 32 for r in rankings)
    random_orders = con.execute(
        f"SELECT ranking FROM read_parquet('{root}/rankings/*/*/*/*/*/*/*.parquet', hive_partitioning = true) "
        "WHERE method = 'random'"
    ).fetchall()
    assert len(random_orders) == 3 and len({tuple(r[0]) for r in random_orders}) == 3  # seeded per trial key
    assert {r[5] for r in rankings if r[2] == "gaussian" and r[3] == "ttb"} == {8}
    metrics = con.execute(
        f"SELECT count(*), count(DISTINCT k), min(accuracy) >= 0, max(accuracy) <= 1 FROM read_parquet("
        f"'{root}/probe_metrics/*/*/*/*/*/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert metrics == (3 * 5 * 2 * len(K_GRID), len(K_GRID), True, True)  # rankings x classifiers x k
    cannot = con.execute(f"SELECT key, error FROM read_parquet('{root}/failures/*/trial-*.parquet')").fetchall()
    assert len(cannot) == 3
    assert all("language=vi/attribute=Number" in key and "not annotated" in error for key, error in cannot)


def test_a_rerun_does_no_work_and_the_same_seed_gives_the_same_ranking(swept, tmp_path, ud_dir, tiny_bloom_dir):
    config, sources, _, _, _ = swept
    again = probe.run(StudyContext.open(config, sources))
    assert again.run == 0 and again.reused == 2 * 2 * 3 and again.no_data == 0

    other = sweep_config(tmp_path, ud_dir, tiny_bloom_dir, "other")
    probe_again(other, sources)
    key = {
        "model": "tiny",
        "checkpoint": "step-b",
        "layer": 2,
        "language": "en",
        "attribute": "Number",
        "method": "gaussian",
    }
    first = pq.read_table(Store(config.output_root).path("rankings", part="seed-0", **key))
    second = pq.read_table(Store(other.output_root).path("rankings", part="seed-0", **key))
    assert first.column("ranking").to_pylist() == second.column("ranking").to_pylist()


def test_a_new_attribute_probes_only_it_and_a_new_split_reprobes_without_re_extracting(swept):
    config, sources, _, _, _ = swept
    with_gender = dataclasses.replace(config, attributes=(*config.attributes, "Gender"))
    prepared, extracted, added, failures = probe_again(with_gender, sources)
    assert prepared.run == 2  # the dataset statistics cover the new attribute
    assert extracted.run == 0
    assert (added.run, added.reused) == (2 * 3, 2 * 2 * 3)  # only Gender's trials, in both languages
    assert not failures

    resplit = dataclasses.replace(config, data=dataclasses.replace(config.data, min_examples_per_split=6))
    prepared, extracted, redone, failures = probe_again(resplit, sources)
    assert prepared.run == 2
    assert extracted.run == 0  # the same sentences: activations kept
    assert (redone.run, redone.reused) == (2 * 2 * 3, 0)  # every dataset changed, so every trial reruns
    assert not failures


def test_k_fraction_and_greedy_depth_reach_the_trial_and_its_stored_row(swept):
    """k = round(0.25 · 32) = 8 stored per ranking; k_grid_max orders greedily up to the grid's maximum (30)."""
    config, sources, data_fps, _, _ = swept
    probing = dataclasses.replace(config.probing, k_fraction=0.25, greedy_depth="k_grid_max")
    changed = dataclasses.replace(config, probing=probing)
    trial = next(
        t
        for t in probe.probe_trials(changed, sources, data_fps)
        if t.language == "en" and t.attribute == "Number" and t.method == "gaussian"
    )
    store = Store(config.output_root)
    assert probe.run_partition(store, [trial])[0]["status"] == "ok"
    rows = pq.read_table(trial.paths(store).rankings).to_pylist()
    assert {(r["direction"], r["k"], r["n_greedy"]) for r in rows} == {
        ("ttb", 8, 30),
        ("btt", 8, 0),
    }  # a reverse is not greedy


def test_a_probe_trial_computes_on_cuda_exactly_when_its_resources_ask_for_a_gpu():
    assert probe.actor_device(1, cuda_available=True, section="probing") == "cuda"
    assert probe.actor_device(0, cuda_available=True, section="probing") == "cpu"
    with pytest.raises(RuntimeError, match=r"probing\.resources\.num_gpus is 1 but torch sees no CUDA device"):
        probe.actor_device(1, cuda_available=False, section="probing")
