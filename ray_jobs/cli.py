"""``xling``: one command per stage of `ray_jobs.stages.STAGES`, plus the whole pipeline and the tools.

Each stage also runs as ``python -m ray_jobs.<stage>``.
"""

from __future__ import annotations

import importlib
import os
import sys

from ray_jobs.stages import STAGES

#: Command → ("module" or "module:function", help). The stages' commands come from the registry.
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("ray_jobs.pipeline", "run the whole study: every stage below, in order"),
    **{stage.name: (stage.module, stage.help) for stage in STAGES},
    "stats": ("ray_jobs.prepare:stats_main", "build the word datasets and print language x attribute statistics"),
    "sql": ("ray_jobs.sql", 'run SQL over a study\'s results: xling sql "SELECT ..." --root R'),
    "neuron": ("ray_jobs.neuron", "print a neuron's card: xling neuron --root R --layer L --neuron N"),
}


def entry_point(command: str):
    """The function a command runs (a module's ``main``, or the named function)."""
    module, _, function = COMMANDS[command][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: xling COMMAND [--config C] [...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return entry_point(argv[0])(argv[1:])
    except BrokenPipeError:  # the reader closed the pipe (`xling sql ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0


if __name__ == "__main__":
    sys.exit(main())
