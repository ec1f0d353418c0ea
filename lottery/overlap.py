"""How much two masks overlap: per-tensor counts on packed bits, and the statistics the counts determine.

For each tensor of two masks a and b: n_total weights, n_a and n_b kept, n_both kept by both. Those
four counts are all that is stored (`mask_overlaps`); every statistic follows from them, per tensor,
per layer or overall after summing the counts (numpy in, numpy out; the same formulas as SQL):

- Jaccard |a ∩ b| / |a ∪ b| of the kept weights (Foroutan et al.'s overlap; 1 when both keep none);
- agreement, the share of weights on which the masks agree, shared pruned weights included;
- the overlap expected under the null that b keeps a uniformly random n_b-subset, n_a·n_b / n_total,
  and the exact upper-tail hypergeometric p-value P(X ≥ n_both), X ~ Hypergeometric(n_total, n_a, n_b).
  Two independent random masks of density ρ have Jaccard ρ/(2−ρ) in expectation (⅓ at ρ = 0.5).

Counting works on packed bits (`lottery.packing`), 64 weights per machine word: each mask becomes
one array of words with every tensor starting at a word boundary (`MaskWords`, built once per mask),
and a pair costs one AND, one popcount and one segmented sum over all tensors.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats

from lottery.packing import PackedTensor

K = TypeVar("K", bound=Hashable)

#: Set bits of every byte value, for numpy versions without ``np.bitwise_count`` (before 2.0).
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class OverlapCounts:
    """The overlap of two masks on one tensor (or summed over several): all weights, kept by a, by b, by both."""

    n_total: int
    n_a: int
    n_b: int
    n_both: int


def summed(counts: Mapping[str, OverlapCounts]) -> OverlapCounts:
    """The counts over several tensors together (a layer, or the whole mask)."""
    values = list(counts.values())
    return OverlapCounts(*(sum(getattr(c, f) for c in values) for f in ("n_total", "n_a", "n_b", "n_both")))


def popcount(words: np.ndarray) -> np.ndarray:
    """The number of set bits of each uint64 word."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_BITS[words.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.uint8)


@dataclass(frozen=True)
class MaskWords:
    """A packed mask as one uint64 array, each tensor zero-padded to whole words from word ``starts[i]``."""

    names: tuple[str, ...]
    numel: np.ndarray
    kept: np.ndarray
    words: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, packed: Mapping[str, PackedTensor]) -> MaskWords:
        """The words of a packed mask (tensors in its order)."""
        chunks, starts, at = [], [], 0
        for p in packed.values():
            padded = p.bits + bytes(-len(p.bits) % 8)
            chunks.append(np.frombuffer(padded, dtype=np.uint64))
            starts.append(at)
            at += len(padded) // 8
        return cls(
            names=tuple(packed),
            numel=np.array([p.numel for p in packed.values()], dtype=np.int64),
            kept=np.array([p.kept for p in packed.values()], dtype=np.int64),
            words=np.concatenate(chunks),
            starts=np.array(starts, dtype=np.int64),
        )

    def overlap(self, other: MaskWords) -> dict[str, OverlapCounts]:
        """Per tensor, the overlap counts of this mask (a) and ``other`` (b); ValueError if their tensors differ."""
        if self.names != other.names or not np.array_equal(self.numel, other.numel):
            raise ValueError("the two masks cover different tensors (names, order or sizes differ)")
        both = np.add.reduceat(popcount(np.bitwise_and(self.words, other.words)), self.starts, dtype=np.int64)
        return {
            name: OverlapCounts(int(n), int(a), int(b), int(c))
            for name, n, a, b, c in zip(self.names, self.numel, self.kept, other.kept, both, strict=True)
        }


def mask_overlap_counts(a: Mapping[str, PackedTensor], b: Mapping[str, PackedTensor]) -> dict[str, OverlapCounts]:
    """Per tensor, the overlap counts of two packed masks of the same tensors."""
    return MaskWords.of(a).overlap(MaskWords.of(b))


def all_pair_overlap_counts(
    masks: Mapping[K, Mapping[str, PackedTensor]],
) -> dict[tuple[K, K], dict[str, OverlapCounts]]:
    """The overlap counts of every unordered pair of masks (keys in the mapping's order), each mask read once."""
    words = {key: MaskWords.of(packed) for key, packed in masks.items()}
    return {(a, b): words[a].overlap(words[b]) for a, b in itertools.combinations(words, 2)}


def jaccard(n_a: np.ndarray, n_b: np.ndarray, n_both: np.ndarray) -> np.ndarray:
    """|a ∩ b| / |a ∪ b| of the kept weights; 1 where neither mask keeps any."""
    n_a, n_b, n_both = (np.asarray(x, dtype=float) for x in (n_a, n_b, n_both))
    union = n_a + n_b - n_both
    return np.divide(n_both, union, out=np.ones_like(union), where=union > 0)


def agreement(n_total: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n_both: np.ndarray) -> np.ndarray:
    """The share of weights both masks keep or both prune."""
    n_total, n_a, n_b, n_both = (np.asarray(x, dtype=float) for x in (n_total, n_a, n_b, n_both))
    return (n_total - n_a - n_b + 2 * n_both) / n_total


def expected_overlap(n_total: np.ndarray, n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """The mean of n_both if b kept a uniformly random subset of its size: n_a · n_b / n_total."""
    n_total, n_a, n_b = (np.asarray(x, dtype=float) for x in (n_total, n_a, n_b))
    return n_a * n_b / n_total


def overlap_p_value(n_total: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, n_both: np.ndarray) -> np.ndarray:
    """Exact P(X ≥ n_both) for X ~ Hypergeometric(population n_total, n_a successes, n_b draws)."""
    return stats.hypergeom.sf(np.asarray(n_both) - 1, n_total, n_a, n_b)
