"""The lottery tasks: one `LotteryTask` each in `TASKS`, the registry the lottery stage and the config read.

A task says how to load a checkpoint for it (a `lottery.learner.Learner`: the model with its head,
batching and scoring), how to read one language's train / dev / test examples, which of the study's
languages have data for it, what its data depend on (the data part of a trial's fingerprint), and
its default `LotteryParams`.

- ``pos``: UPOS tagging on the language's UD treebank (train split to train, dev split for IMP's
  dev score, test split to score transfer), read and labelled as in `transfer.pos_data`; accuracy.
- ``lm``: the model's own objective on the language's UD text (`lottery.language_modelling`).
- ``xnli``: NLI on the language's XNLI dev file (the only labelled one), split by PREMISE with
  `transfer.xnli_data.split_english_dev` into train / dev / test rows, the same row indices in every
  language (the files are row-parallel), so no language trains or selects on a translation of a
  row another language is scored on; accuracy.

Rows are capped by ``max_train_examples`` / ``max_eval_examples`` with seeded subsets drawn per
(``data_seed``, task, split, language). The task head of ``pos`` and ``xnli`` is initialised from
``seed`` (`load_learner` seeds before loading), so θ₀ is the same for every language of a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lottery.language_modelling import encode_texts, load_lm_learner, read_texts
from lottery.learner import Learner, TaskData
from lottery.params import LotteryParams
from probing.datasets import stable_seed, ud_signature
from probing.models import model_max_length
from transfer.evaluate import evaluate_pos, evaluate_xnli
from transfer.examples import collate, subsample
from transfer.finetune import FinetuneParams, seed_everything
from transfer.models import Head, load_for_task
from transfer.pos_data import UPOS_TAGS, encode_pos, read_tagged, split_files
from transfer.tasks import languages_with_xnli_file, xnli_fingerprint
from transfer.xnli_data import XNLI_LABELS, NliPair, encode_xnli, read_parallel_dev, read_xnli_dev, split_english_dev
from transfer.zero_shot import SOURCE_LANGUAGE

#: The parts of a language's data: train to train, dev for IMP's dev score, test to score transfer; for the
#: UD tasks, the UD splits of these names.
SPLITS = ("train", "dev", "test")
#: Full fine-tuning with no quantisation: how transfer.models loads a checkpoint with a head for the lottery.
_FULL_WEIGHTS = FinetuneParams(full_finetune=True, quantization="none")


@dataclass(frozen=True)
class LotteryTask:
    """One lottery task.

    ``load(model_source, revision, params, device)`` → `Learner`; ``read(data_dir, language, learner,
    params)`` → `TaskData`; ``languages(data_dir, languages)`` → those with data; ``data_fingerprint(data_dir,
    language)`` → what a language's data depend on (JSON-able). ``data_dir`` names the folder setting the task
    reads: "ud_dir" or "xnli_dir".
    """

    name: str
    params: LotteryParams
    load: Callable[[str, str | None, LotteryParams, str], Learner]
    read: Callable[[Path | str, str, Learner, LotteryParams], TaskData]
    data_dir: Literal["ud_dir", "xnli_dir"]
    languages: Callable[[Path | str, Sequence[str]], list[str]]
    data_fingerprint: Callable[[Path | str, str], list]


class LotteryTaskRegistry(dict[str, LotteryTask]):
    """Tasks by name; an unknown name is a KeyError that lists the known ones."""

    def __missing__(self, name: str) -> LotteryTask:
        raise KeyError(f"unknown lottery task {name!r}; known: {', '.join(sorted(self))}")


def load_learner(
    task: LotteryTask, model_source: str, revision: str | None, params: LotteryParams, device: str
) -> Learner:
    """The task's learner for a checkpoint, its new head initialised from ``params.seed`` (so θ₀ repeats)."""
    seed_everything(params.seed)
    return task.load(model_source, revision, params, device)


def cap(split: str, task: str, language: str, params: LotteryParams) -> tuple[int | None, int]:
    """How many of a split's items to keep (``max_train_examples`` for train, else ``max_eval_examples``) and the
    seed of the subset."""
    limit = params.max_train_examples if split == "train" else params.max_eval_examples
    return limit, stable_seed(params.data_seed, "lottery", task, split, language)


def capped(items: list, split: str, task: str, language: str, params: LotteryParams) -> list:
    """A seeded subset of a split's items (`cap`)."""
    return subsample(items, *cap(split, task, language, params))


def _classifier(head: Head, labels: Sequence[str], evaluate: Callable) -> Callable[..., Learner]:
    """How a classification task loads: the checkpoint with a new ``head`` over ``labels``, scored by accuracy."""

    def load(model_source: str, revision: str | None, params: LotteryParams, device: str) -> Learner:
        model, tokenizer = load_for_task(model_source, revision, head, labels, _FULL_WEIGHTS, device)
        pad = tokenizer.pad_token_id
        return Learner(
            model,
            tokenizer,
            min(params.max_length, model_max_length(model.config, tokenizer)),
            lambda examples, step: collate(examples, pad),
            lambda examples: evaluate(model, examples, pad, params.batch_size)["accuracy"],
        )

    return load


def read_pos(ud_dir: Path | str, language: str, learner: Learner, params: LotteryParams) -> TaskData:
    """A language's UD train / dev / test sentences, tagged on first sub-words."""
    parts = {
        split: read_tagged(split_files(ud_dir, language, split), *cap(split, "pos", language, params))
        for split in SPLITS
    }
    return TaskData(*(encode_pos(learner.tokenizer, parts[split], learner.max_length) for split in SPLITS))


def read_lm(ud_dir: Path | str, language: str, learner: Learner, params: LotteryParams) -> TaskData:
    """A language's UD train / dev / test sentence texts."""
    parts = {split: read_texts(ud_dir, language, split, *cap(split, "lm", language, params)) for split in SPLITS}
    return TaskData(*(encode_texts(learner.tokenizer, parts[split], learner.max_length) for split in SPLITS))


def xnli_rows(xnli_dir: Path | str, language: str, params: LotteryParams) -> dict[str, list[NliPair]]:
    """A language's XNLI dev pairs at the rows of English's premise split: "train", "dev" (English's
    selection part) and "test", each capped; the same row indices in every language."""
    english = read_xnli_dev(xnli_dir, SOURCE_LANGUAGE)
    pairs = english if language == SOURCE_LANGUAGE else read_parallel_dev(xnli_dir, language, english)
    split = split_english_dev(english, params.data_seed)
    rows = {"train": split.train, "dev": split.select, "test": split.test}
    # Subsets are drawn under English's key so that every language keeps the same (parallel) rows.
    return {
        name: [pairs[i] for i in capped(list(index), name, "xnli", SOURCE_LANGUAGE, params)]
        for name, index in rows.items()
    }


def read_xnli(xnli_dir: Path | str, language: str, learner: Learner, params: LotteryParams) -> TaskData:
    """A language's XNLI train / dev / test pairs (`xnli_rows`), encoded as pairs."""
    parts = xnli_rows(xnli_dir, language, params)
    return TaskData(*(encode_xnli(learner.tokenizer, parts[split], learner.max_length) for split in SPLITS))


def languages_with_ud_splits(ud_dir: Path | str, languages: Sequence[str]) -> list[str]:
    """The languages whose UD folder has train, dev and test files (in the given order)."""

    def has(language: str, split: str) -> bool:
        try:
            return bool(split_files(ud_dir, language, split))
        except FileNotFoundError:
            return False

    return [lang for lang in languages if all(has(lang, split) for split in SPLITS)]


def xnli_language_fingerprint(xnli_dir: Path | str, language: str) -> list:
    """The XNLI split's version and the sizes of English's and the language's files."""
    return xnli_fingerprint(xnli_dir, [language])


TASKS = LotteryTaskRegistry(
    pos=LotteryTask(
        "pos",
        LotteryParams(),
        _classifier("token", UPOS_TAGS, evaluate_pos),
        read_pos,
        "ud_dir",
        languages_with_ud_splits,
        ud_signature,
    ),
    lm=LotteryTask(
        "lm",
        LotteryParams(batch_size=16),
        load_lm_learner,
        read_lm,
        "ud_dir",
        languages_with_ud_splits,
        ud_signature,
    ),
    xnli=LotteryTask(
        "xnli",
        LotteryParams(lr=5e-5),
        _classifier("sequence", XNLI_LABELS, evaluate_xnli),
        read_xnli,
        "xnli_dir",
        languages_with_xnli_file,
        xnli_language_fingerprint,
    ),
)
