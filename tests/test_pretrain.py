"""Pre-training the offline model: log-spaced checkpoints loadable as revisions, resumable exactly."""

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from probing import pretrain as pretrain_module
from probing.models import load_model
from probing.pretrain import PretrainParams, checkpoint_steps, learning_rate, pretrain, step_name
from tests.conftest import ud_texts

PARAMS = PretrainParams(
    n_layer=2,
    hidden_size=32,
    n_head=4,
    vocab_size=300,
    seq_len=16,
    batch_size=8,
    steps=30,
    warmup_steps=2,
    checkpoints=3,
    lr=5e-3,
)


def test_checkpoint_steps_are_log_spaced_from_zero():
    assert checkpoint_steps(1200, 5) == [0, 44, 133, 400, 1200]
    assert checkpoint_steps(30, 3) == [0, 10, 30]
    assert checkpoint_steps(50, 1) == [50]


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    assert learning_rate(0, PARAMS) == pytest.approx(PARAMS.lr / 2)
    assert learning_rate(1, PARAMS) == pytest.approx(PARAMS.lr)
    assert learning_rate(PARAMS.steps, PARAMS) == pytest.approx(PARAMS.lr * 0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ud_dir):
    texts = ud_texts(ud_dir, ["en", "es"], 150)
    run_dir = pretrain(texts, PARAMS, tmp_path_factory.mktemp("pretrain") / "run")
    return texts, run_dir


def test_checkpoints_are_model_directories_and_loss_falls(trained):
    _, run_dir = trained
    for step in checkpoint_steps(PARAMS.steps, PARAMS.checkpoints):
        loaded = load_model(str(run_dir), step_name(step))
        assert loaded.num_layers == 2 and loaded.hidden_size == 32
    log = pq.read_table(run_dir / "loss.parquet").to_pandas()
    assert list(log["step"]) == list(range(PARAMS.steps + 1))
    heldout = log.dropna(subset=["heldout_loss"]).set_index("step")["heldout_loss"]
    assert list(heldout.index) == [0, 10, 30]
    assert heldout[30] < heldout[0] - 0.5
    assert np.log(300) - 1 < heldout[0] < np.log(300) + 1  # random init: about uniform over the vocabulary


def test_rerun_is_a_no_op_and_a_resumed_run_equals_an_uninterrupted_one(trained, tmp_path):
    texts, run_dir = trained
    final = run_dir / step_name(PARAMS.steps) / "model.safetensors"
    before = final.stat().st_mtime_ns
    pretrain(texts, PARAMS, run_dir)
    assert final.stat().st_mtime_ns == before

    crashed = tmp_path / "crashed"
    shutil.copytree(run_dir, crashed, ignore=shutil.ignore_patterns(step_name(PARAMS.steps), "loss.parquet"))
    pq.write_table(pq.read_table(run_dir / "loss.parquet").slice(0, 11), crashed / "loss.partial.parquet")
    pretrain(texts, PARAMS, crashed)
    resumed = load_file(crashed / step_name(PARAMS.steps) / "model.safetensors")
    reference = load_file(final)
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
    assert pq.read_table(crashed / "loss.parquet").num_rows == PARAMS.steps + 1


@pytest.mark.parametrize("killed_at", [0, 10])
def test_a_run_killed_just_after_a_checkpoint_resumes_with_every_loss_row(trained, tmp_path, monkeypatch, killed_at):
    """The driver can die between a checkpoint and whatever follows it: the resumed log still has every step."""
    texts, run_dir = trained
    save = pretrain_module._save_checkpoint

    def save_then_die(directory, step, *args):
        save(directory, step, *args)
        if step == killed_at:
            raise SystemExit("killed")

    monkeypatch.setattr(pretrain_module, "_save_checkpoint", save_then_die)
    with pytest.raises(SystemExit):
        pretrain(texts, PARAMS, tmp_path / "killed")
    monkeypatch.setattr(pretrain_module, "_save_checkpoint", save)
    pretrain(texts, PARAMS, tmp_path / "killed")
    resumed = pq.read_table(tmp_path / "killed" / "loss.parquet").to_pandas().drop(columns="seconds")
    pd.testing.assert_frame_equal(resumed, pq.read_table(run_dir / "loss.parquet").to_pandas().drop(columns="seconds"))
