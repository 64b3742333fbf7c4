"""Subcommands of the ``crossrank`` CLI that ship with the engine (``crossrank rerank``),
and what every subcommand shares.

A subcommand is a module with ``HELP``, optional ``REQUIRES``, ``add_arguments(parser)`` and
``run(args) -> int``, registered in the ``crossrank.commands`` entry-point group (see
:mod:`rerank_core.cli`). :func:`positive_int` is the one argparse type for counts; the
tooling commands of :mod:`crossrank_lab` use it too.
"""

from __future__ import annotations

import argparse

from .. import _validate
from ..errors import ConfigError

__all__ = ["positive_int"]


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1, checked by :func:`rerank_core._validate.positive_int`
    (the same rule and wording as the engine's options); otherwise a usage error, exit 2."""
    try:
        return _validate.positive_int("value", int(value))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"must be a positive int, got {value!r}") from None
