"""CoNLL-U reading: real treebanks parse in full; every kind of malformed input names file and line."""

import csv
from pathlib import Path

import pytest

from probing.conllu_io import CoNLLUError, read_conllu
from probing.datasets import treebank_files

GOOD = (
    "# sent_id = s1\n# text = The cats\n1\tThe\tthe\tDET\t_\tDefinite=Def\t2\tdet\t_\t_\n"
    "2\tcats\tcat\tNOUN\t_\tNumber=Plur\t0\troot\t_\t_\n\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "x.conllu") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_word_counts_match_the_manifest_of_real_treebanks(ud_dir):
    with open(ud_dir / "MANIFEST.tsv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["lang"] in ("es", "tr", "mr")]
    assert rows
    for row in rows:
        sentences = list(read_conllu(ud_dir / row["file"]))
        assert len(sentences) == int(row["sentences"]), row["file"]
        assert sum(len(s.words) for s in sentences) == int(row["tokens"]), row["file"]


MWT = (
    "1-2\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t3\tcase\t_\t_\n"
    "2\tel\tel\tDET\t_\tGender=Masc\t3\tdet\t_\t_\n2.1\tx\tx\tNOUN\t_\t_\t_\t_\t_\t_\n"
    "3\tcoche\tcoche\tNOUN\t_\tNumber=Sing\t0\troot\t_\tSpaceAfter=No\n"
    "4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_\n\n"
)


def test_multiword_tokens_are_kept_as_written_and_carry_their_parts(tmp_path):
    [sentence] = read_conllu(write(tmp_path, MWT))
    assert [w.form for w in sentence.words] == ["de", "el", "coche", "."]  # empty node 2.1 skipped
    assert sentence.words[1].feats == {"Gender": "Masc"}
    assert sentence.text == "del coche."  # no '# text': rebuilt from surface forms and SpaceAfter
    assert [(t.form, t.start, t.end, t.words) for t in sentence.tokens] == [
        ("del", 0, 3, (0, 1)),
        ("coche", 4, 9, (2,)),
        (".", 9, 10, (3,)),
    ]
    assert [w.token for w in sentence.words] == [0, 0, 1, 2]
    assert sentence.surface.starts == (0, 0, 4, 9) and sentence.surface.ends == (3, 3, 9, 10)


def test_spaces_after_is_decoded_when_the_text_is_rebuilt(tmp_path):
    text = (
        "1\tA\ta\tX\t_\t_\t0\troot\t_\tSpacesAfter=\\s\\s\n"
        "2\tB\tb\tX\t_\t_\t1\tdep\t_\tSpacesAfter=\\u00A0\n3\tC\tc\tX\t_\t_\t1\tdep\t_\t_\n\n"
    )
    [sentence] = read_conllu(write(tmp_path, text))
    assert sentence.text == "A  B\u00a0C"
    assert [(t.start, t.end) for t in sentence.tokens] == [(0, 1), (3, 4), (5, 6)]


def _raw_texts(path: Path) -> list[str]:
    """The '# text' lines of a file, read without the parser."""
    prefix = "# text = "
    with open(path, encoding="utf-8") as handle:
        return [line[len(prefix) :].rstrip("\n") for line in handle if line.startswith(prefix)]


@pytest.mark.parametrize("language", ["pt", "fr", "ca", "zh"])
def test_real_text_is_the_text_line_and_every_token_sits_at_its_span(ud_dir, language):
    for path in sorted((ud_dir / language).glob("*.conllu")):
        sentences = list(read_conllu(path))
        assert [s.text for s in sentences] == [t.strip() for t in _raw_texts(path)], path
        for sentence in sentences:
            assert all(sentence.text[t.start : t.end] == t.form for t in sentence.tokens)
            assert [i for t in sentence.tokens for i in t.words] == list(range(len(sentence.words)))
    if language != "zh":  # pt "do", fr "du", ca "del": multi-word tokens exist and are kept
        assert any(len(t.words) > 1 for s in sentences for t in s.tokens)
    else:  # Chinese: words follow each other without spaces (SpaceAfter=No)
        assert sum(" " in s.text for s in sentences) < len(sentences) / 10


BAD_SURFACE = [
    # a range that does not start at the next word
    ("2-3\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t0\troot\t_\t_\n\n", 1, "ID", "range 1-N"),
    # a range whose parts stop before its end
    (
        "1-3\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t0\troot\t_\t_\n2\tel\tel\tDET\t_\t_\t1\tdet\t_\t_\n\n",
        1,
        "ID",
        "words 1..3 all follow it",
    ),
    # a word id that skips one inside a range
    (
        "1-2\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t0\troot\t_\t_\n3\tel\tel\tDET\t_\t_\t1\tdet\t_\t_\n\n",
        3,
        "ID",
        "word id 2",
    ),
    # a form that is not what the text says
    (
        "# text = The dogs\n1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tcats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
        3,
        "FORM",
        "continue the sentence text at character 4",
    ),
    # SpaceAfter=No where the text has a space
    (
        "# text = The cats\n1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\tSpaceAfter=No\n"
        "2\tcats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
        2,
        "MISC",
        "no space after a token marked SpaceAfter=No",
    ),
    # no SpaceAfter=No where the text has no space
    (
        "# text = Thecats\n1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tcats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
        2,
        "MISC",
        "SpaceAfter=No",
    ),
    # text longer than its tokens
    (
        "# text = The cats sat\n1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tcats\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
        1,
        "# text",
        "end with the last token",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "expected_words"), BAD_SURFACE)
def test_surface_disagreements_name_file_line_and_field(tmp_path, text, line, field, expected_words):
    path = write(tmp_path, text)
    with pytest.raises(CoNLLUError) as err:
        list(read_conllu(path))
    assert err.value.line == line and err.value.field == field, str(err.value)
    assert f"{path}:{line}" in str(err.value) and expected_words in str(err.value)


def test_good_file_keeps_ids_text_and_lemmas(tmp_path):
    [sentence] = read_conllu(write(tmp_path, GOOD))
    assert sentence.sentence_id == "x.conllu#s1" and sentence.line == 1 and sentence.text == "The cats"
    assert [(w.lemma, w.upos) for w in sentence.words] == [("the", "DET"), ("cat", "NOUN")]


@pytest.mark.parametrize(
    ("text", "line", "field", "expected_words"),
    [
        (GOOD + "1\tA\ta\tDET\t_\t_\t0\troot\t_\n\n", 6, "columns", "10 tab-separated columns"),
        (GOOD + "1\tA\ta\tDET\t_\tNumber\t0\troot\t_\t_\n\n", 6, "FEATS", "Name=Value"),
        (GOOD + "1\tA\ta\tDET\t_\tNumber=Sing|Case\t0\troot\t_\t_\n\n", 6, "FEATS", "Name=Value"),
        (GOOD + "one\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n\n", 6, "ID", "integer word id"),
        (GOOD + "1.x\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n\n", 6, "ID", "integer word id"),
        (GOOD + "1\tA\ta\tDET\t_\t_\troot\troot\t_\t_\n\n", 6, "HEAD", "integer id of the head word"),
        (GOOD + "1\tA\ta\tDET\t_\t_\t-1\troot\t_\t_\n\n", 6, "HEAD", "integer id of the head word"),
        (GOOD + "1\tA\ta\tDET\t_\t_\t0\troot\tnsubj\t_\n\n", 6, "DEPS", "head:relation pairs"),
        (GOOD + "1\tA\ta\tDET\t_\t_\t0\troot\t0:root|\t_\n\n", 6, "DEPS", "head:relation pairs"),
        (GOOD + "1\tA\ta\tDET\t_\tNumber=Sing|Number=Plur\t0\troot\t_\t_\n\n", 6, "FEATS", "Number twice"),
        (GOOD + "1\tA\ta\tDETX\t_\t_\t0\troot\t_\t_\n\n", 6, "UPOS", "one of the 17 UD tags"),
        (GOOD + "1\tA\ta\t_\t_\t_\t0\troot\t_\t_\n\n", 6, "UPOS", "one of the 17 UD tags"),
        (GOOD + "1\tA\x00\ta\tDET\t_\t_\t0\troot\t_\t_\n\n", 6, "encoding", "without NUL bytes"),
        # duplicate and skipped ids
        (GOOD + "1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n1\tB\tb\tNOUN\t_\t_\t1\tdep\t_\t_\n\n", 7, "ID", "word id 2"),
        (GOOD + "1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n3\tB\tb\tNOUN\t_\t_\t1\tdep\t_\t_\n\n", 7, "ID", "word id 2"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path, text, line, field, expected_words):
    path = write(tmp_path, text)
    with pytest.raises(CoNLLUError) as err:
        list(read_conllu(path))
    assert err.value.path == str(path) and err.value.line == line and err.value.field == field
    assert f"{path}:{line}" in str(err.value) and expected_words in str(err.value)


def test_non_utf8_bytes_name_the_line_and_byte(tmp_path):
    path = write(tmp_path, GOOD.encode() + b"1\tA\xff\ta\tDET\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(CoNLLUError, match=r"x\.conllu:6: encoding: expected UTF-8 text, found byte 0xff"):
        list(read_conllu(path))


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(CoNLLUError, match="empty file"):
        list(read_conllu(write(tmp_path, "\n\n")))
    with pytest.raises(CoNLLUError, match="no such file"):
        list(read_conllu(tmp_path / "absent.conllu"))
    with pytest.raises(CoNLLUError, match="at least one sentence"):
        list(read_conllu(write(tmp_path, "# only a comment\n", "c.conllu")))


def test_a_byte_order_mark_is_accepted_and_enhanced_deps_and_empty_heads_parse(tmp_path):
    enhanced = GOOD.replace("\t2\tdet\t_\t_", "\t2\tdet\t2:det|3.1:nmod:poss\t_").replace("\t0\troot", "\t_\troot")
    [sentence] = read_conllu(write(tmp_path, b"\xef\xbb\xbf" + enhanced.encode()))
    assert sentence.sentence_id == "x.conllu#s1" and sentence.text == "The cats"


def test_a_directory_or_a_broken_link_named_conllu_is_refused_by_name(tmp_path):
    language = tmp_path / "ud" / "xx"
    (language / "a.conllu").mkdir(parents=True)
    with pytest.raises(CoNLLUError, match=r"a\.conllu: file: expected a CoNLL-U file, found a directory"):
        treebank_files(tmp_path / "ud", "xx")
    with pytest.raises(CoNLLUError, match="found a directory"):
        list(read_conllu(language / "a.conllu"))
    (language / "a.conllu").rmdir()
    (language / "a.conllu").symlink_to(tmp_path / "gone.conllu")
    with pytest.raises(CoNLLUError, match=r"a\.conllu: file: expected a CoNLL-U file, found a broken symbolic link"):
        treebank_files(tmp_path / "ud", "xx")
