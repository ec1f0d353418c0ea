"""A checkpoint's weights digest: over its tensors (not its files' bytes), so the same weights saved twice,
with other header metadata or in other shards hash the same; other weights differ; ``.bin`` checkpoints are
hashed too; each file's hashes are cached and recomputed once the file changes; hub revisions are found in
the Hugging Face cache."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import BloomConfig, BloomModel

from probing.models import revision_step
from probing.weights_digest import (
    bin_tensor_hashes,
    safetensors_tensor_hashes,
    weight_files,
    weights_digest,
)
from tests.conftest import REPO

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def tiny_model(seed: int) -> BloomModel:
    torch.manual_seed(seed)
    return BloomModel(BloomConfig(vocab_size=50, hidden_size=16, n_layer=2, n_head=2))


def saved(model: BloomModel, directory: Path, **options: object) -> Path:
    model.save_pretrained(directory, **options)
    return directory


def digest_of(lines: list[str]) -> str:
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def independent_digest(directory: Path) -> str:
    """The digest as the module documents it, from the tensors as the safetensors library reads them."""
    lines = []
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            for name in sorted(handle.keys()):
                tensor = handle.get_tensor(name)
                data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                shape = ",".join(map(str, tensor.shape))
                dtype = SAFETENSORS_DTYPES[tensor.dtype]
                lines.append(f"{name}\t{dtype}\t{shape}\t{hashlib.sha256(data).hexdigest()}\n")
    return digest_of(lines)


def file_bytes_digest(directory: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(directory.glob("*.safetensors")))).hexdigest()


def test_the_digest_is_the_tensors_hash_computed_independently(tmp_path):
    directory = saved(tiny_model(0), tmp_path / "a")
    digest = weights_digest(directory, tmp_path / "cache")
    assert digest.sha256 == independent_digest(directory)
    with safe_open(directory / "model.safetensors", framework="pt") as handle:
        assert digest.tensors == len(list(handle.keys()))
    assert (digest.format, digest.files) == ("safetensors", 1)
    assert digest.size_bytes == (directory / "model.safetensors").stat().st_size


def test_the_same_weights_saved_again_resharded_or_with_other_metadata_hash_the_same(tmp_path):
    model = tiny_model(0)
    once = saved(model, tmp_path / "once")
    again = saved(model, tmp_path / "again")
    sharded = saved(model, tmp_path / "sharded", max_shard_size="20KB")
    other_header = tmp_path / "other-header"
    other_header.mkdir()
    save_file(load_file(once / "model.safetensors"), other_header / "model.safetensors", metadata={"saved": "by hand"})
    assert len(weight_files(sharded)[1]) > 1
    assert file_bytes_digest(other_header) != file_bytes_digest(once)  # the files' bytes differ; the weights do not
    digests = {weights_digest(d, tmp_path / "cache").sha256 for d in (once, again, sharded, other_header)}
    assert len(digests) == 1
    assert weights_digest(saved(tiny_model(1), tmp_path / "other"), tmp_path / "cache").sha256 not in digests


def test_a_checkpoint_without_safetensors_is_hashed_from_its_pytorch_bin(tmp_path):
    model = tiny_model(0)
    directory = tmp_path / "bin"
    directory.mkdir()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    torch.save({"not": "weights"}, directory / "training_args.bin")
    digest = weights_digest(directory, tmp_path / "cache")
    assert (digest.format, digest.files) == ("bin", 1)
    expected = []
    for name, tensor in model.state_dict().items():
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        shape = ",".join(map(str, tensor.shape))
        expected.append(f"{name}\tfloat32\t{shape}\t{hashlib.sha256(data).hexdigest()}\n")
    assert digest.sha256 == digest_of(expected)
    # the same tensors' data hash the same in either format
    safetensors = saved(model, tmp_path / "st") / "model.safetensors"
    from_bin = bin_tensor_hashes(directory / "pytorch_model.bin")
    from_safetensors = safetensors_tensor_hashes(safetensors)
    assert {n: h[2] for n, h in from_bin.items()} == {n: h[2] for n, h in from_safetensors.items()}


def test_a_directory_without_weights_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors"):
        weights_digest(tmp_path, tmp_path / "cache")


def test_an_unchanged_file_is_answered_from_the_cache_and_a_changed_one_is_hashed_anew(tmp_path):
    directory = saved(tiny_model(0), tmp_path / "a")
    cache = tmp_path / "cache"
    first = weights_digest(directory, cache)
    assert len(list(cache.glob("*.json"))) == 1
    # rewrite one tensor's bytes in place, keeping the file's size and modification time: the cache answers,
    # so the file is not read again (its stale digest comes back)
    path = directory / "model.safetensors"
    stat = path.stat()
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    with path.open("r+b") as handle:
        handle.seek(8 + header_length)
        handle.write(b"\x01\x02\x03\x04")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(directory, cache) == first
    # a new modification time: hashed anew, and the digest is the new content's
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = weights_digest(directory, cache)
    assert changed.sha256 != first.sha256 and changed.sha256 == independent_digest(directory)
    assert json.loads(next(cache.glob("*.json")).read_text())["mtime_ns"] == stat.st_mtime_ns + 1_000_000_000


def test_a_hub_revision_is_hashed_from_its_snapshot_in_the_hugging_face_cache(tmp_path):
    """A hub id resolves to the revision's snapshot in the Hugging Face cache (offline here: the cache is all)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny"
    saved(tiny_model(0), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "global_step100").write_text(commit)
    script = (
        "from probing.models import checkpoint_directory; from probing.weights_digest import weights_digest; "
        "import sys; d = checkpoint_directory('someone/tiny', 'global_step100'); "
        "print(d); print(weights_digest(d, __import__('pathlib').Path(sys.argv[1])).sha256)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    directory, digest = out.stdout.split()
    assert Path(directory) == repo / "snapshots" / commit
    assert digest == independent_digest(repo / "snapshots" / commit)


@pytest.mark.parametrize(
    ("revision", "step"),
    [("global_step1000", 1000), ("step-000037", 37), ("Step_5", 5), ("main", None), ("step-a", None), ("v2", None)],
)
def test_the_step_is_read_from_the_revisions_name(revision, step):
    assert revision_step(revision) == step
