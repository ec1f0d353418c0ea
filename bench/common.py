"""What the benchmarks share: the UD folder next to the repository and a random BLOOM built on given text."""

from __future__ import annotations

from pathlib import Path

UD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud"


def build_model(directory: Path, texts: list[str], layers: int, hidden: int) -> Path:
    """A random BLOOM of the given shape with a byte-level BPE tokenizer trained on the texts."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    from probing.pretrain import train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=8000)
    torch.manual_seed(0)
    config = BloomConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, n_layer=layers, n_head=8, pad_token_id=tokenizer.pad_token_id
    )
    BloomForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
