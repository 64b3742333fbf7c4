"""Subcommands of the ``crossrank`` CLI that ship with the engine (``crossrank rerank``),
and what every subcommand shares.

A subcommand is a module with ``HELP``, optional ``REQUIRES``, ``add_arguments(parser)`` and
``run(args) -> int``, registered in the ``crossrank.commands`` entry-point group (see
:mod:`rerank_core.cli`). :func:`positive_int` is the one argparse type for counts; the
tooling commands of :mod:`crossrank_lab` use it too.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int"]


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n
