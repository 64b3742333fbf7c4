"""Test helpers: ``need`` for optional packages, and a small deterministic backend for
engine-logic tests (never a proof of quality)."""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence
from types import ModuleType

import pytest

# Every skip that ``need`` makes starts with this; the strict-skip gate in conftest.py
# reports them as missing packages.
NOT_INSTALLED = "not installed:"


class BrokenPackageError(RuntimeError):
    """An optional package is installed but fails to import (deliberately not an
    ImportError: nothing may mistake it for absence)."""


def need(module: str, *, why: str = "") -> ModuleType:
    """Import ``module`` for a test; skip only when it is genuinely absent.

    Unlike ``pytest.importorskip``, an installed package whose import fails (a version
    conflict such as transformers 5.24 breaking FlagEmbedding) is an error, with the
    package's version and the underlying import error, never a skip. Works at module level
    (the whole module is skipped) and inside tests and fixtures.
    """
    __tracebackhide__ = True  # skip reports and errors point at the caller's line
    # Imported here: conftest.py loads this module, and a rerank_core that fails to import
    # should fail the tests that use it, not the loading of every test.
    from rerank_core.deps import installed, package_version

    if not installed(module):
        reason = f"{NOT_INSTALLED} {module}" + (f" ({why})" if why else "")
        pytest.skip(reason, allow_module_level=True)
    try:
        return importlib.import_module(module)
    except Exception as exc:
        version = package_version(module) or "(unknown version)"
        raise BrokenPackageError(
            f"{module} {version} is installed but fails to import: "
            f"{type(exc).__name__}: {exc}. This is a broken environment, not a missing "
            "package, so the test fails instead of skipping."
        ) from exc


#: The cascade tests' query and texts; under KeywordBackend a text scores the number of
#: query words it contains (the comments).
CASCADE_QUERY = "alpha beta gamma"
CASCADE_TEXTS = [
    "nothing here",  # 0: 0 query words
    "alpha beta",  # 1: 2
    "alpha",  # 2: 1
    "alpha beta gamma",  # 3: 3
    "other words",  # 4: 0
    "gamma",  # 5: 1
    "beta gamma delta",  # 6: 2
]

_WORD = re.compile(r"\S+")


class WordTokenizer:
    """Whitespace tokens; three special tokens per pair, like BERT."""

    pair_special_tokens = 3

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in _WORD.finditer(t)] for t in texts]


class KeywordBackend:
    """Score = number of query words present in the window (case-insensitive).

    Records every batch it is asked to score, so tests can see model work.
    Set ``fail`` to make it raise.
    """

    score_scale = "logit"

    def __init__(self, max_length: int = 64, tag: str = "v1") -> None:
        self._max_length = max_length
        self._tag = tag
        self.tokenizer = WordTokenizer()
        self.calls: list[list[tuple[str, str]]] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return f"keyword:{self._tag}:{self._max_length}"

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def pairs_seen(self) -> int:
        return sum(len(c) for c in self.calls)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self.calls.append(list(pairs))
        out = []
        for q, t in pairs:
            words = {w.lower() for w in _WORD.findall(t)}
            out.append(float(sum(w.lower() in words for w in _WORD.findall(q))))
        return out
