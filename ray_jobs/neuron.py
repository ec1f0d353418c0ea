"""``xling neuron --root R --layer L --neuron N [--attribute A] [--model M]``: print a neuron's card.

The card is the neuron's rows of the stored ``neuron_cards`` table (what the analyse stage wrote, what the
report's pages show), read with one SQL query in `analysis.database.open_locked`; the command writes
nothing. Only a neuron shared at the model's last checkpoint (in the top-k of two languages for an attribute)
has a card: for any other, and for a layer or neuron the study does not have, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from analysis.database import open_locked, study_tables
from analysis.neuron_card_render import card_text, group_cards
from analysis.store import Store

#: The card's rows: a card's languages in order, cards by attribute and seed.
CARD_QUERY = (
    "SELECT * FROM neuron_cards WHERE model = $model AND layer = $layer AND neuron = $neuron "
    "AND ($attribute IS NULL OR attribute = $attribute) ORDER BY attribute, seed, language"
)


class CardError(ValueError):
    """What the command was asked that the study does not hold; its message names what it does hold."""


def _column(con: duckdb.DuckDBPyConnection, sql: str, **params: object) -> list:
    return [row[0] for row in con.execute(sql, params).fetchall()]


def card(store: Store, layer: int, neuron: int, model: str | None, attribute: str | None) -> str:
    """The text of the neuron's card(s), one per attribute (and seed) it is shared for at that layer."""
    tables = study_tables(store)
    if not tables:
        raise CardError(f"{store.root} is not a study: it holds no result table")
    if "neuron_cards" not in tables or "rankings" not in tables:
        raise CardError("the study has no neuron_cards table yet: run the analyse stage first")
    con = open_locked(store)
    models = _column(con, "SELECT DISTINCT model FROM neuron_cards ORDER BY 1")
    if not models:
        raise CardError("no neuron has a card: none is in the top-k of two languages at a model's last checkpoint")
    if model is None:
        if len(models) > 1:
            raise CardError(f"pick a model with --model; models with cards: {', '.join(models)}")
        model = models[0]
    if model not in models:
        raise CardError(f"no model {model!r} has cards; models with cards: {', '.join(models)}")
    widths = dict(
        con.execute(
            "SELECT layer, any_value(len(ranking)) FROM rankings WHERE model = $model GROUP BY layer", {"model": model}
        ).fetchall()
    )
    if layer not in widths:
        raise CardError(f"layer {layer} has no rankings of {model}; its layers: {', '.join(map(str, sorted(widths)))}")
    d = widths[layer]
    if not 0 <= neuron < d:
        raise CardError(f"neuron {neuron} is out of range: layer {layer} of {model} has neurons 0..{d - 1}")
    params = {"model": model, "layer": layer, "neuron": neuron, "attribute": attribute}
    result = con.execute(CARD_QUERY, params)
    columns = [c[0] for c in result.description]
    rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    if not rows:
        where = {"model": model, "layer": layer, "attribute": attribute}
        checkpoint = _column(con, "SELECT DISTINCT checkpoint FROM neuron_cards WHERE model = $model", model=model)
        carded = _column(
            con,
            "SELECT DISTINCT neuron FROM neuron_cards WHERE model = $model AND layer = $layer "
            "AND ($attribute IS NULL OR attribute = $attribute) ORDER BY 1",
            **where,
        )
        of = f" for {attribute}" if attribute else ""
        shown = ", ".join(map(str, carded[:20])) + (", ..." if len(carded) > 20 else "")
        raise CardError(
            f"neuron {neuron} of layer {layer} has no card{of}: it is not in the top-k of two languages under any "
            f"method at {model}'s last checkpoint ({', '.join(checkpoint)}); the layer's {len(carded)} shared "
            f"neurons{of}: {shown or 'none'}"
        )
    return "\n\n".join(card_text(c) for c in group_cards(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a neuron's card: its top words, value means and ranks.")
    parser.add_argument("--root", required=True, help="the study's output root")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--neuron", type=int, required=True, help="0 .. d-1")
    parser.add_argument("--attribute", help="one attribute (default: every attribute it is shared for)")
    parser.add_argument("--model", help="needed when several models have cards")
    args = parser.parse_args(argv)
    try:
        print(card(Store(args.root, create=False), args.layer, args.neuron, args.model, args.attribute))
    except CardError as err:
        print(f"neuron: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
