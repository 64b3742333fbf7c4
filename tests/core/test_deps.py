"""The honest-error contract for optional dependencies (``rerank_core.deps``).

"Not installed" only when a package is absent; an installed package that fails to import
is a :class:`BrokenDependencyError` naming the package, its version, the missing module and
what to do; Ctrl-C during an import is never turned into either. The broken packages here
are real packages on ``sys.path`` (a temporary directory) whose ``__init__`` raises, the
way FlagEmbedding 1.4.2 fails under transformers 5.24.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import need
from rerank_core import (
    BackendError,
    BrokenDependencyError,
    CrossrankError,
    DependencyError,
    MissingDependencyError,
    Reranker,
)
from rerank_core.deps import installed, package_version, require

ROOT = Path(__file__).resolve().parents[2]
MISSING_MODULE = "transformers.modeling_attn_mask_utils"
RAISE_MISSING_MODULE = (
    f"raise ModuleNotFoundError(\"No module named '{MISSING_MODULE}'\", name={MISSING_MODULE!r})\n"
)


def make_package(root: Path, name: str, init: str, *, version: str | None = None) -> Path:
    """A package ``name`` under ``root`` whose ``__init__`` runs ``init``, with a
    ``.dist-info`` giving it ``version`` (so importlib.metadata knows it) when set."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(init)
    if version is not None:
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return pkg


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory at the front of ``sys.path``; modules imported from it are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("crossrank_fake_"):
            del sys.modules[name]


# ------------------------------------------------------------------ absent


def test_absent_package_is_missing_and_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("crossrank_fake_absent", extra="bge", purpose="the bge backend")
    err = info.value
    message = str(err)
    assert "not installed" in message
    assert 'pip install "crossrank[bge]"' in message
    assert "the bge backend needs 'crossrank_fake_absent'" in message
    assert err.extra == "bge" and err.package == "crossrank_fake_absent"
    # Catchable as the library's error, as a dependency error and as an ImportError;
    # not a backend failure (redis or a framework can be what is missing).
    assert isinstance(err, DependencyError) and isinstance(err, CrossrankError)
    assert isinstance(err, ImportError)
    assert not isinstance(err, BackendError)


def test_absent_submodule_is_missing() -> None:
    with pytest.raises(MissingDependencyError, match="not installed"):
        require("json.crossrank_fake_absent", extra="x")
    assert not installed("json.crossrank_fake_absent")
    assert not installed("crossrank_fake_absent.sub")


def test_distribution_name_is_used_in_the_message() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("crossrank_fake_absent", extra="minilm", package="crossrank-fake-dist")
    assert "'crossrank-fake-dist', which is not installed" in str(info.value)
    assert info.value.package == "crossrank-fake-dist"


def test_present_package_is_returned() -> None:
    import json

    assert require("json", extra="x") is json
    assert installed("json") and installed("json.decoder")


# ------------------------------------------------------------------ broken


def test_broken_package_is_never_called_not_installed(site: Path) -> None:
    make_package(site, "crossrank_fake_flag", RAISE_MISSING_MODULE, version="1.4.2")
    assert installed("crossrank_fake_flag")  # present, though it cannot be imported
    assert package_version("crossrank_fake_flag") == "1.4.2"
    with pytest.raises(BrokenDependencyError) as info:
        require("crossrank_fake_flag", extra="bge", purpose="the bge backend")
    err = info.value
    message = str(err)
    assert "not installed" not in message
    assert "crossrank_fake_flag 1.4.2 is installed but fails to import" in message
    assert MISSING_MODULE in message  # the module it could not find
    assert "ModuleNotFoundError" in message
    transformers_version = package_version("transformers")
    if transformers_version is not None:  # which version of the culprit lacks it
        assert f"transformers {transformers_version} lacks" in message
    # What to do: the tested set (constraints) for this extra, or pinning the culprit.
    assert 'pip install -c constraints.txt "crossrank[bge]"' in message
    assert "pin the conflicting package" in message
    assert err.extra == "bge" and err.package == "crossrank_fake_flag"
    assert isinstance(err.__cause__, ModuleNotFoundError)
    assert err.__cause__.name == MISSING_MODULE
    assert isinstance(err, ImportError) and not isinstance(err, MissingDependencyError)


def test_broken_package_without_metadata_says_version_unknown(site: Path) -> None:
    make_package(site, "crossrank_fake_nometa", "raise AttributeError('no attribute x')\n")
    with pytest.raises(BrokenDependencyError) as info:
        require("crossrank_fake_nometa", extra="redis")
    message = str(info.value)
    assert "crossrank_fake_nometa (unknown version) is installed but fails to import" in message
    assert "AttributeError: no attribute x" in message
    assert "not installed" not in message


def test_package_missing_its_own_submodule_is_broken(site: Path) -> None:
    """An ImportError naming the package itself (a half-deleted install) is still broken."""
    make_package(site, "crossrank_fake_half", "from . import gone\n", version="2.0")
    with pytest.raises(BrokenDependencyError, match=r"crossrank_fake_half 2\.0 is installed"):
        require("crossrank_fake_half", extra="x")


def test_submodule_of_a_broken_parent_is_installed_and_broken(site: Path) -> None:
    make_package(site, "crossrank_fake_parent", RAISE_MISSING_MODULE)
    (site / "crossrank_fake_parent" / "core.py").write_text("")
    assert installed("crossrank_fake_parent.core")
    with pytest.raises(BrokenDependencyError, match="fails to import"):
        require("crossrank_fake_parent.core", extra="llamaindex")


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit(3)"])
def test_interrupt_during_import_propagates_unchanged(site: Path, exc: str) -> None:
    make_package(site, "crossrank_fake_interrupt", f"raise {exc}\n")
    expected = KeyboardInterrupt if exc == "KeyboardInterrupt" else SystemExit
    with pytest.raises(expected) as info:
        require("crossrank_fake_interrupt", extra="x")
    assert type(info.value) is expected  # not wrapped in a DependencyError
    assert not isinstance(info.value, DependencyError)


# ------------------------------------------------------------------ the cohere backend


def run_python(code: str, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "shared")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_broken_cohere_sdk_is_a_broken_dependency_error(tmp_path: Path) -> None:
    """A ``cohere`` that fails to import (shadowed here by a broken package first on the
    path) makes ``Reranker("cohere", ...)`` say so, not "not installed"."""
    need("cohere")
    make_package(
        tmp_path,
        "cohere",
        "raise ModuleNotFoundError(\"No module named 'pydantic.v1.fake'\", "
        "name='pydantic.v1.fake')\n",
    )
    done = run_python(
        """
        from rerank_core import BrokenDependencyError, Reranker
        try:
            Reranker("cohere", base_url="http://127.0.0.1:9")
        except BrokenDependencyError as exc:
            print("BROKEN", exc.extra, exc)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("BROKEN cohere ")
    assert "is installed but fails to import" in out
    assert "pydantic.v1.fake" in out
    assert "not installed" not in out
    assert 'crossrank[cohere]"' in out


def test_absent_cohere_sdk_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    need("cohere")
    monkeypatch.setitem(sys.modules, "cohere", None)  # import cohere -> not found
    with pytest.raises(MissingDependencyError, match=r"not installed.*crossrank\[cohere\]") as info:
        Reranker("cohere", base_url="http://127.0.0.1:9")
    assert info.value.extra == "cohere"


def test_cohere_tokenizer_option_needs_only_the_cohere_extra(
    minilm_bi_encoder_path: Path, tmp_path: Path
) -> None:
    """``tokenizer=<name or path>`` loads the fast tokenizer with ``tokenizers`` (a
    dependency of the cohere SDK), so ``crossrank[cohere]`` is enough; transformers is
    never imported for it."""
    need("cohere")
    done = run_python(
        f"""
        import sys
        sys.modules["transformers"] = None  # as on an install with only crossrank[cohere]
        from rerank_core.backends.cohere import CohereBackend
        b = CohereBackend(base_url="http://127.0.0.1:9", tokenizer={str(minilm_bi_encoder_path)!r})
        print(b.tokenizer.pair_special_tokens, b.tokenizer.token_spans(["Scurvy, sailors"]))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "3"  # [CLS] q [SEP] d [SEP]
    # WordPiece pieces sc ##ur ##vy , sailors, as character offsets
    assert done.stdout.split(maxsplit=1)[1].strip() == "[[(0, 2), (2, 4), (4, 6), (6, 7), (8, 15)]]"


def test_cohere_tokenizer_without_a_fast_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    need("cohere")
    from rerank_core import ConfigError
    from rerank_core.backends.cohere import CohereBackend

    with pytest.raises(ConfigError, match=r"has no tokenizer\.json"):
        CohereBackend(base_url="http://127.0.0.1:9", tokenizer=str(tmp_path))


def test_cohere_tokenizer_missing_tokenizers_names_the_cohere_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    need("cohere")
    from rerank_core.backends.cohere import CohereBackend

    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(MissingDependencyError) as info:
        CohereBackend(base_url="http://127.0.0.1:9", tokenizer=str(tmp_path))
    assert info.value.extra == "cohere"
    assert "minilm" not in str(info.value)
