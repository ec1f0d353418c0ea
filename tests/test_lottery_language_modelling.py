"""The LM task trains each model on its own objective: next tokens for BLOOM, 15% masked tokens for BERT."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lottery.language_modelling import encode_texts, lm_objective, lm_scorer, load_lm_learner, mask_tokens, read_texts
from lottery.params import LotteryParams
from probing.models import load_fast_tokenizer
from transfer.examples import IGNORE_INDEX, Encoded, collate, subsample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert_dir):
    return load_fast_tokenizer(str(tiny_bert_dir), None)[0]


def test_each_model_type_gets_its_pretraining_objective(bert_tokenizer, tiny_bloom_dir):
    bloom_tokenizer = load_fast_tokenizer(str(tiny_bloom_dir), "step-a")[0]
    assert lm_objective("bloom", bloom_tokenizer) == "causal"
    assert lm_objective("bert", bert_tokenizer) == "masked"
    assert lm_objective("xlm-roberta", bert_tokenizer) == "masked"
    assert lm_objective("bert", bloom_tokenizer) == "causal"  # no mask token to train with
    with pytest.raises(ValueError, match="model type 'no-such-type'"):
        lm_objective("no-such-type", bloom_tokenizer)


def test_a_sampled_read_of_texts_keeps_the_texts_subsample_keeps(ud_dir):
    everything = read_texts(ud_dir, "fr", "train")
    assert read_texts(ud_dir, "fr", "train", 100, 5) == subsample(everything, 100, 5)
    assert read_texts(ud_dir, "fr", "train", None, 5) == everything


def test_masking_targets_a_share_of_real_non_special_tokens(bert_tokenizer, ud_dir):
    texts = read_texts(ud_dir, "en", "dev")[:200]
    batch = collate(encode_texts(bert_tokenizer, texts, 64), bert_tokenizer.pad_token_id)
    masked = mask_tokens(batch, bert_tokenizer, 0.15, torch.Generator().manual_seed(0))
    targets = masked["labels"] != IGNORE_INDEX
    special = torch.isin(batch["input_ids"], torch.tensor(bert_tokenizer.all_special_ids))
    eligible = batch["attention_mask"].bool() & ~special
    assert not (targets & ~eligible).any()
    assert targets.sum() / eligible.sum() == pytest.approx(0.15, abs=0.01)
    assert torch.equal(masked["labels"][targets], batch["input_ids"][targets])
    assert torch.equal(masked["input_ids"][~targets], batch["input_ids"][~targets])
    as_mask = masked["input_ids"][targets] == bert_tokenizer.mask_token_id
    assert as_mask.float().mean() == pytest.approx(0.8, abs=0.03)
    assert (masked["input_ids"][targets] == batch["input_ids"][targets]).float().mean() == pytest.approx(0.1, abs=0.03)


def test_a_tiny_batch_has_at_least_one_target(bert_tokenizer):
    batch = collate(encode_texts(bert_tokenizer, ["a"], 8), bert_tokenizer.pad_token_id)
    for seed in range(20):
        masked = mask_tokens(batch, bert_tokenizer, 0.15, torch.Generator().manual_seed(seed))
        assert int((masked["labels"] != IGNORE_INDEX).sum()) == 1


class CopyModel(torch.nn.Module):
    """Predicts at each position the token it reads there."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, **_):
        return SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids, self.vocab).float())


def test_causal_accuracy_scores_next_tokens_and_skips_padding():
    tokenizer = SimpleNamespace(pad_token_id=0)
    examples = [Encoded((1, 1, 2), (1, 1, 2)), Encoded((3, 3), (3, 3))]
    # targets: 1 after 1 (right), 2 after 1 (wrong), 3 after 3 (right); the pad after (3, 3) is no target
    score = lm_scorer(CopyModel(5), "causal", tokenizer, LotteryParams(batch_size=2))
    assert score(examples) == pytest.approx(2 / 3)


def test_masked_lm_scores_the_same_tokens_every_time(tiny_bert_dir, ud_dir):
    params = LotteryParams(batch_size=8)
    learner = load_lm_learner(str(tiny_bert_dir), None, params, "cpu")
    assert type(learner.model).__name__ == "BertForMaskedLM"
    dev = encode_texts(learner.tokenizer, read_texts(ud_dir, "en", "dev")[:40], learner.max_length)
    assert learner.score(dev) == learner.score(dev)
    first = learner.batch(dev[:8], step=3)
    assert torch.equal(first["labels"], learner.batch(dev[:8], step=3)["labels"])
    assert not torch.equal(first["labels"], learner.batch(dev[:8], step=4)["labels"])
