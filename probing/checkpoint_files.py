"""Whether a local checkpoint's weight files are whole, read from their headers only.

A copy cut short (a full disk, an interrupted download) otherwise surfaces as a confusing error deep
inside an extraction actor or a transfer trial. A ``*.safetensors`` file starts with the length of its
JSON header, and the header gives every tensor's byte range: the file must end where the last tensor
does. A ``*.bin`` (PyTorch zip) file must have its zip directory at its end.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not whole, or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path.name}: {size} bytes, shorter than a safetensors header"
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            return f"{path.name}: truncated or not safetensors (a header of {length} bytes in a {size}-byte file)"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return f"{path.name}: its safetensors header is not JSON"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{path.name}: truncated ({size} bytes; its header says {expected})"
    return None


def zip_problem(path: Path) -> str | None:
    """Why a PyTorch ``.bin`` (zip) file is not whole, or None."""
    try:
        with zipfile.ZipFile(path):
            return None
    except zipfile.BadZipFile as err:
        return f"{path.name}: truncated or not a PyTorch checkpoint ({err})"


def weight_problems(directory: Path | str) -> list[str]:
    """Why the weight files of a checkpoint directory are not whole (none: they are, or it has none here)."""
    checks = {".safetensors": safetensors_problem, ".bin": zip_problem}
    problems = []
    for path in sorted(Path(directory).iterdir()):
        check = checks.get(path.suffix)
        if check is not None and path.is_file():
            problem = check(path)
            if problem is not None:
                problems.append(problem)
    return problems
