"""Neuron cards from a study's stored tables: the rankings, and per (layer, language) the activations of the
card's checkpoint with the words and sentences they belong to (read, never written; no forward pass).

The analyse stage builds the cards of the shared neurons of each model's last checkpoint with `model_cards`
(one activation partition in memory at a time) and stores them as ``neuron_cards``, which the report and
``xling neuron`` read. `analysis.neuron_cards` computes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from analysis.neuron_cards import CONTROL_METHODS, card_rows, language_evidence, rank_evidence
from analysis.store import Store
from probing.probe_data import ActivationIndex


def without_controls(rankings: Iterable[Mapping]) -> list[Mapping]:
    """The ranking records of the methods that rank what a neuron encodes (not `CONTROL_METHODS`)."""
    return [r for r in rankings if r["method"] not in CONTROL_METHODS]


def model_cards(
    store: Store,
    model: str,
    order: Sequence[str],
    checkpoint: str,
    rankings: Iterable[Mapping],
    neurons: Mapping[tuple[int, str, int], Sequence[int]],
) -> list[dict]:
    """The ``neuron_cards`` rows of ``neurons`` (per (layer, attribute, seed)) of ``model`` at ``checkpoint``.

    ``rankings``: the model's top-to-bottom ranking records without controls, every checkpoint (ranks and
    sharing come from them); ``order``: its checkpoints in training order. Each (layer, language) activation
    partition is read once for every attribute; a language whose partition or words are not stored gets
    cards without words and means.
    """
    groups: dict[tuple[int, str, int], list[Mapping]] = defaultdict(list)
    for r in rankings:
        groups[(r["layer"], r["attribute"], r["seed"])].append(r)
    ranks = {group: rank_evidence(groups[group], order, checkpoint, wanted) for group, wanted in neurons.items()}
    wanted_at: dict[tuple[int, str], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for (layer, attribute, _seed), by_neuron in ranks.items():
        for neuron, card in by_neuron.items():
            for language in card["languages"]:
                wanted_at[(layer, language)][attribute].add(neuron)
    evidence: dict[tuple[int, str], dict[str, dict]] = defaultdict(dict)
    sentences = {}
    for (layer, language), by_attribute in sorted(wanted_at.items()):
        path = store.path("activations", model=model, checkpoint=checkpoint, layer=layer, language=language)
        if not store.is_file(path):
            continue
        activations = ActivationIndex.from_table(store.read("activations", path=path))
        if language not in sentences:
            sentences[language] = store.read("sentences", path=store.path("sentences", language=language))
        for attribute, wanted in sorted(by_attribute.items()):
            words_path = store.path("words", language=language, attribute=attribute)
            if store.is_file(words_path):
                words = store.read("words", path=words_path)
                evidence[(layer, attribute)][language] = language_evidence(
                    activations, words, sentences[language], wanted
                )
    rows = []
    for (layer, attribute, seed), by_neuron in sorted(ranks.items()):
        key = {"model": model, "checkpoint": checkpoint, "layer": layer, "attribute": attribute, "seed": seed}
        d = len(groups[(layer, attribute, seed)][0]["ranking"])
        rows += card_rows(key, d, by_neuron, evidence[(layer, attribute)])
    return rows
