"""Word datasets: lemma-disjoint deterministic splits, value thresholds, pooling of real treebanks."""

import numpy as np
import pytest

from probing.conllu_io import CoNLLUError
from probing.datasets import (
    DataParams,
    build_language,
    frequent_values,
    language_texts,
    lemma_disjoint_split,
    read_language,
    sampled_sentences,
    stable_seed,
    treebank_files,
    ud_file_split,
)


def test_split_is_lemma_disjoint_and_close_to_the_fractions():
    rng = np.random.default_rng(1)
    lemmas = rng.choice([f"l{i}" for i in range(400)], size=5000).astype(str)
    splits = lemma_disjoint_split(lemmas, (0.8, 0.1, 0.1), seed=3)
    for lemma in np.unique(lemmas):
        assert len(set(splits[lemmas == lemma])) == 1
    shares = [np.mean(splits == s) for s in ("train", "dev", "test")]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.02)


def test_a_dominant_lemma_does_not_swallow_a_split():
    rng = np.random.default_rng(2)
    lemmas = np.concatenate([["le"] * 2000, rng.choice([f"l{i}" for i in range(800)], size=8000)]).astype(str)
    for seed in range(20):
        splits = lemma_disjoint_split(lemmas, (0.8, 0.1, 0.1), seed=seed)
        shares = [np.mean(splits == s) for s in ("train", "dev", "test")]
        assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.02), seed


def test_same_seed_same_split_other_seed_other_split():
    lemmas = np.asarray([f"l{i % 97}" for i in range(2000)])
    a = lemma_disjoint_split(lemmas, (0.8, 0.1, 0.1), seed=0)
    assert np.array_equal(a, lemma_disjoint_split(lemmas, (0.8, 0.1, 0.1), seed=0))
    assert not np.array_equal(a, lemma_disjoint_split(lemmas, (0.8, 0.1, 0.1), seed=1))


def test_frequent_values_requires_the_minimum_in_every_split():
    values = np.asarray(["SG"] * 30 + ["PL"] * 30 + ["DU"] * 30)
    splits = np.asarray(
        ["train"] * 10
        + ["dev"] * 10
        + ["test"] * 10
        + ["train"] * 10
        + ["dev"] * 10
        + ["test"] * 10
        + ["train"] * 28
        + ["dev"] * 1
        + ["test"] * 1
    )
    assert frequent_values(values, splits, 10) == (["PL", "SG"], ["DU"])


def test_real_language_pools_all_files_and_respects_thresholds(ud_dir):
    files = treebank_files(ud_dir, "es")
    assert [f.name for f in files] == ["es_gsd-ud-dev.conllu", "es_gsd-ud-test.conllu"]
    params = DataParams(min_examples_per_split=20)
    data = build_language(ud_dir, "es", ["Number", "Gender", "Tense"], params)
    assert data.sentences.num_rows == 1400 + 427
    number = data.datasets["Number"].to_pandas()
    assert set(number["value"]) == {"SG", "PL"}
    counts = number.groupby(["value", "split"]).size()
    assert counts.min() >= 20
    for _, group in number.groupby("lemma"):
        assert group["split"].nunique() == 1
    stats = {s["attribute"]: s for s in data.stats}
    assert stats["Number"]["n_train"] + stats["Number"]["n_dev"] + stats["Number"]["n_test"] == len(number)
    # a row's key points back at the sentence table: its form is the surface token at the word's span
    table = data.sentences.to_pandas().set_index("sentence_index")
    for row in number.itertuples():
        sentence = table.loc[row.sentence_index]
        assert sentence["text"][sentence["char_start"][row.position] : sentence["char_end"][row.position]] == row.form


def test_sentence_cap_is_a_seeded_sample(ud_dir):
    params = DataParams(max_sentences_per_language=50, seed=4)
    a = build_language(ud_dir, "mr", ["POS"], params).sentences.column("sentence_index").to_pylist()
    b = build_language(ud_dir, "mr", ["POS"], params).sentences.column("sentence_index").to_pylist()
    assert a == b and len(a) == 50 and a == sorted(a) and a[-1] > 50


def test_missing_language_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CoNLLUError, match="no such folder"):
        treebank_files(tmp_path, "xx")
    (tmp_path / "yy").mkdir()
    with pytest.raises(CoNLLUError, match=r"at least one \*\.conllu file"):
        treebank_files(tmp_path, "yy")


def test_a_multiword_token_is_one_row_with_the_features_only_one_part_has(ud_dir):
    """Portuguese "do" = de (ADP) + o (DET, Masc, Sing): one Gender and one Number row, from "o"; no POS row."""
    params = DataParams(min_examples_per_split=1)
    data = build_language(ud_dir, "pt", ["Gender", "Number", "POS"], params)
    sentences = data.sentences.to_pandas().set_index("sentence_index")
    for attribute, table in data.datasets.items():
        frame = table.to_pandas()
        spans = [
            (r.sentence_index, sentences.loc[r.sentence_index, "char_start"][r.position]) for r in frame.itertuples()
        ]
        assert len(set(spans)) == len(spans), f"{attribute}: a surface token is two rows"
    gender = data.datasets["Gender"].to_pandas()
    do = gender[gender["form"] == "do"]
    assert len(do) > 100 and set(do["value"]) == {"MASC"} and set(do["lemma"]) == {"o"}
    for r in do.head(50).itertuples():
        assert sentences.loc[r.sentence_index, "words"][r.position] == "o"  # the part that carries Gender
    number = data.datasets["Number"].to_pandas()
    assert set(number[number["form"] == "dos"]["value"]) == {"PL"}
    pos = data.datasets["POS"].to_pandas()
    assert not pos["form"].isin(["do", "da", "dos", "no", "na", "ao"]).any()  # ADP + DET: two values, no row
    assert "ADP" in set(pos[pos["form"] == "de"]["value"])  # the single-word "de" is still a POS row


def test_the_sampled_sentences_are_the_drawn_ones_of_the_fully_read_language(ud_dir):
    """Only the drawn sentences are parsed: the same sentences as reading all and drawing from them."""
    params = DataParams(max_sentences_per_language=50)
    sentences, splits = sampled_sentences(ud_dir, "fr", params)
    everything = list(read_language(ud_dir, "fr"))
    rng = np.random.default_rng(stable_seed(params.seed, "fr", "sentences"))
    drawn = np.sort(rng.choice(len(everything), size=50, replace=False)).tolist()
    assert list(sentences) == drawn
    assert [sentences[i] for i in drawn] == [everything[i] for i in drawn]
    assert splits == [ud_file_split(s.path) for s in everything]


def test_the_texts_read_without_parsing_are_those_of_the_parsed_sentences(ud_dir, tmp_path):
    for language in ("fr", "zh"):  # French has multi-word tokens, Chinese no spaces
        assert language_texts(ud_dir, language) == [s.text for s in read_language(ud_dir, language)]
    assert language_texts(ud_dir, "fr", 7) == [s.text for s in read_language(ud_dir, "fr")][:7]
    folder = tmp_path / "xx"
    folder.mkdir()
    untitled = "# sent_id = 1\n1\tDu\tDu\tPRON\t_\t_\t0\troot\t_\tSpaceAfter=No\n"
    untitled += "2\t!\t!\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n"
    titled = "# text = a  b\n1\ta\ta\tNOUN\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\t_\t_\t1\tdep\t_\t_\n\n"
    (folder / "xx_t-ud-test.conllu").write_text(untitled + titled, encoding="utf-8")
    assert language_texts(tmp_path, "xx") == [s.text for s in read_language(tmp_path, "xx")] == ["Du!", "a  b"]
    (folder / "xx_t-ud-test.conllu").write_text(titled + titled.replace("NOUN", "NOUNY"), encoding="utf-8")
    with pytest.raises(CoNLLUError, match=r"xx_t-ud-test\.conllu:6: UPOS"):  # every word line is still checked
        language_texts(tmp_path, "xx")
