"""What the lottery-ticket stage found, as sentences with their numbers (rows in, findings out).

Per (model, checkpoint, task, sparsity), from ``mask_overlap_summary`` and ``subnetwork_transfer`` rows:

- *Are the languages' sub-networks shared?* The mean Jaccard of IMP masks of two different languages
  (same seed), against the Jaccard two independent random masks of the same sizes would have
  (``expected_jaccard``), and against two references that say what "shared" means here: the same
  language found with another seed (the noise ceiling: a language cannot be more like another than
  like itself) and one-shot magnitude pruning of the same weights (what the pre-trained magnitudes alone
  decide). How far the cross-language Jaccard goes from chance toward the ceiling is its share of it
  (`ceiling_share`). Each cross-language pair's exact p-value (``pvalue``, hypergeometric upper tail) is
  BH-corrected over every cross-language pair of the study.
- *Control:* the IMP mask against a random mask of the same sparsity must sit at chance.
- *Does a ticket transfer?* The target-language score of the sub-network found in another language,
  against the target's own ticket, a random mask of the same sparsity, and the dense model
  (paper 004's comparison; every ticket is re-trained the same way).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from analysis.findings import ALPHA, Finding, benjamini_hochberg

GROUP = ("model", "checkpoint", "task", "sparsity")


def _key(row: Mapping) -> tuple:
    return tuple(row[c] for c in GROUP)


def _mean(rows: Sequence[Mapping], column: str) -> float:
    return float(np.mean([r[column] for r in rows])) if rows else float("nan")


def _cross_language(row: Mapping) -> bool:
    return row["kind_a"] == row["kind_b"] == "imp" and row["language_a"] != row["language_b"]


def _kinds(row: Mapping, a: str, b: str) -> bool:
    return {row["kind_a"], row["kind_b"]} == {a, b} and row["language_a"] == row["language_b"]


def ceiling_share(across: float, ceiling: float, chance: float) -> float:
    """How far the cross-language Jaccard is from chance toward the same-language ceiling: (J − J₀)/(J_c − J₀);
    1 = languages' tickets are as alike as one language's from two seeds, 0 = as alike as random masks."""
    return (across - chance) / (ceiling - chance) if ceiling > chance else float("nan")


def mask_findings(masks: Sequence[Mapping]) -> list[Finding]:
    """Per (model, checkpoint, task, sparsity): cross-language mask overlap against chance and its references."""
    cross = [r for r in masks if _cross_language(r) and r["seed_a"] == r["seed_b"]]
    adjusted = benjamini_hochberg([r["pvalue"] for r in cross])
    significant: dict[tuple, int] = defaultdict(int)
    for row, p in zip(cross, adjusted, strict=True):
        significant[_key(row)] += int(p <= ALPHA)
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in masks:
        groups[_key(row)].append(row)
    findings = []
    for key, rows in sorted(groups.items(), key=lambda g: tuple(map(str, g[0]))):
        across = [r for r in rows if _cross_language(r) and r["seed_a"] == r["seed_b"]]
        if not across:
            continue
        jaccard, chance = _mean(across, "jaccard"), _mean(across, "expected_jaccard")
        ceiling = _mean([r for r in rows if _kinds(r, "imp", "imp") and r["seed_a"] != r["seed_b"]], "jaccard")
        one_shot = _mean([r for r in rows if _kinds(r, "imp", "one_shot")], "jaccard")
        control_rows = [r for r in rows if _kinds(r, "imp", "random")]
        control, control_chance = _mean(control_rows, "jaccard"), _mean(control_rows, "expected_jaccard")
        model, checkpoint, task, sparsity = key
        references = [f"chance {chance:.3f}"]
        if not np.isnan(ceiling):
            references.append(f"same language, another seed {ceiling:.3f}")
        if not np.isnan(one_shot):
            references.append(f"IMP vs one-shot pruning {one_shot:.3f}")
        sentence = (
            f"{task} tickets at sparsity {sparsity:.2f} ({model}, {checkpoint}): IMP masks of two languages share "
            f"mean Jaccard {jaccard:.3f} ({'; '.join(references)}); {significant[key]} of {len(across)} language "
            f"pairs above chance after BH"
        )
        share = ceiling_share(jaccard, ceiling, chance)
        if not np.isnan(share):
            sentence += f"; above chance, it reaches {share:.0%} of the same-language ceiling"
        sentence += "."
        if control_rows:
            sentence += f" Control: IMP vs a random mask {control:.3f} against chance {control_chance:.3f}."
        numbers = {
            "model": model,
            "checkpoint": checkpoint,
            "task": task,
            "sparsity": sparsity,
            "jaccard": jaccard,
            "chance": chance,
            "ceiling": ceiling,
            "one_shot": one_shot,
            "significant": significant[key],
            "pairs": len(across),
            "control": control,
            "ceiling_share": share,
        }
        findings.append(Finding("lottery", sentence, numbers))
    return findings


def transfer_findings(scores: Sequence[Mapping]) -> list[Finding]:
    """Per (model, checkpoint, task, sparsity): another language's ticket on a target against the target's own
    ticket, a random mask and the dense model (``subnetwork_transfer`` rows; means over targets and seeds)."""
    dense: dict[tuple, list[float]] = defaultdict(list)
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in scores:
        if row["kind"] == "dense":
            dense[(row["model"], row["checkpoint"], row["task"])].append(row["score"])
        else:
            groups[_key(row)].append(row)
    findings = []
    for key, rows in sorted(groups.items(), key=lambda g: tuple(map(str, g[0]))):
        other = [r for r in rows if r["kind"] == "subnetwork" and r["source_language"] != r["target_language"]]
        own = [r for r in rows if r["kind"] == "subnetwork" and r["source_language"] == r["target_language"]]
        random = [r for r in rows if r["kind"] == "random"]
        if not other or not own:
            continue
        model, checkpoint, task, sparsity = key
        numbers = {
            "model": model,
            "checkpoint": checkpoint,
            "task": task,
            "sparsity": sparsity,
            "other": _mean(other, "score"),
            "own": _mean(own, "score"),
            "random": _mean(random, "score"),
            "dense": float(np.mean(dense[key[:3]])) if dense[key[:3]] else float("nan"),
        }
        gap = numbers["own"] - numbers["other"]
        above = numbers["other"] - numbers["random"]
        sentence = (
            f"{task} tickets at sparsity {sparsity:.2f} ({model}, {checkpoint}) on a target language: another "
            f"language's ticket scores {numbers['other']:.3f}, the target's own {numbers['own']:.3f} "
            f"({gap:+.3f} for its own), a random mask {numbers['random']:.3f} ({above:+.3f} for the transferred "
            f"ticket over it), the dense model {numbers['dense']:.3f} (means over {len(other)} transferred and "
            f"{len(own)} own tickets)."
        )
        findings.append(Finding("lottery", sentence, numbers))
    return findings
