"""The neurons that languages share: how many per method, and a page of neuron cards per attribute."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from analysis.database import sql_string
from analysis.neuron_card_render import cards_page, group_cards, sharing
from analysis.report import Section, write_page
from analysis.report_sections.section import ReportContext, ReportSection

#: Cards shown per (model, layer, seed) on an attribute's page, those shared by the most languages first;
#: the ``neuron_cards`` table holds them all.
MAX_CARDS = 25

EXPLANATION = (
    "A neuron is shared when it is in the top-k of at least two languages' rankings for the attribute at the "
    "model's last checkpoint (the random and scale controls left out). Its card shows, per language, its mean "
    "activation per value (the highest in bold: the value it fires for) and its top-activating words of the "
    "attribute's dataset in context, from the stored activations; then its rank under each method at each "
    "checkpoint (in the top-k in bold), and since which checkpoint it has been shared."
)


def page_name(attribute: str) -> str:
    """The file of an attribute's page of cards, next to the report."""
    return f"neurons_{re.sub(r'[^A-Za-z0-9_-]+', '_', attribute)}.html"


def strength(card: Sequence[Mapping]) -> tuple[int, int]:
    """How widely a card's neuron is shared: the most languages under one method, then the number of methods."""
    shared = sharing(card)
    return max((len(languages) for _, languages, _ in shared), default=0), len(shared)


def shown_cards(cards: Sequence[Sequence[Mapping]]) -> list[Sequence[Mapping]]:
    """At most `MAX_CARDS` per (model, layer, seed), the most widely shared first, in the cards' order."""
    groups: dict[tuple, list[Sequence[Mapping]]] = {}
    for card in cards:
        groups.setdefault((card[0]["model"], card[0]["layer"], card[0]["seed"]), []).append(card)
    return [
        card
        for group in groups.values()
        for card in sorted(group, key=lambda c: (-strength(c)[0], -strength(c)[1], c[0]["neuron"]))[:MAX_CARDS]
    ]


def build(context: ReportContext) -> Section:
    section = Section("Neurons shared across languages", paragraphs=[EXPLANATION])
    section.tables.append(
        context.table(
            "Neurons shared under each method at each model's last checkpoint",
            "SELECT model, checkpoint, layer, attribute, method, count(DISTINCT neuron) AS neurons, "
            "any_value(d) AS d FROM (SELECT *, unnest(shared_methods) AS method FROM neuron_cards) "
            "GROUP BY ALL ORDER BY ALL",
        )
    )
    rows = context.records("SELECT * FROM neuron_cards ORDER BY model, attribute, layer, seed, neuron, language")
    study_order = {a: i for i, a in enumerate(context.study["attributes"])}
    attributes = sorted({r["attribute"] for r in rows}, key=lambda a: (study_order.get(a, len(study_order)), a))
    for attribute in attributes:
        cards = group_cards(r for r in rows if r["attribute"] == attribute)
        shown = shown_cards(cards)
        note = f"{len(shown)} of {len(cards)} cards shown (at most {MAX_CARDS} per model and layer, widest first)."
        query = "SELECT * FROM neuron_cards WHERE attribute = " + sql_string(attribute)
        paragraphs = [EXPLANATION, note, f'All of them: xling sql "{query}" --root <output root>.']
        page = cards_page(f"{context.study['name']}: shared {attribute} neurons", paragraphs, shown, "index.html")
        write_page(context.out_dir / page_name(attribute), page)
        section.links.append((f"{attribute}: {len(cards)} shared neurons", page_name(attribute)))
    if not attributes:
        section.paragraphs.append("No neuron is in the top-k of two languages at the last checkpoint.")
    return section


NEURONS = ReportSection("neurons", ("neuron_cards",), build)
