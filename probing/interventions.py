"""Causal check of a neuron ranking (paper 003 §4): edit its top-k neurons at layer L and read what the model does.

At layer L (0 = embedding output, `probing.models.LAYER_CONVENTION`), on every sub-word of the words that
carry the attribute (`probing.intervention_data.EditSites`), the top-k neurons S_k of a ranking are edited:

* **ablation**: h[S_k] = 0;
* **translation** (003 eq. 2): h[S_k] += α[:k] ⊙ (q(z′) − q(z))[S_k], with α, z′ and q as
  `probing.translation` says (α log-spaced by rank from β to 10⁻³; z′ the next value in sorted order).

The layer-L state of each batch is computed once and only the blocks after L re-run for every (ranking,
k) (`probing.suffix.LayerCache`); for a causal LM the batch is first cut after the last column a word is
read at (`read_prefix`), since no read position sees the ones after it. k = 0 (or β = 0) is the unedited
model. The effect is read as
`probing.readout` says (the word itself for masked LMs, the next word for causal LMs), compared with the
unedited prediction (flips, Δ log p of the gold word) and judged against the gold word with the language's
lexicon (`probing.lexicon`: correct, CLWV, other form, wrong lemma; unknown forms apart).

Saturation point (003 footnote 5): over a curve of values at increasing k, the first k from which the
next two values each rise by a factor below 1.05 (v[i+1] < 1.05·v[i] and v[i+2] < 1.05·v[i+1]); a value
of 0 followed by 0 is no saturation (the curve has not started), and a curve with no such point has
none. The ``intervention_saturation`` view applies the same rule to the CLWV rate in SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from probing.intervention_data import EditSites, InterventionBatch
from probing.lexicon import CATEGORIES, KNOWN, Lexicon
from probing.readout import LanguageModel, ReadOut, read_words
from probing.suffix import LayerCache
from probing.translation import translation_coefficients

#: The edits (module docstring).
INTERVENTIONS: tuple[str, ...] = ("ablation", "translation")
#: A value rising by less than this factor twice in a row has saturated (003 footnote 5).
SATURATION_FACTOR = 1.05


@dataclass(frozen=True)
class Edit:
    """One edit of a layer-L state: the neurons S_k (in rank order) and, for translation, α[:k] and the
    per-value shifts q(z′) − q(z)."""

    intervention: str
    neurons: torch.Tensor
    coefficients: torch.Tensor | None = None
    shifts: torch.Tensor | None = None

    @classmethod
    def top_k(
        cls, intervention: str, order: np.ndarray, k: int, beta: float = 0.0, shifts: torch.Tensor | None = None
    ) -> Edit:
        """The edit of the first k neurons of ``order`` (translation: with α of β and the ``shifts``)."""
        if intervention not in INTERVENTIONS:
            raise ValueError(f"intervention {intervention!r}: expected one of {', '.join(INTERVENTIONS)}")
        neurons = torch.as_tensor(np.asarray(order[:k], dtype=np.int64))
        if intervention == "ablation":
            return cls(intervention, neurons)
        alpha = torch.as_tensor(translation_coefficients(len(order), beta)[:k], dtype=torch.float32)
        return cls(intervention, neurons, alpha, shifts)

    @property
    def changes_nothing(self) -> bool:
        """No neuron, or translation with every coefficient 0: the state is left as it is."""
        return len(self.neurons) == 0 or (self.coefficients is not None and not bool(self.coefficients.any()))


def edit_state(state: torch.Tensor, sites: EditSites, edit: Edit) -> torch.Tensor:
    """The edited copy of a layer-L state (rows × tokens × d), or ``state`` itself when the edit changes nothing.

    Only the sites' sub-words and only the neurons S_k change: ablation sets them to 0, translation adds
    α ⊙ (q(z′) − q(z))[S_k] of each site's value z.
    """
    if edit.changes_nothing or len(sites.positions) == 0:
        return state
    flat = state.reshape(-1, state.shape[-1]).clone()
    rows, neurons = sites.positions[:, None], edit.neurons.to(state.device)[None, :]
    if edit.intervention == "ablation":
        flat[rows, neurons] = 0
    else:
        shifts = edit.shifts.to(state.device, state.dtype)[sites.values][:, edit.neurons.to(state.device)]
        flat[rows, neurons] += edit.coefficients.to(state.device, state.dtype)[None, :] * shifts
    return flat.view_as(state)


@dataclass
class Counts:
    """What the read words of one (ranking, intervention, k) did, summed over batches.

    ``categories`` counts the words whose gold word is known (for a causal readout, whose next word
    carries the attribute); the others are ``unannotated``. ``flips`` and ``delta_logp`` (summed) are over
    every read word, against the unedited model.
    """

    n_words: int = 0
    categories: Counter = field(default_factory=Counter)
    unannotated: int = 0
    flips: int = 0
    delta_logp: float = 0.0

    def add(self, read: ReadOut, baseline: ReadOut, gold: Sequence, lexicon: Lexicon, attribute: str) -> None:
        self.n_words += len(read.words)
        self.flips += sum(a != b for a, b in zip(read.words, baseline.words, strict=True))
        self.delta_logp += float(np.sum(read.logp - baseline.logp))
        for word, truth in zip(read.words, gold, strict=True):
            if truth is None:
                self.unannotated += 1
            else:
                self.categories[lexicon.categorize(word, truth, attribute)] += 1

    @property
    def relevant(self) -> int:
        """The read words with a known predicted form (every category but unknown)."""
        return sum(self.categories[c] for c in KNOWN)

    def rates(self) -> tuple[float, float]:
        """(error rate, CLWV rate) over the relevant words; NaN when there are none."""
        if not self.relevant:
            return float("nan"), float("nan")
        return 1 - self.categories["correct"] / self.relevant, self.categories["clwv"] / self.relevant

    def row(self) -> dict:
        """The counts as columns of the ``interventions`` table."""
        return {
            "n_words": self.n_words,
            **{f"n_{c}": int(self.categories[c]) for c in CATEGORIES},
            "n_unannotated": self.unannotated,
            "flips": self.flips,
            "mean_delta_logp": self.delta_logp / self.n_words if self.n_words else float("nan"),
        }


@dataclass(frozen=True)
class CachedBatch:
    """A batch (on the model's device), its layer-L state and its unedited readout."""

    batch: InterventionBatch
    state: torch.Tensor
    baseline: ReadOut


def _flat_columns(positions: torch.Tensor, width: int, kept: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions in (rows × ``width``) re-indexed in (rows × ``kept``): (which are kept, their new index)."""
    rows, columns = positions // width, positions % width
    inside = columns < kept
    return inside, rows[inside] * kept + columns[inside]


def read_prefix(batch: InterventionBatch) -> InterventionBatch:
    """A causal LM's batch cut after the last column any word is read at.

    In a causal LM no position sees the ones after it, so the columns after the last read one change
    nothing that is read, edited or not, and no block need run on them. Edit sites in the cut columns
    are dropped (their edit could only reach later positions, none of them read).
    """
    width = batch.inputs["input_ids"].shape[1]
    kept = int((batch.targets.positions % width).max()) + 1
    if kept == width:
        return batch
    inside, site_positions = _flat_columns(batch.sites.positions, width, kept)
    _, read_positions = _flat_columns(batch.targets.positions, width, kept)
    inputs = {name: tensor[:, :kept] for name, tensor in batch.inputs.items()}
    sites = EditSites(site_positions, batch.sites.values[inside])
    return InterventionBatch(inputs, sites, replace(batch.targets, positions=read_positions))


@torch.inference_mode()
def cache_batches(lm: LanguageModel, layer: int, batches: Sequence[InterventionBatch]):
    """One full forward pass per batch: (the `LayerCache` to resume from, the cached batches); for a causal
    readout, of the batch cut after its last read column (`read_prefix`)."""
    cache = LayerCache(lm.base, lm.points, layer)
    cached = []
    for batch in batches:
        batch = batch.to(lm.device)
        if lm.readout == "causal":
            batch = read_prefix(batch)
        state, last = cache.full(batch.inputs)
        cached.append(CachedBatch(batch, state, read_words(lm, last, batch.targets)))
    return cache, cached


@torch.inference_mode()
def effect(
    lm: LanguageModel, cache: LayerCache, cached: Sequence[CachedBatch], edit: Edit, lexicon: Lexicon, attribute: str
) -> Counts:
    """The counts of one edit over every cached batch, the blocks after L re-run from the edited state."""
    counts = Counts()
    for item in cached:
        state = edit_state(item.state, item.batch.sites, edit)
        read = (
            item.baseline
            if state is item.state
            else read_words(lm, cache.resume(state, item.batch.inputs), item.batch.targets)
        )
        counts.add(read, item.baseline, item.batch.targets.gold, lexicon, attribute)
    return counts


def saturation_index(values: Sequence[float]) -> int | None:
    """The saturation point of a curve at increasing k (module docstring), or None."""
    v = list(values)
    for i in range(len(v) - 2):
        if v[i + 1] < SATURATION_FACTOR * v[i] and v[i + 2] < SATURATION_FACTOR * v[i + 1]:
            return i
    return None


def beta_score(curve: Sequence[tuple[float, float]]) -> float:
    """How good a translation curve [(error rate, CLWV rate) at increasing k] is, for choosing β on dev:
    CLWV at its saturation point (the last point when it has none) minus the gap between error rate and
    CLWV there, 003's two criteria (high CLWV, errors that are mostly CLWV)."""
    at = saturation_index([c for _, c in curve])
    error, clwv = curve[-1 if at is None else at]
    return float(np.nan_to_num(clwv - (error - clwv), nan=-np.inf))


def choose_beta(curves: Mapping[float, Sequence[Sequence[tuple[float, float]]]]) -> float:
    """The β whose curves (one per ranking) have the highest mean `beta_score`; the smallest β on a tie."""
    scores = {beta: float(np.mean([beta_score(c) for c in group])) for beta, group in curves.items()}
    best = max(scores.values())
    return min(beta for beta, score in scores.items() if score == best)
