"""Packed masks round-trip bit-exactly, and damaged ones are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lottery.packing import pack_mask, pack_tensor, unpack_mask, unpack_tensor


def random_mask() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (7, 13), "b.weight": (64, 8), "c.weight": (1, 1), "d.weight": (3, 5)}
    return {n: torch.rand(s, generator=g) < 0.4 for n, s in shapes.items()}


def test_a_mask_round_trips_bit_exactly_in_order():
    mask = random_mask()
    mask["d.weight"][:] = False  # an empty tensor mask
    packed = pack_mask(mask)
    assert list(packed) == list(mask)
    assert [p.kept for p in packed.values()] == [int(m.sum()) for m in mask.values()]
    assert len(packed["a.weight"].bits) == 12  # ceil(91 / 8)
    back = unpack_mask(packed)
    assert list(back) == list(mask)
    assert all(back[n].dtype == torch.bool and torch.equal(back[n], mask[n]) for n in mask)


def test_the_first_weight_is_the_highest_bit_and_padding_is_zero():
    packed = pack_tensor(torch.tensor([[True, False, False], [False, False, False], [False, False, True]]))
    assert packed.bits == bytes([0b10000000, 0b10000000])


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: dataclasses.replace(p, bits=bytes([p.bits[0] ^ 1]) + p.bits[1:]),
        lambda p: dataclasses.replace(p, shape=(13, 7)),
        lambda p: dataclasses.replace(p, bits=p.bits[:-1]),
    ],
    ids=["flipped bit", "other shape", "truncated"],
)
def test_damaged_bits_or_shapes_fail_the_checksum(damage):
    packed = pack_tensor(random_mask()["a.weight"])
    with pytest.raises(ValueError, match="checksum mismatch"):
        unpack_tensor(damage(packed))


def test_a_wrong_kept_count_is_refused():
    packed = pack_tensor(random_mask()["a.weight"])
    with pytest.raises(ValueError, match="weights kept, recorded"):
        unpack_tensor(dataclasses.replace(packed, kept=packed.kept + 1))


def test_only_bool_masks_are_packed():
    with pytest.raises(ValueError, match="must be bool"):
        pack_tensor(torch.ones(2, 2))
