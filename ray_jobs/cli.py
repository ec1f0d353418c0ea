"""``xling``: one command for the jobs and tools of a study (each also runs as ``python -m ray_jobs.<job>``)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pipeline": ("ray_jobs.pipeline", "run the whole study: pre-train, extract, probe, transfer, analyse, report"),
    "stats": ("ray_jobs.prepare", "build the word datasets and print language x attribute statistics"),
    "pretrain": ("ray_jobs.pretrain", "pre-train the study's own models with intermediate checkpoints"),
    "extract": ("ray_jobs.extract", "extract per-word activations of every checkpoint into Parquet"),
    "probe": ("ray_jobs.probe", "rank and evaluate neurons, one Ray Tune trial per configuration"),
    "transfer": ("ray_jobs.transfer", "zero-shot cross-lingual transfer of every checkpoint (LoRA / QLoRA)"),
    "analyse": ("ray_jobs.analyse", "overlap statistics, correlations, the DuckDB database and the report"),
    "sql": ("ray_jobs.sql", 'run SQL over a study\'s results: xling sql "SELECT ..." --root R'),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: xling COMMAND [--config C] [...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
