"""The error for malformed input files: it names the file, the line and field when known, and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """``path:line: field: expected X, found Y`` (line, field and found left out when not known)."""

    def __init__(self, path: Path | str, line: int | None, expected: str, found: str = "", field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        parts = [f"{path}:{line}" if line is not None else str(path)]
        if field is not None:
            parts.append(field)
        message = ": ".join(parts) + f": expected {expected}"
        if found:
            message += f", found {found}"
        super().__init__(message)
