"""The tooling subcommands of ``crossrank``: ``eval``, ``finetune`` and ``bench``.

Registered in the ``crossrank.commands`` entry-point group; each module is cheap to import
(``crossrank --help`` reads its ``HELP`` and ``REQUIRES``) and loads its dependencies in
``run``.
"""

from __future__ import annotations

import argparse

from rerank_core.commands import positive_int

__all__ = ["add_threads_argument", "set_torch_threads"]


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the run."""
    p.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads (on a CPU shared with other jobs, 1 is often much faster: "
        "no OpenMP spin-waiting)",
    )


def set_torch_threads(n: int | None) -> None:
    """Apply ``--threads`` (nothing to do without it, or without torch: an API backend)."""
    from .._support import installed

    if n and installed("torch"):
        import torch

        torch.set_num_threads(n)
