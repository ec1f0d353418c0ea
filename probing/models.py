"""One way to load a transformers model and to read (or replace) its layers' hidden states.

Loading: `resolve_model` says where a checkpoint lives (hub id or local directory of revisions),
`checkpoint_directory` where its files are on this machine (for `probing.weights_digest`),
`load_fast_tokenizer` loads the fast tokenizer word alignment needs, `model_max_length` reads the
longest input from the config, `load_model` loads the base model for reading activations, and
`encode_words` tokenizes pre-split words. Extraction, transfer (`transfer.models`, which adds task
heads) and the lottery all load through these, so a checkpoint means the same thing everywhere.

Hook points (after TransformerLens): every layer of the layer convention has a name, ``"embed"``
for layer 0 and ``"blocks.{L}"`` for layer L, and `HookPoints` attaches a function there for the
duration of a ``with`` block. The function gets the hidden state (batch × tokens × hidden) and
returns None to only read it, or a tensor of the same shape that replaces it for the rest of the
forward pass (interventions). The points are found in the module tree, not per architecture: the
blocks are the one outermost ``ModuleList`` with ``config.num_hidden_layers`` entries (BLOOM
``transformer.h``, GPT-2 ``h``, BERT ``encoder.layer``, XLM-R ``roberta.encoder.layer``).

Layer convention (``LAYER_CONVENTION``, the one statement of it): layer 0 is the embedding output
(``hidden_states[0]``, the input of block 1; for BLOOM after its embedding layer norm) and layer L
(1..n) is the output of transformer block L (``hidden_states[L]``); for models with a final layer
norm after the blocks (BLOOM's ``ln_f``, GPT-2's) the last one, L = n, includes it, as in
transformers. Wang et al. (2024) count differently: their code reads ``hidden_states[L − 1]`` for
"layer L of 25" (1-based), so their layers 13 and 17 are 12 and 16 here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.hooks import RemovableHandle

from probing.bloom_gelu import use_lean_gelu

#: How layers are numbered, as printed in the study report (see the module docstring).
LAYER_CONVENTION = "layer 0 = embedding output, layer L = output of block L; paper 002's layer L is our L−1"

#: Length limit for models with no position table (BLOOM uses ALiBi): its training length.
DEFAULT_MAX_LENGTH = 2048

#: Names of the layer norm some models apply to the last block's output (part of the last layer).
FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm")

#: A function at a hook point: gets the hidden state, returns None (read) or its replacement (write).
HookFn = Callable[[torch.Tensor], torch.Tensor | None]


def resolve_model(model_id: str, revision: str | None) -> tuple[str, str | None]:
    """Where to load a checkpoint from: ``<dir>/<revision>`` for a local directory, else the hub id.

    A local directory of checkpoints is addressed like a hub repository with revisions, so that a
    study treats its own pre-trained checkpoints exactly as it treats ``bigscience/bloom-*`` ones.
    """
    local = Path(model_id)
    if local.is_dir():
        if revision and revision != "main":
            sub = local / revision
            if not (sub / "config.json").is_file():
                raise FileNotFoundError(f"checkpoint '{revision}' of local model {local}: no {sub}/config.json")
            return str(sub), None
        return str(local), None
    return model_id, revision


def checkpoint_directory(model_id: str, revision: str | None) -> Path:
    """The directory on this machine that holds a checkpoint's weight files: its local directory, or for a
    hub id the revision's snapshot in the Hugging Face cache, whose weights are fetched when absent (as
    loading would fetch them; safetensors first, PyTorch ``.bin`` files only when the revision has none)."""
    source, rev = resolve_model(model_id, revision)
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        snapshot = Path(snapshot_download(source, revision=rev, allow_patterns=[pattern]))
        if any(snapshot.glob(pattern)):
            break
    return snapshot


def revision_step(revision: str) -> int | None:
    """The training step a revision's name gives (``global_step1000``, ``step-000037``), or None."""
    found = re.search(r"step[-_]?(\d+)$", revision, flags=re.IGNORECASE)
    return int(found.group(1)) if found else None


def model_max_length(config: object, tokenizer: object | None = None) -> int:
    """The longest input the model accepts, read from its config (and tokenizer), never assumed."""
    limits = [getattr(config, "max_position_embeddings", None), getattr(config, "n_positions", None)]
    if tokenizer is not None:
        limits.append(getattr(tokenizer, "model_max_length", None))
    sane = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min(sane) if sane else DEFAULT_MAX_LENGTH


def load_fast_tokenizer(model_id: str, revision: str | None) -> tuple[object, str, str | None]:
    """The model's fast tokenizer (word alignment needs it), and where the model lives: (tokenizer, source,
    revision). Silences transformers' logging and progress bars first."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    source, rev = resolve_model(model_id, revision)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=rev)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_id}@{revision}: a fast (Rust) tokenizer is required for word alignment")
    return tokenizer, source, rev


def encode_words(tokenizer: object, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int]]]:
    """Token ids and, per token, the index of its word (-1 for special tokens), for pre-split words.

    Each word after the first gets a leading space, so that byte-level BPE sub-words match
    space-separated text. Used where labels are per syntactic word (POS transfer); activations
    are computed from the surface text (`probing.extraction.encode_text`).
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    pieces = [[words[0], *(" " + w for w in words[1:])] for words in sentences]
    encodings = backend.encode_batch(pieces, is_pretokenized=True, add_special_tokens=True)
    return [(enc.ids, [-1 if w is None else w for w in enc.word_ids]) for enc in encodings]


def hook_name(layer: int) -> str:
    """The name of a layer's hook point: ``"embed"`` for layer 0, ``"blocks.{L}"`` for layer L."""
    return "embed" if layer == 0 else f"blocks.{layer}"


def find_blocks(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The name and the module of the model's transformer blocks: the one ``ModuleList`` with
    ``config.num_hidden_layers`` entries that is not inside another such list."""
    depth = int(model.config.num_hidden_layers)
    lists = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth]
    outer = [name for name in lists if not any(name.startswith(other + ".") for other in lists)]
    if len(outer) != 1:
        found = ", ".join(outer) or "none"
        raise ValueError(f"{type(model).__name__}: expected one ModuleList of {depth} blocks, found {found}")
    return outer[0], model.get_submodule(outer[0])


def _hidden(output: object) -> torch.Tensor:
    """The hidden state in a block's output: the output itself or the first entry of its tuple."""
    return output[0] if isinstance(output, tuple) else output


def _replaced(output: object, hidden: torch.Tensor) -> object:
    """A block's output with its hidden state replaced, in the output's own form."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class _ForwardStopped(Exception):
    """Raised at the deepest layer `HookPoints.read_layers` needs, to skip the rest of the forward pass."""


class HookPoints:
    """The named hook points of a model, one per layer of the layer convention (module docstring).

    Layer 0 is read at the input of block 1 (a forward pre-hook), layer L at the output of block L,
    and the last layer at the output of the final layer norm where the model has one, so that each
    point holds exactly ``output_hidden_states[L]``. Hooks live on the model's modules, so they act
    on every forward pass of the model (in any thread) while their ``with`` block is open.
    """

    def __init__(self, model: torch.nn.Module):
        name, self.blocks = find_blocks(model)
        parent = model.get_submodule(name.rpartition(".")[0])
        norms = [getattr(parent, n) for n in FINAL_NORM_NAMES if isinstance(getattr(parent, n, None), torch.nn.Module)]
        self.final_norm: torch.nn.Module | None = norms[0] if norms else None
        self.num_layers = len(self.blocks)
        self.names = tuple(hook_name(layer) for layer in range(self.num_layers + 1))

    def check_layers(self, layers: Sequence[int]) -> None:
        """ValueError naming the layers beyond this model's depth, if any."""
        bad = [layer for layer in layers if not 0 <= layer <= self.num_layers]
        if bad:
            depth = self.num_layers
            raise ValueError(f"layers {bad} out of range 0..{depth} (0 = embeddings; the model has {depth} blocks)")

    def layer(self, name: str) -> int:
        """The layer of a hook point's name; ValueError for a name that is not one of ``names``."""
        if name not in self.names:
            raise ValueError(f"no hook point '{name}': this model has embed, blocks.1 .. blocks.{self.num_layers}")
        return self.names.index(name)

    def _attach(self, layer: int, fn: HookFn) -> RemovableHandle:
        """Put ``fn`` at a layer's point: a pre-hook on block 1 for layer 0, else a hook on the module whose
        output is the layer."""
        if layer == 0:

            def at_input(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
                positional = bool(args)
                new = fn(args[0] if positional else kwargs["hidden_states"])
                if new is None:
                    return None
                return ((new, *args[1:]), kwargs) if positional else (args, {**kwargs, "hidden_states": new})

            return self.blocks[0].register_forward_pre_hook(at_input, with_kwargs=True)
        last = layer == self.num_layers and self.final_norm is not None
        module = self.final_norm if last else self.blocks[layer - 1]

        def at_output(module: torch.nn.Module, args: tuple, output: object) -> object | None:
            new = fn(_hidden(output))
            return None if new is None else _replaced(output, new)

        return module.register_forward_hook(at_output)

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
        """Within the block, each ``(name, fn)`` of ``fwd_hooks`` runs at its point, in the given order
        where several share one; all are removed on leaving, also on an error."""
        layers = [self.layer(name) for name, _ in fwd_hooks]
        with ExitStack() as stack:
            for layer, (_, fn) in zip(layers, fwd_hooks, strict=True):
                stack.callback(self._attach(layer, fn).remove)
            yield

    @contextmanager
    def recording(self, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        """Within the block, the hidden state of each of ``layers`` in the last forward pass, by layer."""
        self.check_layers(layers)
        recorded: dict[int, torch.Tensor] = {}

        def keep(layer: int) -> HookFn:
            return lambda hidden: recorded.__setitem__(layer, hidden)

        with self.hooks([(hook_name(layer), keep(layer)) for layer in layers]):
            yield recorded

    def read_layers(self, layers: Sequence[int], forward: Callable[[], object]) -> dict[int, torch.Tensor]:
        """The hidden states of ``layers`` in ``forward()``, one forward pass of the model, which is stopped
        right after the deepest of them (the blocks above it are never run)."""

        def stop(hidden: torch.Tensor) -> None:
            raise _ForwardStopped

        try:
            with self.recording(layers) as recorded, self.hooks([(hook_name(max(layers)), stop)]):
                forward()
        except _ForwardStopped:
            pass
        missing = sorted(set(layers) - set(recorded))
        if missing:
            raise RuntimeError(f"the forward pass never reached layers {missing}")
        return recorded


@dataclass
class LoadedModel:
    """A model in eval mode, its fast tokenizer and hook points, with the shape facts read from its config."""

    model: torch.nn.Module
    tokenizer: object
    hook_points: HookPoints
    num_layers: int
    hidden_size: int
    max_length: int
    device: torch.device


def load_model(
    model_id: str,
    revision: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    device_map: str | None = None,
) -> LoadedModel:
    """Load the base model (no task head) in ``dtype`` and its fast tokenizer, once.

    With ``device_map`` (e.g. "auto", needs accelerate) the weights are placed by accelerate across
    the visible devices instead of moved to ``device``; inputs then go to the device of the input
    embeddings, and each layer's hidden states stay on the device that computed them.
    """
    from transformers import AutoModel

    tokenizer, source, rev = load_fast_tokenizer(model_id, revision)
    if device_map is None:
        model = AutoModel.from_pretrained(source, revision=rev, dtype=dtype).to(device)
    else:
        model = AutoModel.from_pretrained(source, revision=rev, dtype=dtype, device_map=device_map)
    use_lean_gelu(model)
    model.eval()
    config = model.config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        hook_points=HookPoints(model),
        num_layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        max_length=model_max_length(config, tokenizer),
        device=model.get_input_embeddings().weight.device,
    )
