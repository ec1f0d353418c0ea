"""Neuron cards: what one neuron that languages share fires for (numpy and Arrow in, plain rows out; no I/O).

A neuron is *shared* for an attribute under a method when it is in the top-k of at least two languages'
rankings (top-to-bottom, the ranking's own k) at one checkpoint and layer; the random and scale controls are
left out (`CONTROL_METHODS`: the one's sharing is chance by construction, the other's is neuron scale), and
the bottom-to-top controls are never read. Its card holds, per language: its top-activating words of the
attribute's dataset in context (the stored activations and sentences, no new forward pass), its mean
activation per attribute value (which value it fires for), and its rank under each method at each checkpoint;
and, per method, the checkpoint from which it has been shared at every checkpoint since ("when did it become
shared?").

The rows are those of the ``neuron_cards`` table, one per (card, language): `card_rows` builds them from
`rank_evidence` (the rankings) and `language_evidence` (one language's activations, words, sentences).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from probing.probe_data import ActivationIndex

#: Methods that are controls, not rankings of what a neuron encodes: no card is made from them. The scale
#: control (variance) puts the same high-variance neurons first in every language whatever the attribute, so
#: "shared" under it says nothing about grammar.
CONTROL_METHODS: tuple[str, ...] = ("random", "variance")
#: Top-activating words kept per (neuron, language), and words of context kept on each side of one.
TOP_WORDS = 5
CONTEXT_WORDS = 5


def neuron_ranks(order: Sequence[int] | np.ndarray) -> np.ndarray:
    """rank[neuron] = the neuron's 1-based position in a top-to-bottom ranking (in the top-k iff rank <= k)."""
    order = np.asarray(order)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def shared_neurons(orders: Mapping[str, Sequence[int] | np.ndarray], k: int) -> dict[int, list[str]]:
    """The neurons in the top-k of at least two of the languages' rankings, each with those languages."""
    languages: dict[int, list[str]] = defaultdict(list)
    for language in sorted(orders):
        for neuron in np.asarray(orders[language])[:k].tolist():
            languages[int(neuron)].append(language)
    return {neuron: langs for neuron, langs in sorted(languages.items()) if len(langs) >= 2}


def shared_since(shared: Sequence[bool]) -> int | None:
    """The first index from which every flag is true (shared at every checkpoint since); None if the last is not."""
    if not shared or not shared[-1]:
        return None
    since = len(shared) - 1
    while since > 0 and shared[since - 1]:
        since -= 1
    return since


def top_activating(values: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest values, highest first; equal values in the order of their keys."""
    return np.lexsort((keys, -np.asarray(values, dtype=np.float64)))[:n]


def value_means(values: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """The mean of ``values`` and the count per label, labels in sorted order."""
    labels = np.asarray(labels, dtype=object)
    return [
        {"value": str(label), "mean": float(np.mean(values[labels == label])), "n": int(np.sum(labels == label))}
        for label in sorted(set(labels.tolist()))
    ]


def word_context(
    text: str, starts: Sequence[int], ends: Sequence[int], position: int, width: int = CONTEXT_WORDS
) -> tuple[str, str, str]:
    """The sentence's text before a word (``width`` words), the word's surface span, and the text after it.

    Spans come from the sentence's character offsets, so a word inside a multi-word token (French "au" =
    "à le") shows the token as written and a language without spaces keeps its text as is.
    """
    last = len(ends) - 1
    left = text[starts[max(0, position - width)] : starts[position]]
    right = text[ends[position] : ends[min(last, position + width)]]
    return left, text[starts[position] : ends[position]], right


def language_evidence(
    activations: ActivationIndex,
    words: pa.Table,
    sentences: pa.Table,
    neurons: Collection[int],
    n_top: int = TOP_WORDS,
    width: int = CONTEXT_WORDS,
) -> dict[int, dict[str, list[dict]]]:
    """Per neuron, in one language for one attribute: its ``n_top`` top-activating words of the attribute's
    dataset (all splits) with their context, and its mean activation per value over those words.

    Words without a stored vector (a sentence dropped for length) are left out.
    """
    found, rows = activations.lookup(words)
    index = np.flatnonzero(found)
    sentence_index = words.column("sentence_index").to_numpy()[index]
    position = words.column("position").to_numpy()[index]
    keys = sentence_index.astype(np.int64) << 32 | position
    values_of = np.asarray(words.column("value").to_pylist(), dtype=object)[index]
    form = words.column("form").to_pylist()
    split = words.column("split").to_pylist()
    text_of = dict(
        zip(
            sentences.column("sentence_index").to_pylist(),
            zip(*(sentences.column(c).to_pylist() for c in ("text", "char_start", "char_end")), strict=True),
            strict=True,
        )
    )
    evidence = {}
    for neuron in sorted(neurons):
        activation = activations.matrix[rows[index], neuron]
        top = []
        for i in top_activating(activation, keys, n_top):
            text, starts, ends = text_of[int(sentence_index[i])]
            left, word, right = word_context(text, starts, ends, int(position[i]), width)
            top.append(
                {
                    "activation": float(activation[i]),
                    "form": form[index[i]],
                    "value": values_of[i],
                    "split": split[index[i]],
                    "sentence_index": int(sentence_index[i]),
                    "position": int(position[i]),
                    "left": left,
                    "word": word,
                    "right": right,
                }
            )
        evidence[neuron] = {"top_words": top, "value_means": value_means(activation, values_of)}
    return evidence


def rank_evidence(
    rankings: Iterable[Mapping], order: Sequence[str], checkpoint: str, neurons: Collection[int]
) -> dict[int, dict]:
    """Ranks and sharing of each neuron, from the rankings of one (model, layer, attribute, seed).

    ``rankings``: records with checkpoint, language, method, k and ranking (top-to-bottom), controls left
    out; ``order``: the model's checkpoints in training order. Per neuron: ``shared_methods`` (the methods
    under which it is in the top-k of at least two languages at ``checkpoint``), ``shared_since`` (per such
    method, the first checkpoint from which it has been shared at every checkpoint the method ranked, up to
    ``checkpoint``), and per language ranked at ``checkpoint``: ``top_k_methods`` (the methods whose top-k
    holds it there) and ``ranks`` (under each method at each checkpoint).
    """
    position = {name: i for i, name in enumerate(order)}
    ranked: dict[tuple[str, str], dict[str, tuple[np.ndarray, int]]] = defaultdict(dict)
    for r in rankings:
        ranked[(r["method"], r["checkpoint"])][r["language"]] = (neuron_ranks(r["ranking"]), int(r["k"]))
    methods = sorted({m for m, _ in ranked})
    checkpoints = sorted({c for _, c in ranked}, key=lambda c: position[c])
    dated = {m: [c for c in checkpoints if (m, c) in ranked and position[c] <= position[checkpoint]] for m in methods}
    languages = sorted({lang for (_, c), by in ranked.items() if c == checkpoint for lang in by})

    def holders(neuron: int, method: str, at: str) -> list[str]:
        return [lang for lang, (ranks, k) in sorted(ranked.get((method, at), {}).items()) if ranks[neuron] <= k]

    evidence = {}
    for neuron in sorted(neurons):
        since = {}
        for method in methods:
            first = shared_since([len(holders(neuron, method, c)) >= 2 for c in dated[method]])
            if first is not None and dated[method][-1] == checkpoint:
                since[method] = dated[method][first]
        per_language = {
            lang: {
                "top_k_methods": [m for m in methods if lang in holders(neuron, m, checkpoint)],
                "ranks": [
                    {
                        "method": m,
                        "checkpoint": c,
                        "checkpoint_index": position[c],
                        "rank": int(ranked[(m, c)][lang][0][neuron]),
                        "k": ranked[(m, c)][lang][1],
                    }
                    for m in methods
                    for c in checkpoints
                    if lang in ranked.get((m, c), {})
                ],
            }
            for lang in languages
        }
        evidence[neuron] = {
            "shared_methods": sorted(since),
            "shared_since": [{"method": m, "checkpoint": c} for m, c in sorted(since.items())],
            "languages": per_language,
        }
    return evidence


def carded_neurons(rankings: Iterable[Mapping], checkpoint: str) -> dict[tuple[int, str, int], list[int]]:
    """Per (layer, attribute, seed): the neurons shared at ``checkpoint`` under at least one method (controls
    left out by the caller), from records with layer, attribute, seed, method, checkpoint, language, k, ranking."""
    groups: dict[tuple, dict[str, np.ndarray]] = defaultdict(dict)
    ks: dict[tuple, int] = {}
    for r in rankings:
        if r["checkpoint"] == checkpoint:
            key = (r["layer"], r["attribute"], r["seed"], r["method"])
            groups[key][r["language"]] = np.asarray(r["ranking"])
            ks[key] = int(r["k"])
    neurons: dict[tuple[int, str, int], set[int]] = defaultdict(set)
    for key, orders in groups.items():
        neurons[key[:3]] |= set(shared_neurons(orders, ks[key]))
    return {key: sorted(found) for key, found in sorted(neurons.items()) if found}


def card_rows(
    key: Mapping[str, object], d: int, ranks: Mapping[int, dict], evidence: Mapping[str, Mapping[int, dict]]
) -> list[dict]:
    """The ``neuron_cards`` rows of the neurons of ``ranks`` (`rank_evidence`), one per language ranked there.

    ``key``: model, checkpoint, layer, attribute and seed; ``evidence``: per language, `language_evidence`
    (a language without it gets no words and no means).
    """
    rows = []
    for neuron, card in sorted(ranks.items()):
        for language, ranked in card["languages"].items():
            words = evidence.get(language, {}).get(neuron, {"top_words": [], "value_means": []})
            rows.append(
                {
                    **key,
                    "neuron": neuron,
                    "d": d,
                    "language": language,
                    "shared_methods": card["shared_methods"],
                    "shared_since": card["shared_since"],
                    **ranked,
                    **words,
                }
            )
    return rows
