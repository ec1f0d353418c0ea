"""LotteryParams refuse what cannot carry a mask and name every bad field; targets map to their rounds."""

from __future__ import annotations

import pytest

from lottery.params import LotteryParams
from probing.validation import InvalidParams


@pytest.mark.parametrize(("field", "value"), [("method", "lora"), ("method", "qlora"), ("quantization", "nf4")])
def test_lora_and_4_bit_are_refused_because_they_cannot_carry_a_mask(field, value):
    with pytest.raises(ValueError, match=f"{field}: LoRA and 4-bit weights cannot carry a mask; sub-network training"):
        LotteryParams(**{field: value})


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidParams) as caught:
        LotteryParams(schedule="cubic", sparsities=(0.8, 0.5), steps_per_round=0, lr=0.0, mlm_probability=1.0)
    assert caught.value.fields == {"schedule", "sparsities", "steps_per_round", "lr", "mlm_probability"}


@pytest.mark.parametrize("sparsities", [(), (0.0,), (0.5, 1.0), (0.5, 0.5)])
def test_sparsities_must_be_increasing_shares_strictly_between_0_and_1(sparsities):
    with pytest.raises(InvalidParams, match="sparsities:"):
        LotteryParams(sparsities=sparsities)


def test_each_target_is_trained_in_the_round_the_schedule_reaches_it():
    linear = LotteryParams()
    assert linear.target_rounds() == {0.5: 5, 0.8: 8}
    assert linear.rounds == 9  # rounds 0 (dense) .. 8 (80%)
    geometric = LotteryParams(schedule="geometric", sparsities=(0.5,))
    assert geometric.target_rounds() == {0.5: 4}
    assert geometric.rounds == 5
