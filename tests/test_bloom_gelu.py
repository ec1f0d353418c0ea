"""The lean BLOOM GELU gives transformers' values and gradients bit for bit, alone and inside a model."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BloomConfig, BloomForCausalLM
from transformers.models.bloom.modeling_bloom import BloomGelu, bloom_gelu_back, bloom_gelu_forward

from probing.bloom_gelu import LeanBloomGelu, gelu_backward, gelu_forward, use_lean_gelu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(3, 17, 1024), (1, 1, 33), (2, 5, 7)])
def test_forward_and_gradient_equal_transformers_bit_for_bit(dtype, shape):
    g = torch.Generator().manual_seed(len(shape) + shape[-1])
    x = (torch.randn(shape, generator=g) * 4).to(dtype)  # into both tails of tanh
    grad = torch.randn(shape, generator=g).to(dtype)
    assert torch.equal(gelu_forward(x), bloom_gelu_forward(x))
    assert torch.equal(gelu_backward(grad, x), bloom_gelu_back(grad, (x,)))


def test_the_inputs_are_not_modified():
    x, grad = torch.randn(4, 64), torch.randn(4, 64)
    x_before, grad_before = x.clone(), grad.clone()
    gelu_forward(x)
    gelu_backward(grad, x)
    assert torch.equal(x, x_before) and torch.equal(grad, grad_before)


def tiny_bloom() -> BloomForCausalLM:
    torch.manual_seed(0)
    return BloomForCausalLM(BloomConfig(vocab_size=97, hidden_size=32, n_layer=3, n_head=4))


def test_a_bloom_with_the_lean_gelu_trains_to_the_same_bits():
    reference, lean = tiny_bloom(), tiny_bloom()
    assert use_lean_gelu(lean) == 3
    assert sum(isinstance(m, LeanBloomGelu) for m in lean.modules()) == 3
    assert not any(isinstance(m, BloomGelu) for m in lean.modules())
    batch = torch.randint(0, 97, (4, 19), generator=torch.Generator().manual_seed(1))
    for model in (reference, lean):
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(3):  # several steps: any difference in a gradient would grow, not vanish
            torch.manual_seed(2)  # the same dropout masks
            model(input_ids=batch, labels=batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), (_, b) in zip(reference.named_parameters(), lean.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(reference.state_dict()["lm_head.weight"], lean.state_dict()["lm_head.weight"])


def test_other_architectures_are_left_as_they_are():
    bert = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2))
    before = copy.deepcopy(bert)
    assert use_lean_gelu(bert) == 0
    assert [type(m) for m in bert.modules()] == [type(m) for m in before.modules()]
