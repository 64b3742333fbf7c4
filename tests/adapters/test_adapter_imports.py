"""Adapter packages import only their own framework, and their import errors tell the truth:
"not installed" (naming the extra) only when the framework is absent; when it is installed
but fails to import, a ``BrokenDependencyError`` with the package, its version and the cause.

Each case runs in a fresh interpreter, with the real framework hidden or shadowed there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "FlagEmbedding", "cohere")

# package, the framework module it needs, its top-level package, the extra, the distribution
FRAMEWORKS = [
    ("llamaindex_rerank", "llama_index.core", "llama_index", "llamaindex", "llama-index-core"),
    ("langchain_rerank", "langchain_core", "langchain_core", "langchain", "langchain-core"),
]


def _source_dir(package: str) -> str:
    spec = importlib.util.find_spec(package)  # finds it without importing it
    assert spec is not None and spec.origin is not None
    return str(Path(spec.origin).resolve().parents[1])


# where rerank_core and the adapter packages are imported from (crossrank has no
# dependencies of its own, so these are all a bare interpreter needs)
SOURCE_DIRS = sorted(
    {_source_dir(p) for p in ("rerank_core", "llamaindex_rerank", "langchain_rerank")}
)

# Imports ``package`` and prints what it raised as JSON.
REPORT = """
import json, sys
try:
    import {package}
    out = {{"error": None}}
except Exception as exc:
    cause = exc.__cause__
    out = {{
        "error": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc),
        "extra": getattr(exc, "extra", None),
        "package": getattr(exc, "package", None),
        "cause": None if cause is None else f"{{type(cause).__name__}}: {{cause}}",
    }}
print(json.dumps(out))
"""


def run(code: str, *, flags: tuple[str, ...] = (), pythonpath: list[str] | None = None) -> str:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    return done.stdout.strip()


def report(
    package: str,
    *,
    prelude: str = "",
    flags: tuple[str, ...] = (),
    pythonpath: list[str] | None = None,
) -> dict[str, Any]:
    """What ``import package`` raised in a fresh interpreter (``prelude`` runs first)."""
    out = run(prelude + REPORT.format(package=package), flags=flags, pythonpath=pythonpath)
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


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


def assert_missing(got: dict[str, Any], package: str, extra: str, dist: str) -> None:
    assert got["error"] == "MissingDependencyError", got
    assert "ImportError" in got["mro"]
    assert "BackendError" not in got["mro"]
    assert got["extra"] == extra and got["package"] == dist
    message = str(got["message"])
    assert f"{package} needs {dist!r}, which is not installed" in message
    assert f'pip install "crossrank[{extra}]"' in message


@pytest.mark.parametrize(("package", "module", "top", "extra", "dist"), FRAMEWORKS)
def test_absent_framework_names_the_extra(
    package: str, module: str, top: str, extra: str, dist: str
) -> None:
    """A fresh environment with crossrank only: no site-packages at all (``python -S``)."""
    got = report(package, flags=("-S",), pythonpath=SOURCE_DIRS)
    assert_missing(got, package, extra, dist)


@pytest.mark.parametrize(("package", "module", "top", "extra", "dist"), FRAMEWORKS)
def test_hidden_framework_names_the_extra(
    package: str, module: str, top: str, extra: str, dist: str
) -> None:
    """The framework blocked in ``sys.modules`` (how Python marks a module as absent)."""
    got = report(package, prelude=f"import sys\nsys.modules[{top!r}] = None\n")
    assert_missing(got, package, extra, dist)


BROKEN_INITS = {
    "plain": ('raise ImportError("simulated: the framework is broken")', "simulated"),
    "a dependency lacks a name": (
        "raise ImportError(\"cannot import name 'Gone' from 'pydantic'\", name='pydantic')",
        "it needs 'pydantic', which pydantic",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_INITS))
@pytest.mark.parametrize(("package", "module", "top", "extra", "dist"), FRAMEWORKS)
def test_installed_but_broken_framework_is_not_called_missing(
    tmp_path: Path, kind: str, package: str, module: str, top: str, extra: str, dist: str
) -> None:
    """A package named like the framework that fails to import shadows the real one (as a
    version conflict would make the real one fail): the error says it is installed but
    broken, shows the version and the cause, and still names the extra."""
    body, shown = BROKEN_INITS[kind]
    fake = tmp_path / top
    fake.mkdir()
    (fake / "__init__.py").write_text(body + "\n")
    got = report(package, pythonpath=[str(tmp_path), *SOURCE_DIRS])

    assert got["error"] == "BrokenDependencyError", got
    assert "ImportError" in got["mro"]
    assert "MissingDependencyError" not in got["mro"]
    assert got["extra"] == extra and got["package"] == dist
    message = str(got["message"])
    assert "not installed" not in message
    assert f"{dist} {version(dist)} is installed but fails to import" in message
    assert shown in message
    assert f'"crossrank[{extra}]"' in message
    assert str(got["cause"]).startswith("ImportError")
