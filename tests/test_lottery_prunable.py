"""Prunable weights are exactly the blocks' linear matrices, found from the module tree of each family."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2ForTokenClassification,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

from lottery.prunable import find_blocks, prunable_parameters, prunable_weights

BERT_MATRICES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
BLOOM_MATRICES = (
    "self_attention.query_key_value",
    "self_attention.dense",
    "mlp.dense_h_to_4h",
    "mlp.dense_4h_to_h",
)
GPT2_MATRICES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def expected(prefix: str, matrices: tuple[str, ...], layers: int) -> list[tuple[str, int]]:
    return [(f"{prefix}.{i}.{m}.weight", i + 1) for i in range(layers) for m in matrices]


def tiny_bert() -> torch.nn.Module:
    config = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32, num_labels=5
    )
    return BertForTokenClassification(config)


@pytest.mark.parametrize(
    ("build", "prefix", "matrices", "layers"),
    [
        (tiny_bert, "bert.encoder.layer", BERT_MATRICES, 3),
        (
            lambda: XLMRobertaForMaskedLM(
                XLMRobertaConfig(
                    vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
                )
            ),
            "roberta.encoder.layer",
            BERT_MATRICES,
            2,
        ),
        (
            lambda: BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=2, n_head=2)),
            "transformer.h",
            BLOOM_MATRICES,
            2,
        ),
        (
            lambda: GPT2ForTokenClassification(
                GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32, num_labels=3)
            ),
            "transformer.h",
            GPT2_MATRICES,
            2,
        ),
    ],
    ids=["bert", "xlm-roberta", "bloom", "gpt2"],
)
def test_exactly_the_block_matrices_are_prunable(build, prefix, matrices, layers):
    model = build()
    found = prunable_weights(model)
    assert [(w.name, w.layer) for w in found] == expected(prefix, matrices, layers)
    params = prunable_parameters(model)
    assert all(p.dim() == 2 for p in params.values())
    assert all(tuple(params[w.name].shape) == w.shape for w in found)
    never = ("embed", "LayerNorm", "layernorm", "ln_", "bias", "classifier", "lm_head", "pooler", "score")
    assert not [name for name in params if any(part in name for part in never)]


def test_the_block_list_is_found_without_the_head():
    name, blocks = find_blocks(tiny_bert())
    assert name == "bert.encoder.layer"
    assert len(blocks) == 3


def test_a_model_whose_depth_matches_no_module_list_is_an_error():
    model = tiny_bert()
    model.config.num_hidden_layers = 7
    with pytest.raises(ValueError, match="expected one ModuleList of 7 blocks, found none"):
        prunable_weights(model)
