"""Neuron cards (issue 13 §1): a planted neuron's card; then on the tiny study's store, which neurons get a
card, their top-activating words, value means and ranks against independent computations over the stored
tables, the attribute pages of the report, and ``xling neuron``."""

from __future__ import annotations

import functools
from collections import Counter

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.database import DATABASE_NAME
from analysis.neuron_card_render import card_text, group_cards
from analysis.neuron_card_store import without_controls
from analysis.neuron_cards import (
    CONTROL_METHODS,
    card_rows,
    carded_neurons,
    language_evidence,
    rank_evidence,
    shared_since,
    word_context,
)
from analysis.report_sections.neurons import NEURONS, page_name
from analysis.report_sections.section import ReportContext
from analysis.store import Store
from analysis.tables import rows_table
from probing.probe_data import ActivationIndex
from ray_jobs import cli, neuron
from ray_jobs.analyse import run_neuron_cards
from ray_jobs.config import load_config, model_revisions

MODEL = "tiny-bloom"


def planted_language() -> tuple[ActivationIndex, pa.Table, pa.Table]:
    """Two sentences, Number words, and 3-wide vectors in which neuron 1 fires for Plur (and 0 does not)."""
    sentences = pa.table(
        {
            "sentence_index": pa.array([0, 1], pa.int32()),
            "text": ["The cats sat on mats .", "A dog ran ."],
            "char_start": [[0, 4, 9, 13, 16, 21], [0, 2, 6, 10]],
            "char_end": [[3, 8, 12, 15, 20, 22], [1, 5, 9, 11]],
        }
    )
    words = pa.table(
        {
            "sentence_index": pa.array([0, 0, 0, 1, 1], pa.int32()),
            "position": pa.array([0, 1, 4, 1, 2], pa.int32()),
            "form": ["The", "cats", "mats", "dog", "ran"],
            "value": ["Sing", "Plur", "Plur", "Sing", "Sing"],
            "split": ["train", "train", "dev", "test", "test"],
        }
    )
    vectors = {(0, 0): [0.9, 0.1, 0.0], (0, 1): [0.2, 4.0, 0.0], (0, 4): [0.3, 3.0, 0.0], (1, 1): [0.8, 0.5, 0.0]}
    activations = pa.table(  # "ran" has no stored vector (its sentence dropped for length, say)
        {
            "sentence_index": pa.array([key[0] for key in vectors], pa.int32()),
            "position": pa.array([key[1] for key in vectors], pa.int32()),
            "vector": pa.array(list(vectors.values()), pa.list_(pa.float32(), 3)),
        }
    )
    return ActivationIndex.from_table(activations), words, sentences


def test_a_planted_neuron_shows_the_value_it_fires_for_and_its_top_words_in_context():
    evidence = language_evidence(*planted_language(), neurons=[1], n_top=2, width=2)
    assert list(evidence) == [1]
    means = evidence[1]["value_means"]
    assert means == [
        {"value": "Plur", "mean": pytest.approx(3.5), "n": 2},
        {"value": "Sing", "mean": pytest.approx(0.3), "n": 2},  # "ran" has no vector: left out
    ]
    top = [(w["left"], w["word"], w["right"], w["value"], w["split"]) for w in evidence[1]["top_words"]]
    assert top == [("The ", "cats", " sat on", "Plur", "train"), ("sat on ", "mats", " .", "Plur", "dev")]
    assert [w["activation"] for w in evidence[1]["top_words"]] == pytest.approx([4.0, 3.0])


def planted_rankings() -> list[dict]:
    """Rankings of 6 neurons (k = 2) at checkpoints c1, c2. Under probe, neuron 5 is in the top-2 of en and fr
    at c2 (of en only at c1), 1 of en only, 2 of de only, and at c1 none is in two languages' top-2; under
    the random control en and fr share neuron 0, under the scale control en and de share neuron 4."""
    orders = {
        ("probe", "c1"): {"en": [5, 0, 1, 2, 3, 4], "fr": [1, 3, 5, 0, 2, 4], "de": [2, 4, 0, 1, 3, 5]},
        ("probe", "c2"): {"en": [5, 1, 0, 2, 3, 4], "fr": [3, 5, 0, 1, 2, 4], "de": [2, 4, 0, 1, 3, 5]},
        ("random", "c2"): {"en": [0, 1, 2, 3, 4, 5], "fr": [0, 2, 1, 3, 4, 5], "de": [4, 3, 2, 1, 0, 5]},
        ("variance", "c2"): {"en": [4, 3, 2, 1, 0, 5], "fr": [1, 2, 0, 3, 4, 5], "de": [4, 0, 2, 1, 3, 5]},
    }
    return [
        {"layer": 1, "attribute": "Number", "seed": 0, "method": method, "checkpoint": checkpoint}
        | {"language": language, "k": 2, "ranking": ranking}
        for (method, checkpoint), by_language in orders.items()
        for language, ranking in by_language.items()
    ]


def test_only_a_neuron_in_the_top_k_of_two_languages_has_a_card():
    records = without_controls(planted_rankings())
    assert carded_neurons(records, "c2") == {(1, "Number", 0): [5]}  # not 1, 2 (one language), 0 (random), 4 (variance)
    assert carded_neurons(planted_rankings(), "c2") == {(1, "Number", 0): [0, 4, 5]}  # what the controls would add
    assert carded_neurons(records, "c1") == {}  # at c1 no neuron is in the top-2 of two languages


def test_a_planted_card_holds_ranks_per_checkpoint_since_when_shared_and_the_words():
    ranks = rank_evidence(without_controls(planted_rankings()), ["c1", "c2"], "c2", [5])
    assert ranks[5]["shared_methods"] == ["probe"]
    assert ranks[5]["shared_since"] == [{"method": "probe", "checkpoint": "c2"}]
    assert {lang: card["top_k_methods"] for lang, card in ranks[5]["languages"].items()} == {
        "de": [],
        "en": ["probe"],
        "fr": ["probe"],
    }
    fr = [(r["checkpoint"], r["rank"], r["k"]) for r in ranks[5]["languages"]["fr"]["ranks"]]
    assert fr == [("c1", 3, 2), ("c2", 2, 2)]
    planted = language_evidence(*planted_language(), neurons=[1], n_top=1)[1]  # the planted words, as en's
    key = {"model": "m", "checkpoint": "c2", "layer": 1, "attribute": "Number", "seed": 0}
    rows = card_rows(key, 6, ranks, {"en": {5: planted}})
    assert [(r["neuron"], r["language"]) for r in rows] == [(5, "de"), (5, "en"), (5, "fr")]
    text = card_text(rows)
    assert text.startswith("neuron 5 of 6, layer 1, Number (m at c2)")
    assert "shared (top-k of >= 2 languages) under probe by en, fr since c2" in text
    assert "*Plur 3.500 (n=2)  Sing 0.300 (n=2)" in text and "The [cats] sat on mats" in text
    assert "rank under probe (* in top-k): 3 -> 2*" in text  # fr
    assert "mean activation per value (* highest): no words stored" in text  # de and fr have no words here


@pytest.fixture(scope="module")
def study(tiny_study):
    """The finished tiny study: its root, config, the tiny model's checkpoint order and its stored cards."""
    config = load_config(tiny_study.config, check_models=False)
    order = list(model_revisions(next(spec for spec in config.models if spec.name == MODEL)))
    with duckdb.connect(str(tiny_study.root / DATABASE_NAME), read_only=True) as con:
        result = con.execute("SELECT * FROM neuron_cards ORDER BY ALL")
        columns = [c[0] for c in result.description]
        rows = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    assert rows, "the tiny study has no shared neuron: nothing below would be tested"
    return tiny_study.root, config, order, rows


def rankings(root) -> pd.DataFrame:
    """The stored top-to-bottom rankings, read by DuckDB straight from the Parquet files."""
    glob = f"{root}/rankings/*/*/*/*/*/*/*.parquet"
    return duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) WHERE direction = 'ttb'").df()


@functools.cache
def activations(root, checkpoint: str, layer: int, language: str) -> pd.DataFrame:
    """One stored activation partition as a frame of keys and a (n, d) matrix column."""
    path = root / "activations" / f"model={MODEL}" / f"checkpoint={checkpoint}" / f"layer={layer}"
    table = pq.read_table(path / f"language={language}" / "part-0.parquet")
    frame = table.select(["sentence_index", "position"]).to_pandas()
    frame["vector"] = list(np.asarray(table.column("vector").to_pylist(), dtype=np.float32))
    return frame


def labelled(root, checkpoint: str, layer: int, language: str, attribute: str, neuron_id: int) -> pd.DataFrame:
    """The attribute's words in a language with the neuron's stored activation (words without one dropped)."""
    words = pq.read_table(root / "words" / f"language={language}" / f"attribute={attribute}" / "part-0.parquet")
    merged = words.to_pandas().merge(activations(root, checkpoint, layer, language), on=["sentence_index", "position"])
    merged["activation"] = [float(v[neuron_id]) for v in merged["vector"]]
    return merged


@pytest.mark.slow
def test_a_neuron_is_carded_iff_it_is_in_the_top_k_of_two_languages(study):
    root, _, order, rows = study
    stored = rankings(root)
    last = stored[(stored.model == MODEL) & (stored.checkpoint == order[-1]) & (~stored.method.isin(CONTROL_METHODS))]
    expected: dict[tuple, set[str]] = {}
    for (layer, attribute, seed, method), group in last.groupby(["layer", "attribute", "seed", "method"]):
        counts = Counter(n for ranking, k in zip(group.ranking, group.k, strict=True) for n in list(ranking)[:k])
        for n, count in counts.items():
            if count >= 2:
                expected.setdefault((layer, attribute, seed, int(n)), set()).add(method)
    carded = {(r["layer"], r["attribute"], r["seed"], r["neuron"]): set(r["shared_methods"]) for r in rows}
    assert carded == expected
    assert {r["checkpoint"] for r in rows} == {order[-1]}
    for card in group_cards(rows):  # a row per language ranked there
        languages = last[(last.layer == card[0]["layer"]) & (last.attribute == card[0]["attribute"])].language
        assert [r["language"] for r in card] == sorted(set(languages))


@pytest.mark.slow
def test_top_words_are_the_highest_stored_activations_in_context(study):
    root, _, order, rows = study
    sentences = {
        lang: pq.read_table(root / "sentences" / f"language={lang}" / "part-0.parquet").to_pandas()
        for lang in {r["language"] for r in rows}
    }
    for row in rows:
        words = labelled(root, order[-1], row["layer"], row["language"], row["attribute"], row["neuron"])
        top = words.sort_values(["activation", "sentence_index", "position"], ascending=[False, True, True]).head(5)
        got = row["top_words"]
        keys = list(zip(top.sentence_index, top.position, strict=True))
        assert [(w["sentence_index"], w["position"]) for w in got] == keys
        assert [w["activation"] for w in got] == pytest.approx(list(top.activation), rel=1e-6)
        assert [w["value"] for w in got] == list(top.value)
        for w in got:
            sentence = sentences[row["language"]].set_index("sentence_index").loc[w["sentence_index"]]
            start, end = sentence.char_start[w["position"]], sentence.char_end[w["position"]]
            assert w["word"] == sentence.text[start:end]
            assert sentence.text[: end + len(w["right"])].endswith(w["left"] + w["word"] + w["right"])


@pytest.mark.slow
def test_value_means_are_the_group_means_of_the_stored_activations(study):
    root, _, order, rows = study
    for row in rows:
        words = labelled(root, order[-1], row["layer"], row["language"], row["attribute"], row["neuron"])
        groups = words.groupby("value").activation.agg(["mean", "count"])
        assert [m["value"] for m in row["value_means"]] == list(groups.index)
        assert [m["mean"] for m in row["value_means"]] == pytest.approx(list(groups["mean"]), rel=1e-5, abs=1e-6)
        assert [m["n"] for m in row["value_means"]] == list(groups["count"])


@pytest.mark.slow
def test_ranks_per_method_and_checkpoint_and_since_when_shared(study):
    root, _, order, rows = study
    stored = rankings(root)
    stored = stored[(stored.model == MODEL) & (~stored.method.isin(CONTROL_METHODS))]
    for row in rows:
        mine = stored[(stored.layer == row["layer"]) & (stored.attribute == row["attribute"])]
        expected = [
            (r.method, r.checkpoint, list(r.ranking).index(row["neuron"]) + 1, r.k)
            for r in mine[mine.language == row["language"]].itertuples()
        ]
        got = [(r["method"], r["checkpoint"], r["rank"], r["k"]) for r in row["ranks"]]
        assert sorted(got) == sorted(expected)
        for since in row["shared_since"]:
            per_checkpoint = mine[mine.method == since["method"]]
            flags = [
                sum(
                    row["neuron"] in list(r.ranking)[: r.k]
                    for r in per_checkpoint[per_checkpoint.checkpoint == c].itertuples()
                )
                >= 2
                for c in order
            ]
            first = next(i for i in range(len(order)) if all(flags[i:]))
            assert since["checkpoint"] == order[first]


def test_shared_since_is_the_start_of_the_last_unbroken_run():
    assert shared_since([False, True, False, True, True]) == 3
    assert shared_since([True, True]) == 0
    assert shared_since([True, False]) is None
    assert shared_since([]) is None


def test_context_is_cut_from_the_sentence_text_by_character_offsets():
    text = "qui au lieu de souligner la thématique"
    words = ["qui", "à", "le", "lieu", "de", "souligner", "la", "thématique"]
    starts = [0, 4, 4, 7, 12, 15, 25, 28]
    ends = [3, 6, 6, 11, 14, 24, 27, 38]
    assert [text[a:b] for a, b in zip(starts, ends, strict=True)][3] == words[3]
    assert word_context(text, starts, ends, 2, width=2) == ("qui ", "au", " lieu de")
    assert word_context(text, starts, ends, 0, width=2) == ("", "qui", " au")
    assert word_context(text, starts, ends, 7, width=1) == ("la ", "thématique", "")


@pytest.mark.slow
def test_a_rerun_of_the_finished_study_leaves_the_cards_as_they_are(study):
    root, config, _, _ = study
    assert run_neuron_cards(config, Store(root)) is False


@pytest.mark.slow
def test_each_attribute_has_a_page_linked_from_the_report(study):
    root, _, _, rows = study
    index = (root / "report" / "index.html").read_text(encoding="utf-8")
    assert "Neurons shared across languages" in index
    for attribute in {r["attribute"] for r in rows}:
        assert f"href='{page_name(attribute)}'" in index
        page = (root / "report" / page_name(attribute)).read_text(encoding="utf-8")
        assert "href='index.html'" in page
        for card in group_cards(r for r in rows if r["attribute"] == attribute):
            assert f"neuron {card[0]['neuron']} of {card[0]['d']}, layer {card[0]['layer']}" in page


@pytest.mark.slow
def test_the_pages_escape_the_words(study, tmp_path):
    rows = [dict(r) for r in study[3]]
    attack = "<script>alert('x')</script>&"
    rows[0]["top_words"] = [{**rows[0]["top_words"][0], "word": attack, "left": "<u>left", "form": "<u>form"}]
    rows[0]["value_means"] = [{"value": "<u>value", "mean": 1.0, "n": 1}]
    con = duckdb.connect()
    con.register(
        "neuron_cards",
        rows_table("neuron_cards", rows, drop=("model",)).append_column("model", pa.array([MODEL] * len(rows))),
    )
    facts = {"name": "<u>study", "attributes": [rows[0]["attribute"]]}
    NEURONS.build(ReportContext(con, frozenset({"neuron_cards"}), facts, tmp_path))
    page = (tmp_path / page_name(rows[0]["attribute"])).read_text(encoding="utf-8")
    assert "<script>" not in page and "<u>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page
    for text in ("left", "form", "value", "study"):
        assert f"&lt;u&gt;{text}" in page


@pytest.mark.slow
def test_the_cli_prints_the_stored_card_of_a_shared_neuron(study, capsys):
    root, _, _, rows = study
    card = group_cards(rows)[0]
    first = card[0]
    argv = ["neuron", "--root", str(root), "--layer", str(first["layer"]), "--neuron", str(first["neuron"])]
    assert cli.main([*argv, "--attribute", first["attribute"]]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == card_text(card)
    for row in card:
        for word in row["top_words"]:
            assert f"[{word['word']}]" in printed


@pytest.mark.slow
def test_the_cli_names_the_valid_range_of_a_neuron_or_layer_that_does_not_exist(study, capsys):
    root, _, _, rows = study
    d, layer = rows[0]["d"], rows[0]["layer"]
    assert neuron.main(["--root", str(root), "--layer", str(layer), "--neuron", str(d)]) == 2
    assert f"neuron {d} is out of range: layer {layer} of {MODEL} has neurons 0..{d - 1}" in capsys.readouterr().err
    layers = sorted({r["layer"] for r in rows})
    assert neuron.main(["--root", str(root), "--layer", "9", "--neuron", "0", "--model", MODEL]) == 2
    assert f"its layers: {', '.join(map(str, layers))}" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_says_a_neuron_that_is_not_shared_has_no_card(study, capsys):
    root, _, order, rows = study
    layer, d = rows[0]["layer"], rows[0]["d"]
    carded = sorted({r["neuron"] for r in rows if r["layer"] == layer})
    lonely = min(set(range(d)) - set(carded))
    assert neuron.main(["--root", str(root), "--layer", str(layer), "--neuron", str(lonely)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"neuron {lonely} of layer {layer} has no card: it is not in the top-k of two languages" in captured.err
    assert f"at {MODEL}'s last checkpoint ({order[-1]})" in captured.err
    assert f"the layer's {len(carded)} shared neurons: {', '.join(map(str, carded[:3]))}" in captured.err
