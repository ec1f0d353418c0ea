"""The transfer task registry: each task's data fingerprint sees its files change, its target rule, unknown names."""

import shutil
from pathlib import Path

import pytest

from probing.datasets import file_digest, ud_signature
from tests.conftest import UD_DIR, XNLI_DIR
from transfer.finetune import FinetuneParams
from transfer.tasks import TASKS
from transfer.xnli_data import XNLI_SPLIT_VERSION

LANGUAGES = ("en", "fr")


def head(source: Path, target: Path, lines: int) -> Path:
    """The first lines of a real data file, as a small copy under the same name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(encoding="utf-8") as f:
        target.write_text("".join(line for _, line in zip(range(lines), f, strict=False)), encoding="utf-8")
    return target


def small_ud(root: Path) -> list[Path]:
    """An English and a French treebank of one small dev file each (the first 200 lines of the real one)."""
    return [
        head(next((UD_DIR / lang).glob("*-dev.conllu")), root / lang / f"{lang}-dev.conllu", 200) for lang in LANGUAGES
    ]


def small_xnli(root: Path) -> list[Path]:
    """English and French XNLI dev files of 20 parallel rows each."""
    return [head(XNLI_DIR / f"dev-{lang}.tsv", root / f"dev-{lang}.tsv", 20) for lang in LANGUAGES]


#: A small real copy of each data folder a task may read, by the folder setting's name.
DATA = {"ud_dir": small_ud, "xnli_dir": small_xnli}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_tasks_data_fingerprint_changes_with_the_content_of_each_of_its_files(name, tmp_path):
    task = TASKS[name]
    assert task.name == name and isinstance(task.params, FinetuneParams)
    files = DATA[task.data_dir](tmp_path)
    before = task.data_fingerprint(tmp_path, ["fr"])
    assert task.data_fingerprint(tmp_path, ["fr"]) == before  # a function of the files only
    for path in files:
        original = path.read_text(encoding="utf-8")
        path.write_text(original + original.splitlines(keepends=True)[-1], encoding="utf-8")
        assert task.data_fingerprint(tmp_path, ["fr"]) != before, path.name
        path.write_text(original, encoding="utf-8")
    assert task.data_fingerprint(tmp_path, ["fr"]) == before


def test_the_fingerprints_are_of_the_files_contents_not_their_place(tmp_path):
    """POS: the treebank signatures of English then each target (the values stored transfer results were
    made with); XNLI: the split version and the sorted content hashes (once sizes: an edit that kept a
    file's size kept a stale result)."""
    small_ud(tmp_path / "ud")
    assert TASKS["pos"].data_fingerprint(tmp_path / "ud", ["fr"]) == [
        ud_signature(tmp_path / "ud", lang) for lang in LANGUAGES
    ]
    en, fr = small_xnli(tmp_path / "xnli")
    hashes = sorted(f"{path.stem[4:]}:{file_digest(path)}" for path in (en, fr))
    before = TASKS["xnli"].data_fingerprint(tmp_path / "xnli", ["fr"])
    assert before == [XNLI_SPLIT_VERSION, *hashes]
    shutil.copytree(tmp_path / "xnli", tmp_path / "moved")
    assert TASKS["xnli"].data_fingerprint(tmp_path / "moved", ["fr"]) == before
    size = fr.stat().st_size
    fr.write_text(fr.read_text(encoding="utf-8").replace("maman", "mamie", 1), encoding="utf-8")
    assert fr.stat().st_size == size and TASKS["xnli"].data_fingerprint(tmp_path / "xnli", ["fr"]) != before


def test_pos_scores_every_language_and_xnli_only_those_with_a_dev_file(tmp_path):
    small_ud(tmp_path / "ud")
    small_xnli(tmp_path / "xnli")
    assert TASKS["pos"].targets(tmp_path / "ud", ["fr", "de", "en"]) == ["fr", "de", "en"]
    assert TASKS["xnli"].targets(tmp_path / "xnli", ["fr", "de", "en"]) == ["fr", "en"]


def test_an_unknown_task_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown transfer task 'ner'; known: pos, xnli"):
        TASKS["ner"]
    assert TASKS.get("ner") is None
