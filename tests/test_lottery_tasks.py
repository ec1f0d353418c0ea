"""Lottery tasks read each language's own data, XNLI without cross-language leakage, and seed θ₀'s head."""

from __future__ import annotations

import pytest
import torch

from lottery.learner import Learner
from lottery.params import LotteryParams
from lottery.tasks import TASKS, languages_with_ud_splits, load_learner, xnli_rows
from tests.conftest import XNLI_DIR
from transfer.examples import IGNORE_INDEX
from transfer.pos_data import UPOS_TAGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ud_tasks_take_the_languages_with_train_dev_and_test_files(ud_dir):
    assert languages_with_ud_splits(ud_dir, ["de", "en", "ar", "fr", "hi", "zh"]) == ["en", "fr", "hi"]
    assert TASKS["pos"].languages is TASKS["lm"].languages


def test_an_unknown_task_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown lottery task 'ner'; known: lm, pos, xnli"):
        TASKS["ner"]


def test_xnli_splits_by_premise_on_the_same_rows_in_every_language():
    params = LotteryParams(max_train_examples=400, max_eval_examples=100)
    english, french = xnli_rows(XNLI_DIR, "en", params), xnli_rows(XNLI_DIR, "fr", params)
    premises = {split: {p.premise for p in pairs} for split, pairs in english.items()}
    assert not premises["train"] & premises["test"]
    assert not premises["train"] & premises["dev"]
    assert not premises["dev"] & premises["test"]
    assert [len(english[s]) for s in ("train", "dev", "test")] == [400, 100, 100]
    for split in english:
        assert [p.label for p in english[split]] == [p.label for p in french[split]]
        assert [p.line for p in english[split]] == [p.line for p in french[split]]
    assert {p.premise for p in french["train"]}.isdisjoint({p.premise for p in french["test"]})


def test_pos_reads_the_languages_own_splits_with_seeded_caps(tiny_bloom_dir, ud_dir):
    params = LotteryParams(max_train_examples=50, max_eval_examples=20)
    learner = load_learner(TASKS["pos"], str(tiny_bloom_dir), "step-a", params, "cpu")
    data = TASKS["pos"].read(ud_dir, "fr", learner, params)
    assert [len(data.train), len(data.dev), len(data.test)] == [50, 20, 20]
    labels = [label for e in data.train for label in e.labels if label != IGNORE_INDEX]
    assert set(labels) <= set(range(len(UPOS_TAGS)))
    again = TASKS["pos"].read(ud_dir, "fr", learner, params)
    assert again == data


def state(learner: Learner) -> dict[str, torch.Tensor]:
    return learner.model.state_dict()


def test_the_head_of_theta_0_is_initialised_from_the_seed(tiny_bloom_dir):
    load = lambda seed: load_learner(TASKS["pos"], str(tiny_bloom_dir), "step-a", LotteryParams(seed=seed), "cpu")  # noqa: E731
    first, again, other = state(load(0)), state(load(0)), state(load(1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    head = [k for k in first if not k.startswith("transformer.")]  # classifier.weight, .bias
    assert not torch.equal(first["classifier.weight"], other["classifier.weight"])
    assert all(torch.equal(first[k], other[k]) for k in first if k not in head)
