"""A probe's X / y per split from the stored tables (Arrow in, numpy out; no I/O).

An activation partition (one checkpoint, layer and language) holds one vector per syntactic word,
keyed by (sentence_index, position); a words table (one language and attribute) holds the words
that carry the attribute with their value and split. `ActivationIndex` sorts a partition's keys
once, so that every attribute and ranking method probed on it looks its words up without
re-reading or re-sorting (the probe stage runs all of them in one pass over the partition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from probing.datasets import SPLITS, stable_seed
from probing.evaluation import ProbeData


class CannotProbe(ValueError):
    """The dataset cannot support a ranking (one value only, too few examples): recorded, not retried."""


def _keys(table: pa.Table) -> np.ndarray:
    """One int64 per row: sentence_index in the high 32 bits, position in the low."""
    return table.column("sentence_index").to_numpy().astype(np.int64) << 32 | table.column("position").to_numpy()


@dataclass(frozen=True)
class ActivationIndex:
    """A partition's word vectors (n, d) as float32, with their keys sorted once for lookups."""

    matrix: np.ndarray
    sorted_keys: np.ndarray
    sorter: np.ndarray

    @classmethod
    def from_table(cls, activations: pa.Table) -> ActivationIndex:
        vectors = activations.column("vector").combine_chunks()
        d = vectors.type.list_size
        matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32)
        keys = _keys(activations)
        sorter = np.argsort(keys, kind="stable")
        return cls(matrix, keys[sorter], sorter)

    def lookup(self, words: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """For each word row: whether the partition has its vector, and that vector's row."""
        wanted = _keys(words)
        at = np.minimum(np.searchsorted(self.sorted_keys, wanted), max(len(self.sorted_keys) - 1, 0))
        found = (len(self.sorted_keys) > 0) & (self.sorted_keys[at] == wanted)
        return found, self.sorter[at]


def build_probe_data(
    words: pa.Table, activations: ActivationIndex, language: str, attribute: str, max_examples: int | None, seed: int
) -> tuple[ProbeData, list[str]]:
    """X / y / lowercased word types per split, and the value names (class ids index them).

    Words without a stored vector (a sentence dropped for length) are left out. ``max_examples`` caps
    each split by a subsample seeded by (seed, language, attribute), so a dataset gets the same words at
    every checkpoint, layer and method. A class must occur in train; every split needs two classes,
    else `CannotProbe`.
    """
    name = f"{attribute} in {language}"
    kept = sorted(set(words.column("value").to_pylist()))
    if len(kept) < 2:
        raise CannotProbe(
            f"{name}: {len(kept)} value(s) with enough examples in every split ({', '.join(kept) or 'none'}); "
            "a ranking needs 2"
        )
    found, rows = activations.lookup(words)
    value_of = np.asarray(words.column("value").to_pylist(), dtype=object)
    split = np.asarray(words.column("split").to_pylist())
    forms = np.asarray([f.lower() for f in words.column("form").to_pylist()], dtype=object)
    rng = np.random.default_rng(stable_seed(seed, "max_examples", language, attribute))
    parts = {}
    for part in SPLITS:
        index = np.flatnonzero((split == part) & found)
        if max_examples is not None and len(index) > max_examples:
            index = np.sort(rng.choice(index, max_examples, replace=False))
        parts[part] = index
    values = sorted(set(value_of[parts["train"]].tolist()))  # every class must be seen in train
    for part, index in parts.items():
        parts[part] = index[np.isin(value_of[index], values)]
        if len(set(value_of[parts[part]].tolist())) < 2:
            raise CannotProbe(f"{name}: the {part} split has fewer than 2 values ({len(parts[part])} examples)")
    label = {v: i for i, v in enumerate(values)}
    y_all = np.asarray([label.get(v, -1) for v in value_of])
    X = {part: activations.matrix[rows[index]] for part, index in parts.items()}
    data = ProbeData(
        X_train=X["train"],
        y_train=y_all[parts["train"]],
        X_dev=X["dev"],
        y_dev=y_all[parts["dev"]],
        X_test=X["test"],
        y_test=y_all[parts["test"]],
        types_train=forms[parts["train"]],
        types_dev=forms[parts["dev"]],
        types_test=forms[parts["test"]],
    )
    return data, values
