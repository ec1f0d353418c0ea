"""The language-modelling task: the model's own objective on a language's UD text.

A model is trained as it was pre-trained: a masked LM where transformers has a masked-LM class for
its type and its tokenizer has a mask token (BERT, XLM-R), a causal LM otherwise (BLOOM, GPT-2).
The text is each UD sentence's surface text (``# text``), one example per sentence, cut to the
input length. Causal: every next token is a target (transformers shifts the labels). Masked: 15%
of the non-special tokens of a batch are targets (BERT's 80/10/10: [MASK], a random token, the
token unchanged), drawn from a generator seeded per optimizer step; at least one per batch.

The score (higher is better, an accuracy, so that relative drops are ratios of like quantities) is
the share of targets predicted exactly: next tokens for a causal LM, masked tokens for a masked LM,
the masked positions drawn by one fixed generator so every evaluation scores the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from lottery.learner import BatchFn, Learner, ScoreFn
from lottery.params import LotteryParams
from probing.bloom_gelu import use_lean_gelu
from probing.datasets import stable_seed
from probing.models import load_fast_tokenizer, model_max_length
from transfer.examples import IGNORE_INDEX, Encoded, collate
from transfer.pos_data import read_sentences, split_files

Objective = Literal["causal", "masked"]


def lm_objective(model_type: str, tokenizer: object) -> Objective:
    """The pre-training objective of a model type: masked where transformers has a masked LM and the
    tokenizer a mask token, else causal; ValueError when transformers has neither."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and getattr(tokenizer, "mask_token_id", None) is not None:
        return "masked"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise ValueError(f"model type {model_type!r}: transformers has no causal LM, and no masked LM with a mask token")


def read_texts(ud_dir: Path | str, language: str, split: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """The surface texts of a language's UD sentences in one split (train, dev or test), in file order: all of
    them, or a seeded subset of ``limit`` (`transfer.pos_data.read_sentences`)."""
    return [s.text for s in read_sentences(split_files(ud_dir, language, split), limit, seed)]


def encode_texts(tokenizer: object, texts: Sequence[str], max_length: int) -> list[Encoded]:
    """One example per text: its token ids (with the tokenizer's special tokens, cut to ``max_length``) as
    input and as labels."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [Encoded(tuple(ids), tuple(ids)) for ids in encoded]


def mask_tokens(
    batch: dict[str, torch.Tensor], tokenizer: object, probability: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """BERT's masking of a collated batch: targets are a ``probability`` share of the real non-special
    tokens (at least one), of which 80% become the mask token, 10% a random token, 10% stay."""
    ids = batch["input_ids"]
    eligible = batch["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = eligible & (torch.rand(ids.shape, generator=generator) < probability)
    if not chosen.any() and eligible.any():
        chosen.view(-1)[eligible.view(-1).nonzero()[0]] = True
    draw = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(len(tokenizer), ids.shape, generator=generator)
    masked_ids = torch.where(chosen & (draw < 0.8), tokenizer.mask_token_id, ids)
    masked_ids = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, masked_ids)
    return {**batch, "input_ids": masked_ids, "labels": torch.where(chosen, ids, IGNORE_INDEX)}


def lm_batches(objective: Objective, tokenizer: object, params: LotteryParams) -> BatchFn:
    """How a training batch is made: collated (causal), then masked with step-seeded draws (masked)."""
    pad = tokenizer.pad_token_id
    if objective == "causal":
        return lambda examples, step: collate(examples, pad)

    def masked(examples: Sequence[Encoded], step: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(stable_seed(params.seed, "mlm", step))
        return mask_tokens(collate(examples, pad), tokenizer, params.mlm_probability, generator)

    return masked


def lm_scorer(model: torch.nn.Module, objective: Objective, tokenizer: object, params: LotteryParams) -> ScoreFn:
    """The share of targets predicted exactly (next tokens, or tokens masked by one fixed generator)."""
    pad = tokenizer.pad_token_id

    @torch.inference_mode()
    def score(examples: Sequence[Encoded]) -> float:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(stable_seed(params.seed, "mlm", "score"))
        correct = total = 0
        for start in range(0, len(examples), params.batch_size):
            batch = collate(examples[start : start + params.batch_size], pad)
            if objective == "masked":
                batch = mask_tokens(batch, tokenizer, params.mlm_probability, generator)
            labels = batch.pop("labels").to(device)
            predicted = model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1)
            if objective == "causal":
                predicted, labels = predicted[:, :-1], labels[:, 1:]
            targets = labels != IGNORE_INDEX
            correct += int((predicted[targets] == labels[targets]).sum())
            total += int(targets.sum())
        model.train(was_training)
        if not total:
            raise ValueError("no token to predict in the examples (every text is a single token)")
        return correct / total

    return score


def load_lm_learner(model_source: str, revision: str | None, params: LotteryParams, device: str) -> Learner:
    """The checkpoint with its LM head for its own objective (a head the checkpoint lacks is initialised by
    the current torch seed), its fast tokenizer, batching and scoring."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    tokenizer, source, rev = load_fast_tokenizer(model_source, revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    objective = lm_objective(AutoConfig.from_pretrained(source, revision=rev).model_type, tokenizer)
    auto = AutoModelForMaskedLM if objective == "masked" else AutoModelForCausalLM
    model = auto.from_pretrained(source, revision=rev).to(device)
    use_lean_gelu(model)
    return Learner(
        model,
        tokenizer,
        min(params.max_length, model_max_length(model.config, tokenizer)),
        lm_batches(objective, tokenizer, params),
        lm_scorer(model, objective, tokenizer, params),
    )
