"""Transfer data: strict XNLI readers, the English split, pair encoding, UD POS files and first-sub-word labels."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from probing.conllu_io import CoNLLUError
from probing.models import encode_words
from tests.conftest import XNLI_DIR
from transfer.examples import IGNORE_INDEX, Encoded, collate, subsample
from transfer.metrics import accuracy, macro_f1
from transfer.pos_data import UPOS_TAGS, encode_pos, read_tagged, split_files
from transfer.xnli_data import (
    XNLI_LABELS,
    NliPair,
    XNLIError,
    encode_xnli,
    read_parallel_dev,
    read_xnli,
    read_xnli_dev,
    read_xnli_official,
    split_english_dev,
)
from transfer.zero_shot import XNLI_PARAMS, xnli_parts


def test_real_english_dev_has_2490_rows_830_per_label():
    pairs = read_xnli(XNLI_DIR / "dev-en.tsv")
    assert len(pairs) == 2490
    assert Counter(XNLI_LABELS[p.label] for p in pairs) == dict.fromkeys(XNLI_LABELS, 830)
    assert all(p.premise.strip() and p.hypothesis.strip() for p in pairs)


def test_unlabelled_test_file_is_rejected_for_accuracy():
    with pytest.raises(XNLIError, match=r"test-en\.tsv:1: expected 3 tab-separated columns.*found 2 columns"):
        read_xnli(XNLI_DIR / "test-en.tsv")


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"a\tb\tneutral\na\tb\n", 2, "3 tab-separated columns"),
        (b"a\tb\tneutral\n \tb\tneutral\n", 2, "found an empty premise"),
        (b"a\t\tneutral\n", 1, "found an empty hypothesis"),
        (b"a\tb\tneutral\na\tb\tentails\n", 2, "a label in entailment, neutral, contradiction, found 'entails'"),
        (b"a\tb\tneutral\na\t\xff\tneutral\n", 2, "UTF-8 text, found byte 0xff"),
    ],
)
def test_malformed_rows_name_file_line_and_expectation(tmp_path, content, line, message):
    path = tmp_path / "dev-xx.tsv"
    path.write_bytes(content)
    with pytest.raises(XNLIError, match=message) as info:
        read_xnli(path)
    assert str(info.value).startswith(f"{path}:{line}: expected")
    assert isinstance(info.value, ValueError) and info.value.line == line


def test_empty_and_missing_files_are_errors(tmp_path):
    (tmp_path / "dev-xx.tsv").write_bytes(b"")
    with pytest.raises(XNLIError, match="at least one row"):
        read_xnli(tmp_path / "dev-xx.tsv")
    with pytest.raises(FileNotFoundError, match=r"no dev-yy\.tsv"):
        read_xnli_dev(tmp_path, "yy")


def _official(tmp_path, rows):
    header = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpairID"
    path = tmp_path / "xnli.dev.tsv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_official_layout_selects_one_language_by_header(tmp_path):
    path = _official(
        tmp_path,
        [
            "en\tneutral\t( x )\tA man sleeps.\tA man rests.\t1",
            "fr\tcontradiction\t( x )\tUn homme dort.\tUn homme court.\t1",
            "en\tentailment\t( x )\tIt rains.\tIt is wet.\t2",
        ],
    )
    assert read_xnli_official(path, "en") == [
        NliPair("A man sleeps.", "A man rests.", XNLI_LABELS.index("neutral")),
        NliPair("It rains.", "It is wet.", XNLI_LABELS.index("entailment")),
    ]
    assert read_xnli_dev(tmp_path, "fr") == [NliPair("Un homme dort.", "Un homme court.", 2)]
    with pytest.raises(XNLIError, match="rows for language 'de', found only en, fr"):
        read_xnli_official(path, "de")


def test_official_layout_errors_name_line(tmp_path):
    with pytest.raises(XNLIError, match=r":3: expected a label in .* found 'maybe'"):
        read_xnli_official(_official(tmp_path, ["en\tneutral\tx\ta\tb\t1", "en\tmaybe\tx\ta\tb\t2"]), "en")
    with pytest.raises(XNLIError, match=r":3: expected 6 tab-separated columns as in the header, found 1"):
        read_xnli_official(_official(tmp_path, ["en\tneutral\tx\ta\tb\t1", ""]), "en")
    (tmp_path / "bad.tsv").write_text("lang\tsentence1\tsentence2\n", encoding="utf-8")
    with pytest.raises(XNLIError, match=r"bad\.tsv:1: expected a header row .* found no language"):
        read_xnli_official(tmp_path / "bad.tsv", "en")


def test_english_split_is_by_premise_deterministic_disjoint_and_complete():
    pairs = read_xnli(XNLI_DIR / "dev-en.tsv")
    split = split_english_dev(pairs, seed=3)
    parts = (split.train, split.select, split.test)
    assert tuple(map(len, parts)) == (1992, 249, 249)  # 830 premises x 3 hypotheses, cut 664 / 83 / 83
    assert split == split_english_dev(pairs, seed=3) and split_english_dev(pairs, seed=4).select != split.select
    rows = [set(part) for part in parts]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert set.union(*rows) == set(range(len(pairs)))
    premises = [{pairs[i].premise for i in part} for part in parts]
    assert not (premises[0] & premises[1]) and not (premises[0] & premises[2]) and not (premises[1] & premises[2])


def test_no_evaluated_target_row_is_parallel_to_an_english_training_or_selection_row():
    languages = sorted(p.name[4:-4] for p in XNLI_DIR.glob("dev-*.tsv"))
    assert len(languages) == 8
    data = xnli_parts(XNLI_DIR, languages, XNLI_PARAMS)
    english = read_xnli(XNLI_DIR / "dev-en.tsv")
    seen_rows = {p.line - 1 for p in (*data.train, *data.select)}
    seen_premises = {english[i].premise for i in seen_rows}
    assert len(seen_rows) == 1992 + 249  # no cap in the default setting
    english_test_rows = [p.line - 1 for p in data.tests["en"]]
    for language, pairs in data.tests.items():
        rows = [p.line - 1 for p in pairs]
        assert len(rows) == 249 and rows == english_test_rows  # the same items in every language
        assert not set(rows) & seen_rows
        assert not {english[i].premise for i in rows} & seen_premises
        assert [p.label for p in pairs] == [english[i].label for i in rows]
        own = read_xnli(XNLI_DIR / f"dev-{language}.tsv")
        assert pairs == [own[i] for i in rows]  # the language's own rows (translations), not English ones


def test_capped_targets_share_the_same_rows_of_the_english_test_part():
    data = xnli_parts(XNLI_DIR, ["zh", "fr"], replace(XNLI_PARAMS, max_train_examples=64, max_eval_examples=30))
    rows = {lang: [p.line for p in pairs] for lang, pairs in data.tests.items()}
    assert list(rows) == ["en", "zh", "fr"] and len(data.train) == 64 and len(data.select) == 30
    assert rows["en"] == rows["zh"] == rows["fr"] and len(rows["en"]) == 30


def _copy_dev(tmp_path, language, edit):
    lines = (XNLI_DIR / "dev-fr.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "dev-en.tsv").write_bytes((XNLI_DIR / "dev-en.tsv").read_bytes())
    (tmp_path / f"dev-{language}.tsv").write_text("".join(edit(lines)), encoding="utf-8")
    return tmp_path / f"dev-{language}.tsv"


def test_target_files_that_are_not_row_parallel_are_errors_naming_file_and_line(tmp_path):
    english = read_xnli(XNLI_DIR / "dev-en.tsv")
    short = _copy_dev(tmp_path, "fr", lambda lines: lines[:10] + lines[11:])
    with pytest.raises(XNLIError, match=rf"^{short}: expected 2490 rows, parallel to the English dev file, found 2489"):
        read_parallel_dev(tmp_path, "fr", english)
    swapped = _copy_dev(tmp_path, "de", lambda lines: [lines[1], lines[0], *lines[2:]])  # rows 1, 2 differ in label
    assert english[0].label != english[1].label
    with pytest.raises(XNLIError, match=rf"^{swapped}:1: expected label '\w+' as on row 1 of the English dev file"):
        read_parallel_dev(tmp_path, "de", english)
    with pytest.raises(XNLIError, match=r"dev-de\.tsv:1: expected label"):
        xnli_parts(tmp_path, ["de"], XNLI_PARAMS)


def test_pair_encoding_uses_template_or_eos_and_respects_max_length(tiny_bloom_dir, tiny_bert_dir):
    from transformers import AutoTokenizer

    long = NliPair(" ".join(["word"] * 200), "short hypothesis here", 1)
    bloom = AutoTokenizer.from_pretrained(tiny_bloom_dir / "step-a")
    (plain, cut) = encode_xnli(bloom, [NliPair("A cat.", "An animal.", 0), long], max_length=32)
    eos = bloom.eos_token_id
    premise, hypothesis = bloom("A cat.")["input_ids"], bloom("An animal.")["input_ids"]
    assert plain.input_ids == (*premise, eos, *hypothesis, eos) and plain.labels == 0
    assert len(cut.input_ids) == 32 and cut.input_ids[-1] == eos
    assert cut.input_ids[-2 - len(bloom("short hypothesis here")["input_ids"])] == eos  # hypothesis kept whole
    bert = AutoTokenizer.from_pretrained(tiny_bert_dir)
    (pair,) = encode_xnli(bert, [NliPair("A cat.", "An animal.", 2)], max_length=32)
    direct = bert("A cat.", "An animal.")
    assert pair.input_ids == tuple(direct["input_ids"]) and pair.labels == 2
    assert pair.input_ids[0] == bert.cls_token_id and pair.input_ids.count(bert.sep_token_id) == 2
    assert pair.token_type_ids == (tuple(direct["token_type_ids"]) if "token_type_ids" in direct else None)


def test_split_files_pick_the_split_and_name_the_folder_when_missing(ud_dir, tmp_path):
    assert [p.name for p in split_files(ud_dir, "hi", "test")] == [
        "hi_hdtb-ud-test_subset.conllu",
        "hi_pud-ud-test.conllu",
    ]
    assert [p.name for p in split_files(ud_dir, "en", "train")] == ["en_ewt-ud-train.conllu"]
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "xx_t-ud-dev.conllu").write_text("1\ta\ta\tNOUN\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'xx'}: no \*-test\*\.conllu .* xx_t-ud-dev\.conllu"):
        split_files(tmp_path, "xx", "test")
    with pytest.raises(FileNotFoundError, match="no treebank folder for language 'yy'"):
        split_files(tmp_path, "yy", "test")


def test_unknown_upos_tag_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "xx-ud-test.conllu"
    path.write_text(
        "# text = a b\n1\ta\ta\tNOUN\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\t_\t_\t1\tdep\t_\t_\n\n"
        "# text = c\n1\tc\tc\tNOUNY\t_\t_\t0\troot\t_\t_\n\n",
        encoding="utf-8",
    )
    with pytest.raises(CoNLLUError, match=rf"{path}:6: UPOS: expected one of the 17 UD tags .* found 'NOUNY'"):
        read_tagged([path])


def test_a_sampled_read_keeps_the_sentences_subsample_keeps_of_a_full_read(ud_dir):
    hindi_test = split_files(ud_dir, "hi", "test")  # two files pooled: HDTB's sample and PUD
    assert len(hindi_test) == 2
    for files in (hindi_test, split_files(ud_dir, "en", "dev")):
        everything = read_tagged(files)
        for limit, seed in ((50, 0), (50, 7), (len(everything) - 1, 3), (None, 0), (len(everything) + 5, 0)):
            assert read_tagged(files, limit, seed) == subsample(everything, limit, seed)


def test_a_sampled_read_still_checks_the_sentences_it_leaves_out(tmp_path):
    good = "# text = a\n1\ta\ta\tNOUN\t_\t_\t0\troot\t_\t_\n\n"
    path = tmp_path / "xx-ud-test.conllu"
    path.write_text(good * 30 + "# text = c\n1\tc\tc\tNOUNY\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    assert subsample(list(range(31)), 1, seed=0) != [30]  # the bad sentence is left out of the sample
    with pytest.raises(CoNLLUError, match=rf"{path}:92: UPOS: expected one of the 17 UD tags"):
        read_tagged([path], limit=1, seed=0)


def test_real_ud_words_are_labelled_once_on_their_first_subword(tiny_bloom_dir, ud_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bloom_dir / "step-a")
    sentences = read_tagged(split_files(ud_dir, "en", "dev"))[:20]
    examples = encode_pos(tokenizer, sentences, max_length=1000)
    for sentence, example in zip(sentences, examples, strict=True):
        ((ids, word_ids),) = encode_words(tokenizer, [sentence.words])
        assert example.input_ids == tuple(ids)
        firsts = [i for i, w in enumerate(word_ids) if w >= 0 and (i == 0 or word_ids[i - 1] != w)]
        assert [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX] == firsts
        assert [example.labels[i] for i in firsts] == list(sentence.tags)
    assert any(len(e.input_ids) > len(s.words) for e, s in zip(examples, sentences, strict=True))  # some multi-piece


def test_truncation_keeps_trailing_special_tokens(tiny_bert_dir, ud_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    sentence = max(read_tagged(split_files(ud_dir, "en", "dev"))[:50], key=lambda s: len(s.words))
    (example,) = encode_pos(tokenizer, [sentence], max_length=12)
    assert len(example.input_ids) == len(example.labels) == 12
    assert example.input_ids[0] == tokenizer.cls_token_id and example.input_ids[-1] == tokenizer.sep_token_id
    assert example.labels[-1] == IGNORE_INDEX and example.labels[1] == sentence.tags[0]
    assert UPOS_TAGS[sentence.tags[0]] in UPOS_TAGS


def test_collate_pads_ids_labels_and_mask():
    batch = collate([Encoded((5, 6, 7), (1, IGNORE_INDEX, 2)), Encoded((8,), (3,))], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, IGNORE_INDEX, 2], [3, IGNORE_INDEX, IGNORE_INDEX]]
    assert collate([Encoded((5,), 2), Encoded((6, 7), 0)], pad_id=9)["labels"].tolist() == [2, 0]


def test_subsample_is_seeded_ordered_and_capped():
    items = list(range(100))
    picked = subsample(items, 10, seed=1)
    assert picked == sorted(picked) and len(set(picked)) == 10 and picked == subsample(items, 10, seed=1)
    assert picked != subsample(items, 10, seed=2)
    assert subsample(items, None, seed=1) == items and subsample(items, 500, seed=1) == items


def test_macro_f1_averages_over_gold_classes_only():
    gold = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 is predicted but never gold: only hurts recall of class 0
    f1_0, f1_1 = 2 * 1 / (2 * 1 + 0 + 1), 1.0
    assert macro_f1(gold, pred) == pytest.approx((f1_0 + f1_1) / 2)
    assert accuracy(gold, pred) == 0.75
    with pytest.raises(ValueError, match="equal-length"):
        accuracy(gold, pred[:3])
