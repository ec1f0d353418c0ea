"""How a lottery ticket is found: the pruning schedule, the target sparsities and the training of each round.

Sub-network training is FULL fine-tuning: a mask multiplies the model's own weights, which LoRA
deltas and 4-bit quantised weights cannot carry (a LoRA update B·A is dense, and a pruned NF4 weight
is not a stored zero), so a config asking for either is an error with that reason.

Defaults follow the reference where it says (DESIGN.md, Foroutan et al.'s code): AdamW, lr 2e-5
(5e-5 for XNLI, set by its task), batch 32, no warmup, clipping at 1.0, 15% of the tokens masked for
a masked LM, weight decay 0 (the transformers Trainer's). The reference trains ~3 epochs per round;
here a round is ``steps_per_round`` optimizer steps (T), the same in every round, so rounds of all
languages cost the same whatever their treebank sizes. ``seed`` fixes everything random in training
(the task head's initialisation, so θ₀ itself; batch order; dropout; which tokens are masked);
``data_seed`` fixes which rows are used (subsets, XNLI's premise split), so a second-seed control
retrains on the same data and every run of a study scores on the same held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from lottery.schedules import SCHEDULES, rounds_to
from probing.validation import at_least, one_of, reject

#: Why the lottery refuses LoRA and 4-bit weights (the message of the config error).
MASK_NEEDS_FULL_WEIGHTS = (
    "LoRA and 4-bit weights cannot carry a mask; sub-network training is full fine-tuning "
    "(method 'full', quantization 'none')"
)


@dataclass(frozen=True)
class LotteryParams:
    """The IMP schedule and the training of one round (one sub-network fine-tuning); validated on creation."""

    schedule: str = "linear"
    sparsities: tuple[float, ...] = (0.5, 0.8)
    steps_per_round: int = 1000
    lr: float = 2e-5
    batch_size: int = 32
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 128
    mlm_probability: float = 0.15
    seed: int = 0
    data_seed: int = 0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    method: str = "full"
    quantization: str = "none"

    def __post_init__(self) -> None:
        problems = one_of("schedule", self.schedule, SCHEDULES)
        if self.method != "full":
            problems.append(f"method: {MASK_NEEDS_FULL_WEIGHTS}, got {self.method!r}")
        if self.quantization != "none":
            problems.append(f"quantization: {MASK_NEEDS_FULL_WEIGHTS}, got {self.quantization!r}")
        if not self.sparsities or any(not 0 < s < 1 for s in self.sparsities):
            problems.append(f"sparsities: need at least one, each in (0, 1), got {list(self.sparsities)}")
        elif list(self.sparsities) != sorted(set(self.sparsities)):
            problems.append(f"sparsities: must be strictly increasing, got {list(self.sparsities)}")
        for name in ("steps_per_round", "batch_size", "max_length"):
            problems += at_least(name, getattr(self, name), 1)
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                problems += at_least(name, getattr(self, name), 1)
        problems += at_least("weight_decay", self.weight_decay, 0.0)
        for name in ("lr", "max_grad_norm"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be positive, got {getattr(self, name)}")
        if not 0 < self.mlm_probability < 1:
            problems.append(f"mlm_probability: must be in (0, 1), got {self.mlm_probability}")
        reject(problems)

    def target_rounds(self) -> dict[float, int]:
        """Each target sparsity → the round that trains its sub-network (the first the schedule reaches it at)."""
        return {s: rounds_to(self.schedule, s) for s in self.sparsities}

    @property
    def rounds(self) -> int:
        """How many rounds IMP trains: round 0 (dense) up to the round of the highest target, inclusive."""
        return max(self.target_rounds().values()) + 1
