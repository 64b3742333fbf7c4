"""Backend registry: a preset name maps to ``"module:Class"``, imported only when named."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import ConfigError
from ..types import Backend
from .presets import PRESETS, with_preset_model

__all__ = ["BACKENDS", "backend_class", "load_backend", "register_backend"]

BACKENDS: dict[str, str] = {
    "minilm": "rerank_core.backends.cross_encoder:CrossEncoderBackend",
    "cross-encoder": "rerank_core.backends.cross_encoder:CrossEncoderBackend",
    "bge": "rerank_core.backends.flag:FlagRerankerBackend",
    "cohere": "rerank_core.backends.cohere:CohereBackend",
    "tei": "rerank_core.backends.tei:TEIBackend",
    "qwen3": "rerank_core.backends.llm:Qwen3RerankerBackend",
    "bge-gemma": "rerank_core.backends.llm:GemmaRerankerBackend",
    "monot5": "rerank_core.backends.t5:MonoT5Backend",
    "rankt5": "rerank_core.backends.t5:RankT5Backend",
}

# presets (backends/presets.py): a backend with a default model
BACKENDS.update({name: preset.target for name, preset in PRESETS.items()})


def register_backend(name: str, target: str) -> None:
    """Make ``Reranker(name)`` build ``target`` (``"package.module:Class"``)."""
    if ":" not in target:
        raise ConfigError(f"backend target must look like 'module:Class', got {target!r}")
    BACKENDS[name] = target


def backend_class(name: str) -> Any:
    """The class registered under ``name`` (its module is imported; no model is loaded).
    An unknown name is a ConfigError listing the known ones."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown backend {name!r}; known backends: {known}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load_backend(name: str, **options: Any) -> Backend:
    """Build the backend registered under ``name`` with ``options``."""
    cls = backend_class(name)
    options = with_preset_model(name, BACKENDS[name], options)
    _check_options(name, cls, options)
    backend: Backend = cls(**options)
    return backend


def _check_options(name: str, cls: Any, options: dict[str, Any]) -> None:
    """A ConfigError naming an option the backend does not take (not a TypeError from
    deep inside its constructor)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the constructor judge
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    takes = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ConfigError(
            f"backend {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(takes)}"
        )
