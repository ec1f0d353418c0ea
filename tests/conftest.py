"""Shared fixtures: the real UD data, a real local Ray cluster, tiny real transformers models, and the tiny
study as the fault campaign runs it (`tiny_study`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UD_DIR = Path(os.environ.get("XLING_UD_DIR", REPO.parent / "shared" / "data" / "ud")).resolve()
XNLI_DIR = Path(os.environ.get("XLING_XNLI_DIR", REPO.parent / "shared" / "data" / "xnli")).resolve()


def pytest_configure(config: pytest.Config) -> None:
    if not UD_DIR.is_dir():
        raise pytest.UsageError(f"UD data not found at {UD_DIR}; set XLING_UD_DIR")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ud_dir() -> Path:
    return UD_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors and models gain nothing from threads, and spinning threads stall on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One real local Ray cluster (2 CPUs) for the whole session; local caches stay in a temp dir."""
    import ray

    local = str(tmp_path_factory.mktemp("xling-local"))
    os.environ["XLING_LOCAL_DIR"] = local
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"XLING_LOCAL_DIR": local}},
    )
    yield ray
    ray.shutdown()


def tiny_config(tmp_path: Path, ud_dir: Path, extra_models: list[dict] = (), **changes: object) -> Path:
    """configs/tiny.yaml written to ``tmp_path`` with its output root at ``tmp_path/study``, the given UD
    folder, extra models and top-level changes."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config.update(ud_dir=str(ud_dir), output_root=str(tmp_path / "study"), **changes)
    config["models"] = config["models"] + list(extra_models)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ud_texts(ud_dir: Path, languages: list[str], per_language: int) -> list[str]:
    """Surface texts of the first sentences of each language's treebanks."""
    from itertools import islice

    from probing.datasets import read_language

    return [s.text for lang in languages for s in islice(read_language(ud_dir, lang), per_language)]


def build_tiny_bloom(directory: Path, texts: list[str], revisions: tuple[str, ...] = ("step-a", "step-b")) -> Path:
    """A tiny random BLOOM with a BPE tokenizer trained on ``texts``; one subdirectory per revision."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    from probing.pretrain import train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=400)
    for seed, revision in enumerate(revisions):
        torch.manual_seed(seed)
        config = BloomConfig(
            vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4, pad_token_id=tokenizer.pad_token_id
        )
        BloomForCausalLM(config).save_pretrained(directory / revision)
        tokenizer.save_pretrained(directory / revision)
    return directory


def build_tiny_bert(directory: Path, texts: list[str]) -> Path:
    """A tiny random BERT with a WordPiece tokenizer ([CLS] ... [SEP]) trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(
            vocab_size=500, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
        ),
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory, ud_dir) -> Path:
    texts = ud_texts(ud_dir, ["en", "fr"], 300)
    return build_tiny_bloom(tmp_path_factory.mktemp("tiny-bloom"), texts)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, ud_dir) -> Path:
    texts = ud_texts(ud_dir, ["en", "fr"], 300)
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@dataclass
class StudyRuns:
    """The tiny study's runs: ``killed`` (SIGKILLed mid-probe), ``refused`` (started while it ran) and
    ``resumed`` (started with --wait while it ran); ``leftover``: the killed run's processes still running."""

    tmp_path: Path
    config: Path
    root: Path
    killed_pid: int
    refused: subprocess.CompletedProcess
    resumed: int
    resumed_log: str
    leftover: list


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, ud_dir, tiny_bloom_dir) -> StudyRuns:
    """The tiny study plus a model whose one checkpoint does not load (its config says a width its whole
    weights do not have, which only loading finds), run as three real pipelines on one root: the first is
    killed (SIGKILL) mid-probe; one started while it runs is refused; one started with --wait waits, takes
    the dead run's lease over, and finishes (exit status 1: the broken model)."""
    import json
    import shutil
    import signal

    import psutil

    from bench.fault_injection import wait_for
    from ray_jobs.lease import LEASE_NAME
    from ray_jobs.reaper import alive

    tmp_path = tmp_path_factory.mktemp("tiny-study")
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_bloom_dir / "step-a", broken / "step-x")
    config = json.loads((broken / "step-x" / "config.json").read_text())
    (broken / "step-x" / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * config["hidden_size"]}))
    path = tiny_config(tmp_path, ud_dir, [{"name": "broken", "id": str(broken), "revisions": ["step-x"]}])
    root = tmp_path / "study"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ray_jobs.pipeline", "--config", str(path)]

    def start(name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen([*command, *extra], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        return process, log

    killed, killed_log = start("killed")
    wait_for(lambda: (root / LEASE_NAME).exists(), 120, "the first run's lease")
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    resumed, resumed_log = start("resumed", "--wait")
    wait_for(lambda: "[lease] waiting" in resumed_log.read_text(), 60, "the waiting run")
    wait_for(lambda: "[probe]" in killed_log.read_text(), 900, "the first run to start probing")
    time.sleep(3)  # its trials run
    processes = psutil.Process(killed.pid).children(recursive=True)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    status = resumed.wait(timeout=900)
    with contextlib.suppress(TimeoutError):  # the reaper stops them within seconds; the tests say if not
        wait_for(lambda: not any(map(alive, processes)), 30, "the killed run's processes to go")
    leftover = [process for process in processes if alive(process)]
    return StudyRuns(tmp_path, path, root, killed.pid, refused, status, resumed_log.read_text(), leftover)
