"""The lottery stage on a real local Ray cluster over real UD data and a tiny BLOOM: rounds and masks as the
schedule says, controls of the same size, sub-network transfer, overlaps, and resumption after lost rounds."""

from pathlib import Path

import duckdb
import pytest
import yaml

from analysis.database import create_database
from ray_jobs import lottery
from ray_jobs.config import load_config
from ray_jobs.context import StudyContext

pytestmark = pytest.mark.slow

PARAMS = {"steps_per_round": 3, "batch_size": 8, "max_train_examples": 48, "max_eval_examples": 24, "max_length": 48}


def lottery_config(tmp_path: Path, ud_dir: Path, model_dir: Path):
    path = tmp_path / "lottery.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "lottery",
                "ud_dir": str(ud_dir),
                "output_root": str(tmp_path / "study"),
                "languages": ["en", "fr", "ar"],  # ar has no UD train file: the lottery leaves it out
                "attributes": ["POS"],
                "layers": [1],
                "probing": {"k": 4},
                "models": [{"name": "tiny", "id": str(model_dir), "revisions": ["step-a", "step-b"]}],
                "lottery": {"tasks": ["pos", "lm"], "seeds": [0, 1], "params": PARAMS},
            }
        )
    )
    return load_config(path)


@pytest.fixture(scope="module")
def study(ray_cluster, tmp_path_factory, ud_dir, tiny_bloom_dir):
    config = lottery_config(tmp_path_factory.mktemp("lottery"), ud_dir, tiny_bloom_dir)
    context = StudyContext.open(config, sources={"tiny": str(tiny_bloom_dir)})
    result = lottery.run(context)
    con = duckdb.connect(str(create_database(context.store)), read_only=True)
    return config, context, result, con


def test_every_trial_runs_the_schedules_rounds_on_the_last_checkpoint(study):
    _, context, result, con = study
    assert not context.failure_rows()
    assert result.run == 2 * 2 * 2 + 2 * 2 + 1  # IMP trials, transfer trials, overlaps (no rankings: no survival)
    rounds = con.execute(
        "SELECT checkpoint, task, language, seed, list(round ORDER BY round), list(sparsity ORDER BY round) "
        "FROM lottery_rounds GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert len(rounds) == 8 and {r[0] for r in rounds} == {"step-b"} and {r[2] for r in rounds} == {"en", "fr"}
    for row in rounds:
        assert row[4] == list(range(9))
        assert row[5] == pytest.approx([0.1 * r for r in range(9)])


def test_masks_keep_the_schedules_count_and_the_controls_match_it(study):
    _, _, _, con = study
    kept = con.execute(
        "SELECT task, language, seed, sparsity, kind, sum(kept), sum(shape[1] * shape[2]) "
        "FROM masks WHERE kind <> 'resume' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert len(kept) == 8 * 2 * 3  # trials x sparsities x kinds
    for _, _, _, sparsity, _, n_kept, n_total in kept:
        assert n_total - n_kept == round(sparsity * n_total)
    per_tensor = con.execute(
        "SELECT count(*) FROM masks i JOIN masks r USING (model, checkpoint, task, language, seed, sparsity, tensor) "
        "WHERE i.kind = 'imp' AND r.kind = 'random' AND i.kept <> r.kept"
    ).fetchone()[0]
    assert per_tensor == 0  # the random control keeps each tensor's count


def test_overlaps_relate_imp_masks_and_controls_and_random_sits_at_chance(study):
    _, _, _, con = study
    rows = con.execute(
        "SELECT kind_b, count(*), avg(jaccard), avg(expected_jaccard) FROM mask_overlap_summary "
        "WHERE kind_a = 'imp' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    summary = {r[0]: r[1:] for r in rows}
    # per (checkpoint, task, sparsity): 4 IMP masks -> 6 pairs, and 4 of each control
    assert summary["imp"][0] == 2 * 2 * 6 and summary["one_shot"][0] == summary["random"][0] == 2 * 2 * 4
    assert summary["random"][1] == pytest.approx(summary["random"][2], abs=0.01)
    assert summary["one_shot"][1] > summary["random"][1]  # IMP after a few steps still resembles theta0's magnitudes
    drop = con.execute("SELECT count(*), count(relative_drop) FROM relative_drop").fetchone()
    assert drop == (2 * 2 * 2, 2 * 2 * 2)  # (task, sparsity, source) with a finite drop
    units = con.execute("SELECT kind, count(*) FROM subnetwork_transfer GROUP BY ALL ORDER BY ALL").fetchall()
    assert units == [("dense", 4), ("random", 8), ("subnetwork", 16)]


def test_a_rerun_does_nothing_and_lost_rounds_are_redone_identically(study):
    config, context, _, _ = study
    again = lottery.run(StudyContext.open(config, sources=context.sources))
    assert again.run == 0
    store = context.store
    trial = next(t for t in lottery.lottery_trials(config, context.sources) if t.task == "pos" and t.seed == 0)
    before = store.read("masks", path=trial.mask_path(store, "imp", 0.8)).column("checksum").to_pylist()
    for round_index in (7, 8):
        store.fs.delete_file(trial.round_path(store, round_index))
    store.fs.delete_file(trial.mask_path(store, "random", 0.8))
    assert lottery.finished_rounds(store, trial, 9) == 7
    lottery.run_lottery_trial(store, trial)
    assert lottery.finished_rounds(store, trial, 9) == 9 and lottery.lottery_done(store, trial)
    after = store.read("masks", path=trial.mask_path(store, "imp", 0.8)).column("checksum").to_pylist()
    assert after == before  # resumed from round 7's stored mask: the same sub-network
    store.fs.delete_file(trial.mask_path(store, "imp", 0.5))  # lost after its round: IMP is redone from round 0
    assert not lottery.lottery_done(store, trial) and lottery.resume_point(store, trial) == (0, None)
    lottery.run_lottery_trial(store, trial)
    assert lottery.lottery_done(store, trial)
    again = store.read("masks", path=trial.mask_path(store, "imp", 0.8)).column("checksum").to_pylist()
    assert again == before


def test_asking_for_lora_in_the_lottery_is_a_config_error(tmp_path, ud_dir, tiny_bloom_dir):
    path = tmp_path / "bad.yaml"
    config = yaml.safe_load(
        (lottery_config(tmp_path, ud_dir, tiny_bloom_dir) and (tmp_path / "lottery.yaml")).read_text()
    )
    config["lottery"]["params"]["method"] = "lora"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="LoRA and 4-bit weights cannot carry a mask"):
        load_config(path)
