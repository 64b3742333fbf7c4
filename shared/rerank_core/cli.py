"""The ``crossrank`` command.

Subcommands are found in one registry: the ``crossrank.commands`` entry-point group
(``pyproject.toml``), read with :mod:`importlib.metadata`; ``rerank`` is also built in, so
the command works from a bare checkout (see :data:`FALLBACK`). A subcommand module exposes

- ``HELP``: a one-line description (for ``crossrank --help``);
- ``REQUIRES`` (optional): ``(module, extra)`` pairs it cannot run without; when one is
  missing the command is listed under "needs an extra" and running it says which extra to
  install (one line, exit 2);
- ``add_arguments(parser)`` and ``run(args) -> int``.

Importing a subcommand module must stay cheap (no torch): ``crossrank --help`` imports each
one to read its ``HELP``.

Exit codes, for every subcommand: 0 ok; 2 usage or configuration (bad arguments,
:class:`ConfigError`, :class:`InputError`, :class:`DependencyError`); 1 a run-time failure
(any other error). Errors are one line on stderr; the global ``--debug`` flag
(``crossrank --debug rerank ...``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from .deps import installed
from .errors import ConfigError, CrossrankError, DependencyError, InputError

__all__ = ["ENTRY_POINT_GROUP", "Command", "commands", "main"]

ENTRY_POINT_GROUP = "crossrank.commands"

BUILTIN = {"rerank": "rerank_core.commands.rerank", "cache": "rerank_core.commands.cache"}
"""Always registered, even without the distribution's metadata."""

FALLBACK = {
    **BUILTIN,
    "eval": "crossrank_lab.commands.eval",
    "finetune": "crossrank_lab.commands.finetune",
    "bench": "crossrank_lab.commands.bench",
}
"""The distribution's own commands, used only when no ``crossrank.commands`` entry point is
installed at all (a bare checkout on ``PYTHONPATH``, or metadata from an older install);
``pyproject.toml`` registers the same ones."""

KNOWN_EXTRAS = {"eval": "eval", "finetune": "train", "bench": "minilm"}
"""The extra that brings each tooling command, for the hint when it cannot be imported."""

USAGE_ERRORS = (ConfigError, InputError, DependencyError)


@dataclass(frozen=True, slots=True)
class Command:
    """One registered subcommand and whether it can run here."""

    name: str
    target: str  # module path
    help: str = ""
    missing: tuple[str, ...] = ()  # modules it needs that are not installed
    extra: str | None = None  # the extra that installs them
    problem: str | None = None  # why it cannot run (one line), None when it can

    @property
    def available(self) -> bool:
        return self.problem is None


def _registered() -> dict[str, str]:
    found: dict[str, str] = {}
    eps: Iterable[importlib.metadata.EntryPoint]
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # broken metadata: the built-in commands still work
        eps = ()
    for ep in eps:
        found.setdefault(ep.name, ep.value.split(":", 1)[0].strip())
    for name, target in (BUILTIN if found else FALLBACK).items():
        found.setdefault(name, target)
    return found


def _hint(extra: str | None) -> str:
    return f'install it with: pip install "crossrank[{extra or "all"}]"'


def _summary(doc: str | None) -> str:
    """The first line of a module docstring, without a leading "``crossrank X``: "."""
    first = (doc or "").strip().split("\n")[0]
    if first.startswith("``crossrank") and ": " in first:
        first = first.split(": ", 1)[1]
    return first.rstrip(".")


def _inspect(name: str, target: str) -> tuple[Command, ModuleType | None]:
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is None or not target.startswith(exc.name):
            raise  # a command module that imports something absent at import time: a bug
        known = KNOWN_EXTRAS.get(name)
        why = f"{exc.name} is not installed; {_hint(known)}"
        return Command(name, target, extra=known, problem=why), None
    help_text = str(getattr(module, "HELP", "") or _summary(module.__doc__))
    needs: Sequence[tuple[str, str]] = getattr(module, "REQUIRES", ())
    missing = tuple(mod for mod, _ in needs if not installed(mod))
    extras = sorted({x for mod, x in needs if mod in missing})
    extra = ",".join(extras) or None
    problem = f"needs {', '.join(missing)} (not installed); {_hint(extra)}" if missing else None
    return Command(name, target, help_text, missing, extra, problem), module


def commands() -> list[Command]:
    """Every registered subcommand, in registry order, with what it is missing (if anything)."""
    return [_inspect(name, target)[0] for name, target in _registered().items()]


def _top_parser(cmds: Sequence[Command]) -> argparse.ArgumentParser:
    unavailable = [c for c in cmds if not c.available]
    epilog = None
    if unavailable:
        epilog = "not available here:\n" + "\n".join(
            f"  {c.name:<10} {c.problem}" for c in unavailable
        )
    parser = argparse.ArgumentParser(
        prog="crossrank",
        description="Cross-encoder reranking.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in cmds:
        if c.available:
            sub.add_parser(c.name, help=c.help, add_help=False)
    return parser


def _error(name: str, message: object) -> None:
    text = " ".join(str(message).split("\n")).strip()
    print(f"crossrank {name}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug = True
        argv.pop(0)
    registry = _registered()
    if not argv or argv[0] not in registry:
        # no command (help on stderr, exit 2), --help (exit 0) or an unknown command
        # ("invalid choice", exit 2); unavailable commands are listed with their hint
        parser = _top_parser(commands())
        if not argv:
            parser.print_help(sys.stderr)
            return 2
        parser.parse_args(argv)
        return 2
    name, rest = argv[0], argv[1:]
    command, module = _inspect(name, registry[name])
    if module is None or not command.available:
        _error(name, command.problem)
        return 2
    parser = argparse.ArgumentParser(prog=f"crossrank {name}", description=command.help)
    module.add_arguments(parser)
    args = parser.parse_args(rest)  # usage errors: one line and exit 2 (argparse)
    args.debug = debug
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        if debug:
            raise
        _error(name, "interrupted")
        return 130
    except USAGE_ERRORS as exc:
        if debug:
            raise
        _error(name, exc)
        return 2
    except CrossrankError as exc:
        if debug:
            raise
        _error(name, exc)
        return 1
    except Exception as exc:
        if debug:
            raise
        _error(name, f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
