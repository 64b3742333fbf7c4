"""Import hygiene and the public surface."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import rerank_core

HEAVY = (
    "torch",
    "transformers",
    "FlagEmbedding",
    "cohere",
    "llama_index",
    "langchain_core",
    "langchain",
    "sentence_transformers",
    "redis",
    "onnxruntime",
)


def test_import_rerank_core_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, json, rerank_core; "
        "from rerank_core import Reranker, WindowConfig, MemoryCache, SQLiteCache; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_surface_is_pinned() -> None:
    assert sorted(rerank_core.__all__) == sorted(
        [
            "BACKENDS",
            "APIError",
            "APITimeoutError",
            "AsyncBackend",
            "AuthenticationError",
            "Backend",
            "BackendError",
            "BatcherStats",
            "CacheError",
            "CacheStats",
            "CacheWarning",
            "Cascade",
            "CascadeRanking",
            "CascadeStats",
            "Stage",
            "StageStats",
            "ConfigError",
            "CrossrankError",
            "EmptyQueryError",
            "FirstStageScoreError",
            "Fusion",
            "InputError",
            "InvalidTextError",
            "MemoryCache",
            "MissingDependencyError",
            "BrokenDependencyError",
            "DependencyError",
            "ModelLoadError",
            "RankedText",
            "RateLimitError",
            "RedisCache",
            "Reranker",
            "SQLiteCache",
            "ScoreCache",
            "TieredCache",
            "Tokenizer",
            "UntrainedModelError",
            "WindowConfig",
            "__version__",
            "load_backend",
            "register_backend",
            "BackendInfo",
            "EngineConfig",
            "SupportsClose",
            "SupportsDescribe",
            "SupportsInfo",
        ]
    )
    for name in rerank_core.__all__:
        assert getattr(rerank_core, name) is not None


def test_missing_dependency_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['sentence_transformers'] = None\n"
        "from rerank_core import Reranker, MissingDependencyError\n"
        "try:\n    Reranker('minilm')\nexcept MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError); print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "crossrank[minilm]"' in out.stdout


def test_unknown_backend_is_config_error() -> None:
    import pytest

    with pytest.raises(rerank_core.ConfigError, match="known backends"):
        rerank_core.Reranker("nope")


def test_an_option_a_backend_does_not_take_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(rerank_core.BACKENDS, "kw-test", "helpers:KeywordBackend")
    with pytest.raises(rerank_core.ConfigError, match=r"'kw-test' takes no option 'precison'"):
        rerank_core.load_backend("kw-test", precison="int8")  # a typo, caught by name
    assert rerank_core.load_backend("kw-test") is not None
    # the Cohere backend (SDK installed in dev) is checked before anything is built
    with pytest.raises(rerank_core.ConfigError, match="takes no option 'precision'"):
        rerank_core.Reranker("cohere", precision="int8")
