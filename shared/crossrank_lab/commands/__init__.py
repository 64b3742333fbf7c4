"""The tooling subcommands of ``crossrank``: ``eval``, ``finetune`` and ``bench``.

Registered in the ``crossrank.commands`` entry-point group; each module is cheap to import
(``crossrank --help`` reads its ``HELP`` and ``REQUIRES``) and loads its dependencies in
``run``.
"""

from __future__ import annotations

__all__: list[str] = []
