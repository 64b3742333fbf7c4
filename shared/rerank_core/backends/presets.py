"""Named presets: a well-known reranker by a short name, mapped to the backend that runs it
and its default model id.

``Reranker("tinybert")`` is ``Reranker("minilm", model="cross-encoder/ms-marco-TinyBERT-L-2-v2")``;
a ``model=`` given by the caller wins (same architecture family, other weights). Every
option of the preset's backend applies. Presets are registered in
:data:`rerank_core.backends.BACKENDS` beside the backends themselves, so a preset name is
accepted wherever a backend name is (``Reranker``, ``load_backend``, the adapters,
``crossrank rerank --backend``). This module is plain data: importing it loads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS", "Preset", "preset_model", "with_preset_model"]

_CROSS_ENCODER = "rerank_core.backends.cross_encoder:CrossEncoderBackend"
_FLAG = "rerank_core.backends.flag:FlagRerankerBackend"


@dataclass(frozen=True, slots=True)
class Preset:
    """``name``: what callers pass as the backend. ``backend``: the registered backend that
    runs it (``"minilm"`` or ``"bge"``), ``target`` its ``"module:Class"``. ``model``: the
    default model id. ``architecture``: the transformers architecture of that model.
    ``head``: its score head as published (``"1 logit"``, ``"1 logit, sigmoid"``, ...)."""

    name: str
    backend: str
    target: str
    model: str
    architecture: str
    head: str
    max_length: int


def _ce(name: str, model: str, architecture: str, head: str, max_length: int = 512) -> Preset:
    return Preset(name, "minilm", _CROSS_ENCODER, model, architecture, head, max_length)


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            _ce("tinybert", "cross-encoder/ms-marco-TinyBERT-L-2-v2", "BERT", "1 logit"),
            _ce("minilm-l12", "cross-encoder/ms-marco-MiniLM-L-12-v2", "BERT", "1 logit"),
            _ce("electra", "cross-encoder/ms-marco-electra-base", "ELECTRA", "1 logit"),
            _ce(
                "distilroberta",
                "cross-encoder/qnli-distilroberta-base",
                "RoBERTa",
                "1 logit, sigmoid (config: sbert_ce_default_activation_function)",
            ),
            Preset(
                "bge-v2-m3",
                "bge",
                _FLAG,
                "BAAI/bge-reranker-v2-m3",
                "XLM-RoBERTa",
                "1 logit",
                512,  # FlagReranker's default max_length (the model takes up to 8,192)
            ),
        )
    }
)


def preset_model(name: str) -> str | None:
    """The default model id of preset ``name`` (``None`` when ``name`` is not a preset)."""
    preset = PRESETS.get(name)
    return preset.model if preset is not None else None


def with_preset_model(name: str, target: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (copied, never changed) with the preset's default ``model`` when the
    caller gave none, if ``name`` is a preset still registered to its own ``target``
    (a name re-registered with :func:`~rerank_core.backends.register_backend` is no longer
    the preset)."""
    out = dict(options)
    preset = PRESETS.get(name)
    if preset is not None and preset.target == target and out.get("model") is None:
        out["model"] = preset.model
    return out
