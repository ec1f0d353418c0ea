"""CoNLL-U reading: real treebanks parse in full; every kind of malformed input names file and line."""

import csv
from pathlib import Path

import pytest

from probing.conllu_io import CoNLLUError, read_conllu

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


def test_multiword_ranges_and_empty_nodes_are_skipped(tmp_path):
    text = (
        "1-2\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t3\tcase\t_\t_\n"
        "2\tel\tel\tDET\t_\tGender=Masc\t3\tdet\t_\t_\n2.1\tx\tx\tNOUN\t_\t_\t_\t_\t_\t_\n"
        "3\tcoche\tcoche\tNOUN\t_\tNumber=Sing\t0\troot\t_\t_\n\n"
    )
    [sentence] = read_conllu(write(tmp_path, text))
    assert [w.form for w in sentence.words] == ["de", "el", "coche"]
    assert sentence.words[1].feats == {"Gender": "Masc"}
    assert sentence.text == "de el coche"  # no '# text' comment: words joined by spaces


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
