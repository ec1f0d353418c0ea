"""One SHA-256 of a checkpoint's weights, streamed file by file over their tensors and cached per file.

Public repositories have shipped revision branches whose weights duplicate another step's (paper 002
dropped such checkpoints by hand); a study of training dynamics finds them by this digest (the
``weights`` stage, the ``checkpoints`` view).

What is hashed is the tensors, not the files' bytes: each tensor's data is read from its file in
fixed-size chunks (never a whole tensor in memory) into a SHA-256, and the checkpoint's digest is one
SHA-256 over a line per tensor (name, dtype, shape, data hash), sorted by name. So a safetensors
header's free-form ``__metadata__``, the order of tensors in a file and the split into shards do not
change it: the same weights saved twice hash the same. The weight files are a checkpoint directory's
``*.safetensors``, or, when it has none, its ``pytorch_model*.bin`` (loaded memory-mapped and hashed
tensor by tensor the same way, with torch's dtype names: digests of the two formats are not compared,
and the format is stored beside the digest).

Hashing gigabytes takes a while, so each file's tensor hashes are cached on the machine, one small JSON
file per weight file under ``$XLING_LOCAL_DIR/weights`` (~/.cache/xling by default), keyed by the
file's absolute path, size and modification time: a rerun reads no weight file again, and a file that
is rewritten is hashed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

#: Bumped whenever what the digest covers changes (it is part of the stored digests' fingerprints).
DIGEST_VERSION = 1

#: Bytes read at a time from a weight file.
CHUNK_BYTES = 1 << 22

#: A tensor's hash entry: (dtype, shape, SHA-256 of its data).
TensorHash = tuple[str, list[int], str]


@dataclass(frozen=True)
class WeightsDigest:
    """A checkpoint's weights digest and what it covers: the format, the files, their tensors and total size."""

    sha256: str
    format: str
    files: int
    tensors: int
    size_bytes: int


def default_cache_dir() -> Path:
    """Where per-file tensor hashes are cached on this machine: ``$XLING_LOCAL_DIR/weights``."""
    return Path(os.environ.get("XLING_LOCAL_DIR", "~/.cache/xling")).expanduser() / "weights"


def weight_files(directory: Path) -> tuple[str, list[Path]]:
    """The format ("safetensors" or "bin") and the weight files of a checkpoint directory, sorted by name."""
    for fmt, pattern in (("safetensors", "*.safetensors"), ("bin", "pytorch_model*.bin")):
        files = sorted(path for path in directory.glob(pattern) if path.is_file())
        if files:
            return fmt, files
    raise FileNotFoundError(f"{directory}: no *.safetensors or pytorch_model*.bin weight file")


def _hash_range(handle, start: int, length: int) -> str:
    """SHA-256 of ``length`` bytes of an open file from ``start``, read in chunks."""
    digest = hashlib.sha256()
    handle.seek(start)
    while length > 0:
        block = handle.read(min(CHUNK_BYTES, length))
        if not block:
            raise ValueError(f"{handle.name}: ends inside a tensor")
        digest.update(block)
        length -= len(block)
    return digest.hexdigest()


def safetensors_tensor_hashes(path: Path) -> dict[str, TensorHash]:
    """Each tensor of a safetensors file by name: its dtype, shape and data hash, read in file order."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header.pop("__metadata__", None)
        tensors = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
        hashes = {}
        for name, entry in tensors:
            begin, end = entry["data_offsets"]
            hashes[name] = (entry["dtype"], list(entry["shape"]), _hash_range(handle, 8 + length + begin, end - begin))
    return hashes


def bin_tensor_hashes(path: Path) -> dict[str, TensorHash]:
    """Each tensor of a PyTorch ``.bin`` state dict by name, loaded memory-mapped, hashed in chunks."""
    import torch

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    hashes = {}
    for name, tensor in state.items():
        data = memoryview(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
        digest = hashlib.sha256()
        for start in range(0, len(data), CHUNK_BYTES):
            digest.update(data[start : start + CHUNK_BYTES])
        hashes[name] = (str(tensor.dtype).removeprefix("torch."), list(tensor.shape), digest.hexdigest())
    return hashes


def cached_tensor_hashes(path: Path, fmt: str, cache_dir: Path) -> dict[str, TensorHash]:
    """A weight file's tensor hashes, from the cache when the file's path, size and mtime are those cached;
    else computed and cached (written atomically, so concurrent workers never read half an entry)."""
    path = path.resolve()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "version": DIGEST_VERSION}
    entry = cache_dir / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        cached = json.loads(entry.read_text())
        if {name: cached.get(name) for name in key} == key:
            return {name: (dtype, shape, sha) for name, (dtype, shape, sha) in cached["tensors"].items()}
    except (OSError, ValueError, KeyError, TypeError):  # absent or unreadable: computed again
        pass
    hashes = safetensors_tensor_hashes(path) if fmt == "safetensors" else bin_tensor_hashes(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**key, "tensors": hashes}))
    tmp.replace(entry)
    return hashes


def weights_digest(directory: Path | str, cache_dir: Path | None = None) -> WeightsDigest:
    """The digest of the weights in a checkpoint directory (module docstring), every file's tensors
    hashed once per machine (``cache_dir``: `default_cache_dir`)."""
    fmt, files = weight_files(Path(directory))
    tensors: dict[str, TensorHash] = {}
    for path in files:
        for name, entry in cached_tensor_hashes(path, fmt, cache_dir or default_cache_dir()).items():
            if name in tensors:
                raise ValueError(f"{directory}: tensor {name} is in two weight files")
            tensors[name] = entry
    digest = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape, sha = tensors[name]
        digest.update(f"{name}\t{dtype}\t{','.join(map(str, shape))}\t{sha}\n".encode())
    size = sum(path.stat().st_size for path in files)
    return WeightsDigest(digest.hexdigest(), fmt, len(files), len(tensors), size)
