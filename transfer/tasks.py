"""The zero-shot transfer tasks: one `TransferTask` each in `TASKS`, which the transfer stage and the config read.

A task says how to run it (`transfer.zero_shot`), its default fine-tuning hyperparameters, which data
folder it reads, which target languages that folder can score, and what its results depend on in the
folder (the data part of a transfer trial's fingerprint). A new task is a ``run_<task>_transfer``
function, these few functions if its data needs its own, and one entry in `TASKS` (plus its
hyperparameter overrides field in ``ray_jobs.config.TransferConfig``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from probing.datasets import file_digest, ud_signature
from transfer.finetune import FinetuneParams
from transfer.xnli_data import XNLI_SPLIT_VERSION
from transfer.zero_shot import POS_PARAMS, SOURCE_LANGUAGE, XNLI_PARAMS, run_pos_transfer, run_xnli_transfer

#: Languages → the ones a task can score (a subset, in the given order), given the task's data folder.
TargetRule = Callable[[Path | str, Sequence[str]], list[str]]
#: Target languages → what the task's results on them depend on in its data folder (JSON-able).
DataFingerprint = Callable[[Path | str, Sequence[str]], list]


@dataclass(frozen=True)
class TransferTask:
    """One zero-shot transfer task.

    ``run(model_source, revision, data_dir, targets, params, device=, checkpoint=)`` fine-tunes a
    checkpoint on English and returns the result rows (``transfer.zero_shot.ROW_KEYS``). ``data_dir``
    names the folder setting the task reads: "ud_dir" (the study's UD treebanks) or "xnli_dir"
    (``transfer.xnli_dir``); the transfer stage's trial specs carry both under these names.
    """

    name: str
    params: FinetuneParams
    run: Callable[..., list[dict]]
    data_dir: Literal["ud_dir", "xnli_dir"]
    targets: TargetRule
    data_fingerprint: DataFingerprint


class TaskRegistry(dict[str, TransferTask]):
    """Tasks by name; an unknown name is a KeyError that lists the known ones."""

    def __missing__(self, name: str) -> TransferTask:
        raise KeyError(f"unknown transfer task {name!r}; known: {', '.join(sorted(self))}")


def every_language(data_dir: Path | str, languages: Sequence[str]) -> list[str]:
    """POS scores every study language: each has a UD treebank folder (the config checks it)."""
    return list(languages)


def xnli_dev_file(xnli_dir: Path | str, language: str) -> Path:
    """A language's per-language XNLI file, ``dev-<lang>.tsv``."""
    return Path(xnli_dir) / f"dev-{language}.tsv"


def languages_with_xnli_file(xnli_dir: Path | str, languages: Sequence[str]) -> list[str]:
    """XNLI scores only the languages that have a ``dev-<lang>.tsv`` file."""
    return [lang for lang in languages if xnli_dev_file(xnli_dir, lang).is_file()]


def treebank_fingerprint(ud_dir: Path | str, targets: Sequence[str]) -> list:
    """Names and content hashes of the treebank files of English and every target."""
    return [ud_signature(ud_dir, lang) for lang in [SOURCE_LANGUAGE, *targets]]


def xnli_fingerprint(xnli_dir: Path | str, targets: Sequence[str]) -> list:
    """The split's version and the content hash of English's and every target's file (an edit that keeps a
    file's size is seen; the folder's place is not part of it)."""
    hashes = (f"{lang}:{file_digest(xnli_dev_file(xnli_dir, lang))}" for lang in [SOURCE_LANGUAGE, *targets])
    return [XNLI_SPLIT_VERSION, *sorted(hashes)]


TASKS = TaskRegistry(
    pos=TransferTask("pos", POS_PARAMS, run_pos_transfer, "ud_dir", every_language, treebank_fingerprint),
    xnli=TransferTask("xnli", XNLI_PARAMS, run_xnli_transfer, "xnli_dir", languages_with_xnli_file, xnli_fingerprint),
)
