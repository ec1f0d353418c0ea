"""Overlap tables of a study from its rankings: cross-lingual pairs, per-matrix summaries, method agreement.

Input: ranking records (one per model, checkpoint, layer, language, attribute, method, seed; top-to-bottom
order of all d neurons, and the k its trial resolved for the model: the study's k, or ``k_fraction``·d).
Overlaps are taken at each record's own k, so that models of different widths are compared at the same
fraction of their width when the study gives k that way. Output: plain row dicts for the
``overlap_pairs``, ``overlap_summary``, ``method_overlaps`` and ``attribute_contrasts`` tables.
Trajectories across checkpoints and layers are these rows ordered by ``checkpoint_index`` and ``layer``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

from analysis.attribute_overlap import attribute_contrast, beyond_scale
from analysis.overlap import (
    common_overlap_pvalue,
    expected_common_overlap,
    matrix_summary,
    overlap_pvalue,
    pairwise_overlap,
)
from probing.datasets import stable_seed

MATRIX_KEY = ("model", "checkpoint", "layer", "attribute", "method", "seed")
CONFIG_KEY = ("model", "checkpoint", "layer", "language", "attribute", "seed")
CONTRAST_KEY = ("model", "checkpoint", "layer", "method", "seed")


def group_k(records: Iterable[Mapping]) -> int:
    """The k of a group of rankings compared with each other; they must share it (same model)."""
    ks = {int(r["k"]) for r in records}
    if len(ks) != 1:
        raise ValueError(f"rankings compared with each other have different k: {sorted(ks)}")
    return ks.pop()


def _key(record: Mapping, columns: tuple[str, ...]) -> tuple:
    """The record's values of ``columns``."""
    return tuple(record[c] for c in columns)


def _grouped(records: Iterable[Mapping], key: tuple[str, ...], member: str) -> dict[tuple, dict[str, Mapping]]:
    groups: dict[tuple, dict[str, Mapping]] = defaultdict(dict)
    for record in records:
        groups[_key(record, key)][record[member]] = record
    return groups


def cross_lingual_rows(
    records: Iterable[Mapping], checkpoint_index: Mapping[tuple[str, str], int], alpha: float = 0.05
) -> tuple[list[dict], list[dict]]:
    """Pairwise language overlaps and one summary per (model, checkpoint, layer, attribute, method, seed)."""
    pairs, summaries = [], []
    for group, by_language in sorted(_grouped(records, MATRIX_KEY, "language").items(), key=lambda g: str(g[0])):
        base = dict(zip(MATRIX_KEY, group, strict=True))
        base["checkpoint_index"] = checkpoint_index.get((base["model"], base["checkpoint"]), -1)
        languages = sorted(by_language)
        orders = [np.asarray(by_language[lang]["ranking"]) for lang in languages]
        d = len(orders[0])
        kk = min(group_k(by_language.values()), d)
        counts = pairwise_overlap(orders, kk)
        summary = matrix_summary(counts, kk, d, alpha)
        for i, j, overlap, rate, p, p_holm, significant in zip(
            summary["rows"],
            summary["cols"],
            summary["overlap"],
            summary["rate"],
            summary["pvalue"],
            summary["pvalue_holm"],
            summary["significant"],
            strict=True,
        ):
            pairs.append(
                {
                    **base,
                    "language_a": languages[i],
                    "language_b": languages[j],
                    "k": kk,
                    "d": d,
                    "overlap": int(overlap),
                    "rate": float(rate),
                    "expected": kk * kk / d,
                    "pvalue": float(p),
                    "pvalue_holm": float(p_holm),
                    "significant": bool(significant),
                }
            )
        n = len(languages)
        common = int(np.all([np.isin(np.arange(d), o[:kk]) for o in orders], axis=0).sum())
        summaries.append(
            {
                **base,
                "k": kk,
                "d": d,
                "n_languages": n,
                "languages": languages,
                "n_pairs": len(summary["overlap"]),
                "average_overlap": float(np.mean(summary["overlap"])) if n > 1 else float("nan"),
                "average_rate": summary["average_rate"],
                "expected_rate": kk / d,
                "n_significant": int(np.sum(summary["significant"])),
                "common_overlap": common,
                "common_expected": expected_common_overlap(n, kk, d),
                "common_pvalue": common_overlap_pvalue(common, n, kk, d) if n > 1 else float("nan"),
            }
        )
    return pairs, summaries


def method_overlap_rows(records: Iterable[Mapping]) -> list[dict]:
    """Overlap of the top-k of every pair of methods for the same (checkpoint, layer, language, attribute)."""
    rows = []
    for group, by_method in sorted(_grouped(records, CONFIG_KEY, "method").items(), key=lambda g: str(g[0])):
        base = dict(zip(CONFIG_KEY, group, strict=True))
        methods = sorted(by_method)
        if len(methods) < 2:
            continue
        orders = [np.asarray(by_method[m]["ranking"]) for m in methods]
        d = len(orders[0])
        kk = min(group_k(by_method.values()), d)
        counts = pairwise_overlap(orders, kk)
        for i in range(len(methods)):
            for j in range(i + 1, len(methods)):
                rows.append(
                    {
                        **base,
                        "method_a": methods[i],
                        "method_b": methods[j],
                        "k": kk,
                        "d": d,
                        "overlap": int(counts[i, j]),
                        "expected": kk * kk / d,
                        "pvalue": float(overlap_pvalue(counts[i, j], kk, d)),
                    }
                )
    return rows


def attribute_contrast_rows(
    records: Iterable[Mapping], checkpoint_index: Mapping[tuple[str, str], int], scale_control: str
) -> list[dict]:
    """Same- against cross-attribute overlap per (model, checkpoint, layer, method, seed) (`attribute_contrast`)
    on each ranking beyond the scale control's top k of the same (language, attribute) (`beyond_scale`); sets
    without a scale ranking are left out, and so are the scale control's own. Permutations seeded by the key."""
    records = list(records)
    scale = {_key(r, CONFIG_KEY): r["ranking"] for r in records if r["method"] == scale_control}
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for record in records:
        if record["method"] != scale_control and _key(record, CONFIG_KEY) in scale:
            groups[_key(record, CONTRAST_KEY)].append(record)
    rows = []
    for group, members in sorted(groups.items(), key=lambda g: str(g[0])):
        base = dict(zip(CONTRAST_KEY, group, strict=True))
        members = sorted(members, key=lambda r: (r["language"], r["attribute"]))
        d = len(members[0]["ranking"])
        kk = min(group_k(members), d // 2)
        tops = [
            beyond_scale(np.asarray(r["ranking"]), np.asarray(scale[_key(r, CONFIG_KEY)][:kk]), kk) for r in members
        ]
        contrast = attribute_contrast(
            tops,
            [r["language"] for r in members],
            [r["attribute"] for r in members],
            d,
            seed=stable_seed("attribute_contrast", *group),
        )
        rows.append(
            {
                **base,
                "checkpoint_index": checkpoint_index.get((base["model"], base["checkpoint"]), -1),
                "d": d,
                "scale_removed": kk,
                "n_languages": len({r["language"] for r in members}),
                "attributes": sorted({r["attribute"] for r in members}),
                **contrast,
            }
        )
    return rows
