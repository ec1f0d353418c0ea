"""Masks as bits for the store: one `PackedTensor` per prunable tensor, which unpacks bit-exactly or not at all.

A tensor's mask is flattened row-major and packed with ``np.packbits`` (8 weights per byte, the first
weight in the highest bit, the last byte zero-padded): 85M prunable weights of a BERT-base take
10.6 MB. The checksum covers the shape and the bits, so a truncated, shifted or mislabelled mask
is refused on unpacking instead of silently read; the kept count is checked too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from lottery.masks import Mask


@dataclass(frozen=True)
class PackedTensor:
    """One tensor's mask: its shape, how many weights it keeps, its packed bits and their checksum."""

    shape: tuple[int, ...]
    kept: int
    bits: bytes
    checksum: str

    @property
    def numel(self) -> int:
        """How many weights the tensor has."""
        return math.prod(self.shape)


def mask_checksum(shape: tuple[int, ...], bits: bytes) -> str:
    """16 hex digits of the SHA-256 of the shape and the packed bits."""
    return hashlib.sha256(repr(tuple(shape)).encode() + bits).hexdigest()[:16]


def pack_tensor(mask: torch.Tensor) -> PackedTensor:
    """Pack one bool mask tensor."""
    flat = mask.detach().cpu().numpy().ravel()
    if flat.dtype != np.bool_:
        raise ValueError(f"a mask tensor must be bool, got {flat.dtype}")
    shape = tuple(int(d) for d in mask.shape)
    bits = np.packbits(flat).tobytes()
    return PackedTensor(shape, int(flat.sum()), bits, mask_checksum(shape, bits))


def unpack_tensor(packed: PackedTensor) -> torch.Tensor:
    """The bool mask tensor; ValueError when the checksum, the length or the kept count do not match."""
    if mask_checksum(packed.shape, packed.bits) != packed.checksum:
        raise ValueError(f"mask of shape {packed.shape}: checksum mismatch, the stored bits are not the packed mask")
    if len(packed.bits) != math.ceil(packed.numel / 8):
        raise ValueError(
            f"mask of shape {packed.shape}: {len(packed.bits)} bytes, expected {math.ceil(packed.numel / 8)}"
        )
    flat = np.unpackbits(np.frombuffer(packed.bits, dtype=np.uint8), count=packed.numel).astype(bool)
    if int(flat.sum()) != packed.kept:
        raise ValueError(f"mask of shape {packed.shape}: {int(flat.sum())} weights kept, recorded {packed.kept}")
    return torch.from_numpy(flat).view(packed.shape)


def pack_mask(mask: Mask) -> dict[str, PackedTensor]:
    """Pack every tensor of a mask, keeping its order."""
    return {name: pack_tensor(m) for name, m in mask.items()}


def unpack_mask(packed: Mapping[str, PackedTensor]) -> Mask:
    """The mask of packed tensors, in their order."""
    return {name: unpack_tensor(p) for name, p in packed.items()}
