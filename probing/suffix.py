"""Run a model once up to layer L, then many times from an edited layer-L state through the blocks after L only.

An intervention sweep edits the hidden state of layer L in many ways (every k, every ranking) on the same
inputs. The blocks up to L see the same input every time, so `LayerCache` runs them once per batch
(`LayerCache.full`) and `LayerCache.resume` runs only the rest: blocks L+1..n, the final norm and
whatever follows. Instead of re-implementing each architecture's forward pass (BLOOM's ALiBi and causal
mask, BERT's extended attention mask, ...), `resume` calls the model's own forward with blocks 1..L
*passed through* (their ``forward`` returns its input, in the block's own output form, without computing
anything) and the layer-L hook point (`probing.models.HookPoints`) replacing whatever arrives there with
the edited state. Everything after L is then computed by the model's own code from exactly the inputs a
full forward pass with the same edit would give it, so the outputs are bit-identical to that pass
(tested); what is left of blocks 1..L is the embedding lookup and the masks, which every pass needs anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from probing.models import HookPoints, hook_name

#: A block's output form: None for a bare tensor, else the length of its output tuple.
OutputForm = int | None


def _form(output: object) -> OutputForm:
    return len(output) if isinstance(output, tuple) else None


def _pass_through(form: OutputForm):
    """A block ``forward`` that computes nothing: its input hidden state, in the block's output form."""

    def forward(*args: object, **kwargs: object) -> object:
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if form is None else (hidden, *([None] * (form - 1)))

    return forward


class LayerCache:
    """Layer L of ``base`` (a model whose output has ``last_hidden_state``): computed once, resumed from often.

    ``full`` must run once before ``resume``: it also learns the output form of the blocks it will pass
    through (a tuple for BLOOM, a tensor for BERT in transformers 5).
    """

    def __init__(self, base: torch.nn.Module, points: HookPoints, layer: int) -> None:
        points.check_layers([layer])
        self.base, self.points, self.layer = base, points, layer
        self.skipped = list(points.blocks)[:layer]
        self.forms: list[OutputForm] | None = None

    def full(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One full forward pass: (the layer-L state, the last hidden state)."""
        forms: list[OutputForm] = [None] * len(self.skipped)

        def learn(index: int):
            return lambda module, args, output: forms.__setitem__(index, _form(output))

        handles = [block.register_forward_hook(learn(i)) for i, block in enumerate(self.skipped)]
        try:
            with self.points.recording([self.layer]) as recorded:
                last = self.base(**inputs).last_hidden_state
        finally:
            for handle in handles:
                handle.remove()
        self.forms = forms
        return recorded[self.layer], last

    def resume(self, state: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last hidden state when layer L holds ``state``, computed by the blocks after L only."""
        if self.forms is None:
            raise RuntimeError("LayerCache.resume before LayerCache.full: the skipped blocks' output form is unknown")
        with self._skipping(), self.points.hooks([(hook_name(self.layer), lambda hidden: state)]):
            return self.base(**inputs).last_hidden_state

    @contextmanager
    def _skipping(self) -> Iterator[None]:
        """Blocks 1..L pass their input through while the block is open (an instance ``forward`` that was
        there before, e.g. accelerate's, is put back on leaving)."""
        before = [block.__dict__.get("forward") for block in self.skipped]
        for block, form in zip(self.skipped, self.forms, strict=True):
            block.forward = _pass_through(form)
        try:
            yield
        finally:
            for block, previous in zip(self.skipped, before, strict=True):
                if previous is None:
                    del block.forward
                else:
                    block.forward = previous
