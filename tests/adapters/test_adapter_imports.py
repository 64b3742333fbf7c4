"""Adapter packages import only their own framework, and say which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "FlagEmbedding", "cohere")


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("package", "own", "other"),
    [
        ("llamaindex_rerank", "llama_index", "langchain_core"),
        ("langchain_rerank", "langchain_core", "llama_index"),
    ],
)
def test_import_is_light(package: str, own: str, other: str) -> None:
    loaded = run(
        f"import sys, {package}; "
        f"print(' '.join(m for m in {(*HEAVY, own, other)!r} if m in sys.modules))"
    ).split()
    assert loaded == [own]


@pytest.mark.parametrize(
    ("package", "blocked", "extra"),
    [
        ("llamaindex_rerank", "llama_index", "llamaindex"),
        ("langchain_rerank", "langchain_core", "langchain"),
    ],
)
def test_missing_framework_names_the_extra(package: str, blocked: str, extra: str) -> None:
    out = run(
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if it were not installed\n"
        "from rerank_core import MissingDependencyError\n"
        "try:\n"
        f"    import {package}\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc.extra, '|', exc)\n"
    )
    assert out.startswith(f"{extra} |")
    assert f'pip install "crossrank[{extra}]"' in out
