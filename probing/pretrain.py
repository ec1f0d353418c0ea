"""Pre-train a small multilingual causal LM (BLOOM architecture) with intermediate checkpoints.

No model hub is reachable offline, so a study can train its own model to probe: a byte-level BPE
tokenizer trained with ``tokenizers`` and a BLOOM model trained on the UD sentences of the study's
languages, which include the probing sentences (as UD text is part of real LMs' web corpora). The
training text is each sentence's surface text (`probing.conllu_io.Sentence.text`: UD's ``# text``
line, multi-word tokens as written), the same text that extraction feeds the model.
Checkpoints are saved at log-spaced steps (plus step 0, the random initialisation) as ordinary
Hugging Face model directories ``<run_dir>/step-NNNNNN``; `probing.models.resolve_model` loads
them as revisions of ``<run_dir>``, exactly as it loads ``bigscience/bloom-560m-intermediate``.
Training resumes from the newest finished checkpoint; batches are drawn by step from a seeded
generator, so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from probing.bloom_gelu import use_lean_gelu
from probing.validation import at_least, fraction, positive, reject

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


@dataclass(frozen=True)
class PretrainParams:
    """Architecture and optimisation of the study's own model (hashed into its run directory)."""

    n_layer: int = 4
    hidden_size: int = 256
    n_head: int = 8
    vocab_size: int = 8000
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 1200
    lr: float = 2e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    checkpoints: int = 5
    heldout_fraction: float = 0.02
    sentences_per_language: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            *at_least("n_layer", self.n_layer, 1),
            *at_least("hidden_size", self.hidden_size, 1),
            *at_least("n_head", self.n_head, 1),
            *at_least("vocab_size", self.vocab_size, 1),
            *at_least("seq_len", self.seq_len, 2),
            *at_least("batch_size", self.batch_size, 1),
            *at_least("steps", self.steps, 1),
            *positive("lr", self.lr),
            *at_least("warmup_steps", self.warmup_steps, 0),
            *at_least("weight_decay", self.weight_decay, 0),
            *at_least("checkpoints", self.checkpoints, 1),
            *fraction("heldout_fraction", self.heldout_fraction),
            *at_least("sentences_per_language", self.sentences_per_language, 1),
            *at_least("seed", self.seed, 0),
        ]
        if self.n_head >= 1 and self.hidden_size % self.n_head:
            problems.append(f"hidden_size: {self.hidden_size} is not divisible by n_head {self.n_head}")
        reject(problems)


def checkpoint_steps(total: int, count: int) -> list[int]:
    """Step 0 plus ``count - 1`` steps spaced by a factor of 3 and ending at ``total``."""
    if count < 2:
        return [total]
    spaced = np.geomspace(max(total / 3 ** (count - 2), 1), total, count - 1)
    return sorted({0, *(round(s) for s in spaced)})


def step_name(step: int) -> str:
    """Directory (revision) name of a checkpoint."""
    return f"step-{step:06d}"


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE tokenizer (as BLOOM's) trained on the texts, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def pack_sequences(texts: Sequence[str], tokenizer, seq_len: int) -> np.ndarray:
    """Concatenate tokenized texts, each ended by EOS, and cut into rows of ``seq_len + 1`` tokens.

    A row of ``seq_len + 1`` tokens gives ``seq_len`` next-token predictions.
    """
    eos = tokenizer.eos_token_id
    stream = [
        token
        for enc in tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for token in (*enc.ids, eos)
    ]
    n_rows = len(stream) // (seq_len + 1)
    if n_rows == 0:
        raise ValueError(f"pre-training text has {len(stream)} tokens, fewer than one sequence of {seq_len + 1}")
    return np.asarray(stream[: n_rows * (seq_len + 1)], dtype=np.int64).reshape(n_rows, seq_len + 1)


def learning_rate(step: int, params: PretrainParams) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < params.warmup_steps:
        return params.lr * (step + 1) / params.warmup_steps
    progress = (step - params.warmup_steps) / max(params.steps - params.warmup_steps, 1)
    return params.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _save_checkpoint(run_dir: Path, step: int, model, tokenizer, optimizer) -> None:
    final = run_dir / step_name(step)
    tmp = run_dir / f".{step_name(step)}.{uuid.uuid4().hex}.tmp"
    model.save_pretrained(tmp)  # weights are saved from any device; loading maps them to CPU
    tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp / "trainer_state.pt")
    tmp.rename(final)


def _heldout_loss(model, rows: np.ndarray) -> float:
    model.eval()
    with torch.inference_mode():
        losses = []
        for start in range(0, len(rows), 64):
            batch = torch.from_numpy(rows[start : start + 64])
            losses.append(float(model(input_ids=batch, labels=batch).loss) * len(batch))
    model.train()
    return sum(losses) / max(len(rows), 1)


def pretrain(
    texts: Sequence[str],
    params: PretrainParams,
    run_dir: Path | str,
    progress: Callable[[int, float], None] | None = None,
    device: str = "cpu",
) -> Path:
    """Train (or finish training) the model into ``run_dir``; return the directory of checkpoints."""
    from transformers import AutoTokenizer, BloomConfig, BloomForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob(".*.tmp"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    wanted = checkpoint_steps(params.steps, params.checkpoints)
    if (run_dir / "loss.parquet").is_file() and all((run_dir / step_name(s)).is_dir() for s in wanted):
        return run_dir

    torch.manual_seed(params.seed)
    tokenizer_dir = run_dir / "tokenizer"
    if not tokenizer_dir.is_dir():
        tmp = run_dir / f".tokenizer.{uuid.uuid4().hex}.tmp"
        train_tokenizer(texts, params.vocab_size).save_pretrained(tmp)
        tmp.rename(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = pack_sequences(texts, tokenizer, params.seq_len)
    order = np.random.default_rng(params.seed).permutation(len(rows))
    n_heldout = max(1, int(len(rows) * params.heldout_fraction))
    heldout, train = rows[order[:n_heldout]], rows[order[n_heldout:]]

    done = [s for s in wanted if (run_dir / step_name(s)).is_dir()]
    start = max(done) if done else 0
    if done:
        model = BloomForCausalLM.from_pretrained(run_dir / step_name(start))
    else:
        config = BloomConfig(
            vocab_size=len(tokenizer),
            hidden_size=params.hidden_size,
            n_layer=params.n_layer,
            n_head=params.n_head,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = BloomForCausalLM(config)
    use_lean_gelu(model)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, betas=(0.9, 0.95))
    if done:
        optimizer.load_state_dict(torch.load(run_dir / step_name(start) / "trainer_state.pt")["optimizer"])
    log = _read_log(run_dir, start) if done else []  # the rows up to the checkpoint resumed from
    if not done:
        log.append(
            {
                "step": 0,
                "loss": float("nan"),
                "heldout_loss": _heldout_loss(model, heldout),
                "lr": 0.0,
                "tokens": 0,
                "seconds": 0.0,
            }
        )
        _write_log(run_dir, log, partial=True)  # before the checkpoint: a resumed run finds its row
        _save_checkpoint(run_dir, 0, model, tokenizer, optimizer)
    model.train()
    began = time.perf_counter()
    for step in range(start + 1, params.steps + 1):
        picks = np.random.default_rng([params.seed, step]).integers(0, len(train), params.batch_size)
        batch = torch.from_numpy(train[picks]).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, params)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        entry = {
            "step": step,
            "loss": loss.item(),
            "heldout_loss": float("nan"),
            "lr": learning_rate(step - 1, params),
            "tokens": step * params.batch_size * params.seq_len,
            "seconds": time.perf_counter() - began,
        }
        log.append(entry)
        if step in wanted:
            entry["heldout_loss"] = _heldout_loss(model, heldout)
            _write_log(run_dir, log, partial=True)  # before the checkpoint: a resumed run finds every row to it
            _save_checkpoint(run_dir, step, model, tokenizer, optimizer)
        if progress:
            progress(step, entry["loss"])
    _write_log(run_dir, log, partial=False)
    return run_dir


def _read_log(run_dir: Path, up_to: int) -> list[dict]:
    path = run_dir / "loss.partial.parquet"
    if not path.is_file():
        return []
    return [row for row in pq.read_table(path).to_pylist() if row["step"] <= up_to]


def _write_log(run_dir: Path, log: list[dict], partial: bool) -> None:
    name = "loss.partial.parquet" if partial else "loss.parquet"
    tmp = run_dir / f".{name}.{uuid.uuid4().hex}.tmp"
    pq.write_table(pa.Table.from_pylist(log), tmp)
    tmp.rename(run_dir / name)
    if not partial:
        (run_dir / "loss.partial.parquet").unlink(missing_ok=True)
