"""Load a checkpoint with a fresh task head, as LoRA, 4-bit QLoRA, or fully trainable.

LoRA adapters go on the attention projections named per architecture (BLOOM's fused
``query_key_value``, BERT-style ``query``/``value``); an unknown model type is an error rather
than a guess. peft's TOKEN_CLS / SEQ_CLS task types train the head (``classifier`` or ``score``)
in full, and that is checked. QLoRA (Dettmers et al. 2023) loads the base weights as NF4 with
double quantisation and bf16 compute where CUDA supports it (float32 otherwise); the head is kept
out of quantisation so that it can be trained. The checkpoint is resolved and its fast tokenizer
loaded by `probing.models`, exactly as extraction loads it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import torch

from probing.bloom_gelu import use_lean_gelu
from probing.models import load_fast_tokenizer
from transfer.finetune import FinetuneParams

#: LoRA target modules per ``config.model_type``.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "bloom": ("query_key_value",),
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
}
#: Names of the task heads of transformers' token / sequence classification models.
HEAD_NAMES = ("classifier", "score")

Head = Literal["token", "sequence"]


def lora_targets(model_type: str) -> tuple[str, ...]:
    """The modules LoRA adapts for an architecture; ValueError naming it when it is not known."""
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"no LoRA target modules known for model type '{model_type}' (known: {', '.join(sorted(LORA_TARGETS))})"
        )
    return LORA_TARGETS[model_type]


def resolve_quantization(params: FinetuneParams, device: str) -> str:
    """The quantization to load with: "auto" becomes nf4 exactly for LoRA (not full) training on CUDA, else none."""
    if params.quantization == "auto":
        return "nf4" if torch.device(device).type == "cuda" and not params.full_finetune else "none"
    return params.quantization


def nf4_config():
    """bitsandbytes 4-bit NF4 with double quantisation; bf16 compute where supported, else float32."""
    from transformers import BitsAndBytesConfig

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
        llm_int8_skip_modules=list(HEAD_NAMES),
    )


def load_for_task(
    model_source: str, revision: str | None, head: Head, labels: Sequence[str], params: FinetuneParams, device: str
) -> tuple[torch.nn.Module, object]:
    """The checkpoint with a new ``head`` over ``labels``, ready to train, and its fast tokenizer."""
    # bitsandbytes warns on import that it cannot fetch an optional CPU kernel from the hub (it falls back),
    # and peft calls a transformers method that transformers 5 marks as deprecated.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.modeling_utils")
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    tokenizer, source, rev = load_fast_tokenizer(model_source, revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_type = AutoConfig.from_pretrained(source, revision=rev).model_type
    targets = () if params.full_finetune else lora_targets(model_type)
    quantization = resolve_quantization(params, device)
    auto = AutoModelForTokenClassification if head == "token" else AutoModelForSequenceClassification
    kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "pad_token_id": tokenizer.pad_token_id,
    }
    if quantization == "nf4":
        model = auto.from_pretrained(
            source, revision=rev, quantization_config=nf4_config(), device_map={"": device}, **kwargs
        )
        model = prepare_model_for_kbit_training(model)
    else:
        model = auto.from_pretrained(source, revision=rev, **kwargs).to(device)
    use_lean_gelu(model)
    if params.full_finetune:
        return model, tokenizer
    task = TaskType.TOKEN_CLS if head == "token" else TaskType.SEQ_CLS
    lora = LoraConfig(
        task_type=task,
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(targets),
    )
    model = get_peft_model(model, lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not any(h in n.split(".") for n in trainable for h in HEAD_NAMES):
        raise RuntimeError(f"{model_source}: the task head ({' or '.join(HEAD_NAMES)}) is not trainable under LoRA")
    return model, tokenizer
