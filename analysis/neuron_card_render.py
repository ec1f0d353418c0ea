"""Neuron cards as plain text (``xling neuron``) and as HTML blocks of a page per attribute (the report).

Both take the ``neuron_cards`` rows of one card (one row per language, `analysis.neuron_cards.card_rows`).
Words come from the data, so every text that goes into HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence

from analysis.report import STYLE

#: The columns that identify a card: its rows are its languages.
CARD_KEY = ("model", "checkpoint", "layer", "attribute", "seed", "neuron")

CARD_STYLE = """
div.card { border: 1px solid #ccc; border-radius: 4px; padding: 0.4em 0.9em; margin: 1em 0; }
div.card h3 { font-size: 1.05em; margin: 0.3em 0; } mark { background: #ffe08a; padding: 0 1px; }
td.words { font-size: 0.95em; } td.top { font-weight: bold; }
span.act { color: #777; font-variant-numeric: tabular-nums; }
"""


def group_cards(rows: Iterable[Mapping]) -> list[list[Mapping]]:
    """Rows grouped into cards (by `CARD_KEY`), in the order the cards first appear."""
    cards: dict[tuple, list[Mapping]] = {}
    for row in rows:
        cards.setdefault(tuple(row[c] for c in CARD_KEY), []).append(row)
    return list(cards.values())


def sharing(card: Sequence[Mapping]) -> list[tuple[str, list[str], str]]:
    """Per method under which the card's neuron is shared: the languages whose top-k holds it, and since when."""
    since = {s["method"]: s["checkpoint"] for s in card[0]["shared_since"]}
    return [
        (method, [r["language"] for r in card if method in r["top_k_methods"]], since[method])
        for method in card[0]["shared_methods"]
    ]


def title(card: Sequence[Mapping]) -> str:
    """The card's heading: neuron, layer, attribute, model and checkpoint."""
    r = card[0]
    seed = f", seed {r['seed']}" if r["seed"] else ""
    return (
        f"neuron {r['neuron']} of {r['d']}, layer {r['layer']}, {r['attribute']} "
        f"({r['model']} at {r['checkpoint']}{seed})"
    )


def sharing_sentence(card: Sequence[Mapping]) -> str:
    """Under which methods the neuron is in the top-k of two or more languages, which ones, since when."""
    shared = sharing(card)
    if not shared:
        return "not in the top-k of two languages under any method at this checkpoint"
    return "shared (top-k of >= 2 languages) under " + "; ".join(
        f"{method} by {', '.join(languages)} since {since}" for method, languages, since in shared
    )


def _checkpoints(card: Sequence[Mapping]) -> list[str]:
    found = {(r["checkpoint_index"], r["checkpoint"]) for row in card for r in row["ranks"]}
    return [name for _, name in sorted(found)]


def _methods(card: Sequence[Mapping]) -> list[str]:
    return sorted({r["method"] for row in card for r in row["ranks"]})


def _rank_history(row: Mapping, method: str, checkpoints: Sequence[str]) -> list[tuple[int, bool] | None]:
    """The language's rank under ``method`` at each checkpoint and whether it is in the top-k (None: not ranked)."""
    at = {r["checkpoint"]: (r["rank"], r["rank"] <= r["k"]) for r in row["ranks"] if r["method"] == method}
    return [at.get(c) for c in checkpoints]


def _best_value(row: Mapping) -> str | None:
    means = row["value_means"]
    return max(means, key=lambda m: m["mean"])["value"] if means else None


def card_text(card: Sequence[Mapping]) -> str:
    """The card as plain text: sharing, then per language its top-k methods, value means, top words, ranks."""
    checkpoints = _checkpoints(card)
    lines = [title(card), "  " + sharing_sentence(card), f"  checkpoints: {', '.join(checkpoints)}"]
    for row in card:
        lines.append(f"  {row['language']}: in the top-k of {', '.join(row['top_k_methods']) or 'no method'}")
        best = _best_value(row)
        means = "  ".join(
            f"{'*' if m['value'] == best else ''}{m['value']} {m['mean']:.3f} (n={m['n']})" for m in row["value_means"]
        )
        lines.append(f"    mean activation per value (* highest): {means or 'no words stored'}")
        for w in row["top_words"]:
            form = f" ({w['form']})" if w["form"] != w["word"] else ""
            lines.append(f"    {w['activation']:8.3f}  {w['left']}[{w['word']}]{w['right']}   {w['value']}{form}")
        for method in _methods(card):
            history = _rank_history(row, method, checkpoints)
            ranks = [f"{r[0]}{'*' if r[1] else ''}" if r else "-" for r in history]
            lines.append(f"    rank under {method} (* in top-k): {' -> '.join(ranks)}")
    return "\n".join(lines)


def _words_html(row: Mapping) -> str:
    items = []
    for w in row["top_words"]:
        form = f" ({html.escape(w['form'])})" if w["form"] != w["word"] else ""
        items.append(
            f"<span class='act'>{w['activation']:.2f}</span> <bdi>{html.escape(w['left'])}<mark>"
            f"{html.escape(w['word'])}</mark>{html.escape(w['right'])}</bdi> <i>{html.escape(w['value'])}</i>{form}"
        )
    return "<br>".join(items)


def _means_html(row: Mapping) -> str:
    best = _best_value(row)
    return "<br>".join(
        f"{'<b>' if m['value'] == best else ''}{html.escape(m['value'])} {m['mean']:.3f}"
        f"{'</b>' if m['value'] == best else ''} <span class='act'>n={m['n']}</span>"
        for m in row["value_means"]
    )


def card_html(card: Sequence[Mapping]) -> str:
    """The card as one HTML block: a table of its languages (top-k methods, value means, top words in context,
    the word highlighted) and a table of its rank per method and checkpoint (in the top-k in bold)."""
    checkpoints, methods = _checkpoints(card), _methods(card)
    parts = [
        f"<div class='card' id='{html.escape(anchor(card))}'><h3>{html.escape(title(card))}</h3>",
        f"<p class='note'>{html.escape(sharing_sentence(card))}.</p>",
        "<table><tr><th>language</th><th>in the top-k of</th><th>mean activation per value</th>"
        "<th>top-activating words in context</th></tr>",
    ]
    for row in card:
        parts.append(
            f"<tr><td>{html.escape(row['language'])}</td><td>{html.escape(', '.join(row['top_k_methods']))}</td>"
            f"<td>{_means_html(row)}</td><td class='words'>{_words_html(row)}</td></tr>"
        )
    parts.append("</table><table><tr><th rowspan='2'>rank</th>")
    parts += [f"<th colspan='{len(checkpoints)}'>{html.escape(m)}</th>" for m in methods]
    parts.append("</tr><tr>" + "".join(f"<th>{html.escape(c)}</th>" for _ in methods for c in checkpoints) + "</tr>")
    for row in card:
        cells = []
        for method in methods:
            for r in _rank_history(row, method, checkpoints):
                cells.append("<td></td>" if r is None else f"<td class='num{' top' if r[1] else ''}'>{r[0]}</td>")
        parts.append(f"<tr><td>{html.escape(row['language'])}</td>{''.join(cells)}</tr>")
    parts.append("</table></div>")
    return "\n".join(parts)


def anchor(card: Sequence[Mapping]) -> str:
    """The card's id within its page."""
    r = card[0]
    return f"{r['model']}-L{r['layer']}-s{r['seed']}-n{r['neuron']}"


def cards_page(heading: str, paragraphs: Sequence[str], cards: Sequence[Sequence[Mapping]], back: str) -> str:
    """A whole HTML page of cards under a heading and paragraphs, linking back to the report (``back``)."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(heading)}</title>",
        f"<style>{STYLE}{CARD_STYLE}</style></head><body>",
        f"<p><a href='{html.escape(back)}'>back to the report</a></p><h1>{html.escape(heading)}</h1>",
        *[f"<p>{html.escape(p)}</p>" for p in paragraphs],
        *[card_html(card) for card in cards],
        "</body></html>",
    ]
    return "\n".join(parts)
