"""The intervene stage: its config section, the saturation view against the rule, and (slow) a real sweep over a
tiny BLOOM's rankings of real UD words: the units and rows it writes, β chosen on dev, the cross-lingual matrix
beside the overlap, and a rerun that only redoes a lost unit, identically."""

from pathlib import Path

import duckdb
import pytest
import yaml

from analysis.database import create_database
from analysis.store import Store
from analysis.tables import rows_table
from probing.interventions import saturation_index
from ray_jobs import analyse, extract, intervene, prepare, probe
from ray_jobs.config import ConfigError, load_config
from ray_jobs.context import StudyContext


def study_yaml(tmp_path: Path, ud_dir: Path, model_dir: Path, **interventions) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "intervene",
                "ud_dir": str(ud_dir),
                "output_root": str(tmp_path / "study"),
                "languages": ["en", "fr"],
                "attributes": ["Number"],
                "layers": [1],
                "models": [{"name": "tiny", "id": str(model_dir), "revisions": ["step-b"]}],
                "data": {"max_sentences_per_language": 200, "min_examples_per_split": 5},
                "probing": {"methods": ["probeless", "random"], "k": 4, "k_grid": [1, 4]},
                "interventions": interventions,
            }
        )
    )
    return path


def test_the_section_validates_itself_and_against_the_study(tmp_path, ud_dir, tiny_bloom_dir):
    bad = {"interventions": ["erase"], "betas": [0], "k_grid": [0], "checkpoints": "first", "readout": "both"}
    with pytest.raises(ConfigError) as error:
        load_config(study_yaml(tmp_path, ud_dir, tiny_bloom_dir, **bad))
    problems = "\n".join(error.value.problems)
    for expected in (
        "interventions.interventions: unknown intervention 'erase'",
        "interventions.betas: one or more translation strengths above 0",
        "interventions.k_grid: every k must be at least 1",
        "interventions.checkpoints: expected one of last, all",
        "interventions.readout: expected one of auto, masked, causal",
    ):
        assert expected in problems
    with pytest.raises(ConfigError) as error:
        load_config(study_yaml(tmp_path, ud_dir, tiny_bloom_dir, layers=[2], methods=["linear"]))
    problems = "\n".join(error.value.problems)
    assert "interventions.layers: 2 is not one of the study's layers" in problems
    assert "interventions.methods: 'linear' is not one of the study's methods" in problems
    config = load_config(study_yaml(tmp_path, ud_dir, tiny_bloom_dir))
    assert config.interventions.betas == (8.0,) and config.interventions.interventions == ("ablation", "translation")


def test_saturation_view_follows_the_rule_of_the_python_function(tmp_path):
    curves = {
        "rising": [0.0, 0.1, 0.2, 0.4, 0.8],
        "flat_start": [0.0, 0.0, 0.2, 0.4, 0.41, 0.4],
        "sat": [0.1, 0.3, 0.31, 0.3],
    }
    rows = []
    for method, curve in curves.items():
        for k, clwv in enumerate(curve):
            n_clwv = round(100 * clwv)
            counts = {"n_correct": 100 - n_clwv, "n_clwv": n_clwv, "n_other_form": 0, "n_wrong_lemma": 0}
            rows.append(
                {
                    "source_language": "en",
                    "method": method,
                    "direction": "ttb",
                    "seed": 0,
                    "split": "test",
                    "intervention": "translation",
                    "beta": 8.0,
                    "readout": "causal",
                    "k": k * 10,
                    "d": 64,
                    "n_words": 100,
                    **counts,
                    "n_unknown": 0,
                    "n_unannotated": 0,
                    "flips": n_clwv,
                    "mean_delta_logp": 0.0,
                }
            )
    store = Store(tmp_path / "study")
    key = {"model": "m", "checkpoint": "c", "layer": 1, "language": "en", "attribute": "Number"}
    store.write(rows_table("interventions", rows), store.path("interventions", **key), "fp")
    with duckdb.connect(str(create_database(store)), read_only=True) as con:
        found = dict(con.execute("SELECT method, saturation_k FROM intervention_saturation").fetchall())
    for method, curve in curves.items():
        at = saturation_index(curve)
        assert found[method] == (None if at is None else at * 10), method


K_GRID = [8, 16, 32]  # d = 32; the cross-lingual k is the probing k, 4


@pytest.fixture(scope="module")
def intervened(ray_cluster, tmp_path_factory, ud_dir, tiny_bloom_dir):
    tmp_path = tmp_path_factory.mktemp("intervene")
    config = load_config(study_yaml(tmp_path, ud_dir, tiny_bloom_dir, k_grid=K_GRID, betas=[4, 8], max_words=30))
    context = StudyContext.open(config, sources={"tiny": str(tiny_bloom_dir)})
    for stage in (prepare, extract, probe, analyse):
        stage.run(context)
    result = intervene.run(context)
    con = duckdb.connect(str(create_database(context.store)), read_only=True)
    return config, context, result, con


@pytest.mark.slow
def test_each_trial_writes_its_dev_test_and_cross_lingual_units(intervened):
    _, context, result, con = intervened
    assert not context.failure_rows() and result.run == 2 and result.reused == 0
    units = con.execute(
        "SELECT language, split, source_language, method, direction, "
        "list(DISTINCT intervention ORDER BY intervention), "
        "list(DISTINCT k ORDER BY k), list(DISTINCT beta ORDER BY beta), min(readout), min(n_words) "
        "FROM interventions GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    own_ks, both = [0, 4, *K_GRID], ["ablation", "translation"]
    for language, other in (("en", "fr"), ("fr", "en")):
        mine = [u[1:9] for u in units if u[0] == language]
        chosen = next(u[6] for u in mine if u[:4] == ("test", language, "probeless", "ttb"))
        assert chosen in ([0.0, 4.0], [0.0, 8.0])  # ablation rows carry beta 0, translation the chosen beta
        assert mine == sorted(
            [
                ("dev", language, "probeless", "ttb", ["translation"], own_ks, [4.0, 8.0], "causal"),
                ("dev", language, "random", "ttb", ["translation"], own_ks, [4.0, 8.0], "causal"),
                ("test", other, "probeless", "ttb", both, [4], chosen, "causal"),
                ("test", language, "probeless", "btt", both, own_ks, chosen, "causal"),
                ("test", language, "probeless", "ttb", both, own_ks, chosen, "causal"),
                ("test", language, "random", "ttb", both, own_ks, chosen, "causal"),
            ]
        )
    assert min(u[9] for u in units) > 0
    unedited = con.execute("SELECT max(flips), max(abs(mean_delta_logp)) FROM interventions WHERE k = 0").fetchone()
    assert unedited == (0, 0.0)
    moved = con.execute("SELECT max(flips) FROM interventions WHERE k = 32 AND intervention = 'ablation'").fetchone()
    assert moved[0] > 0  # zeroing the whole layer at every noun changes some next words


@pytest.mark.slow
def test_the_views_give_saturation_and_the_cross_lingual_matrix_beside_the_overlap(intervened):
    _, _, _, con = intervened
    saturation = con.execute("SELECT count(*), count(DISTINCT language) FROM intervention_saturation").fetchone()
    assert saturation == (2 * (2 * 2 + 3 * 2), 2)  # per language: 2 rankings x 2 betas on dev, 3 x 2 on test
    matrix = con.execute(
        "SELECT source_language, target_language, intervention, overlap_rate, own_flip_rate IS NOT NULL, "
        "random_flip_rate IS NOT NULL FROM causal_overlap WHERE method = 'probeless' ORDER BY ALL"
    ).fetchall()
    assert [m[:3] for m in matrix] == [
        (a, b, i) for a, b in (("en", "fr"), ("fr", "en")) for i in ("ablation", "translation")
    ]
    assert all(m[3] is not None and m[4] and m[5] for m in matrix)


@pytest.mark.slow
def test_a_rerun_does_nothing_and_a_lost_unit_is_redone_identically(intervened):
    config, context, _, _ = intervened
    again = intervene.run(StudyContext.open(config, sources=context.sources))
    assert again.run == 0 and again.reused == 2
    store = context.store
    trial = intervene.intervention_trials(config, store, context.sources, context.data_fps)[0]
    unit = next(u for u in trial.units() if u.split == "test" and u.direction == "btt")
    path = trial.unit_path(store, unit)
    before = store.read("interventions", path=path)
    store.fs.delete_file(path)
    assert not trial.is_done(store)
    intervene.run_intervention_trial(store, trial)
    assert trial.is_done(store) and store.read("interventions", path=path).equals(before)


@pytest.mark.slow
def test_the_report_shows_the_curves_the_causal_matrix_and_the_ablation_against_translation(intervened):
    import matplotlib.image

    from ray_jobs.report import write_report

    config, context, _, _ = intervened
    index = Path(write_report(config, context.store, []))
    html = index.read_text(encoding="utf-8")
    assert "Interventions: are the top neurons used?" in html and "Ablation against translation" in html
    images = {p.name: p for p in index.parent.glob("*.png") if p.name.startswith(("interventions-", "causal-"))}
    assert sorted(images) == ["causal-overlap-tiny-step-b-1-Number.png", "interventions-tiny-step-b-1-Number.png"]
    for name, image in images.items():
        assert name in html and matplotlib.image.imread(image).std() > 0.02
    assert "Cross-lingual causal effect against overlap" in html
