"""The ``crossrank`` command. Each subcommand lives in its own module, imported when used.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "rerank": ("rerank_core.commands.rerank", "rerank passages for a query; print before/after"),
    "eval": (
        "rerank_core.commands.evaluate",
        "evaluate reranking quality on a BEIR-layout dataset",
    ),
    "finetune": ("rerank_core.commands.finetune", "fine-tune a cross-encoder on a training split"),
    "bench": ("rerank_core.commands.bench", "benchmark speed against the peer rerankers"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="crossrank", description="Cross-encoder reranking.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    cmd = argparse.ArgumentParser(prog=f"crossrank {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd)
    args = cmd.parse_args(rest)
    code: int = module.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
