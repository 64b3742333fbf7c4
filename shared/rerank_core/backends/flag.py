"""BGE reranker backend (preset ``"bge"``): a loader and FlagReranker's pair encoding on the
local runtime layer (:mod:`rerank_core.backends.runtime`).

A BGE reranker is a transformers sequence-classification model with one logit, so the
model and tokenizer load with ``AutoModelForSequenceClassification`` / ``AutoTokenizer``
exactly as ``FlagEmbedding.FlagReranker`` loads them, without importing FlagEmbedding
(whose top-level import breaks under some transformers releases). Pairs are encoded as
``FlagReranker.compute_score`` encodes them (query cut to ``query_max_length`` tokens,
``only_second`` truncation at ``max_length``, the model's own special tokens), so scores
equal it; the tests compare against the real ``compute_score``. We do not call
``compute_score`` itself because it changes shared state on every call (``use_fp16`` is
switched off on CPU, ``model.half()`` and ``model.to(device)`` run each time), spends a
whole extra forward pass probing the batch size, sorts and batches on its own (the engine
already did) and starts a multiprocessing pool when it sees several GPUs. A ready
``FlagReranker`` may still be passed in: its model and tokenizer are used as they are.

On the CPU the default (``precision="auto"``) scores on ONNX Runtime in fp32 (same scores
as ``compute_score``, each pair its own sequence, no padding); ``precision="int8"``
quantizes it dynamically, as the MiniLM default does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Literal

from .. import deps
from .._validate import int_at_least
from ..errors import ConfigError, ModelLoadError
from .runtime import (
    Choice,
    Family,
    LoadedModel,
    LocalBackend,
    PairEncoding,
    SpeedPolicy,
    SpeedRequest,
    hf_forward,
    load_error,
    local_weights_dir,
    model_max_length,
    resolve_device,
    weights_digest,
)
from .runtime.untrained import (
    check_allow_untrained,
    head_digest,
    missing_head_weights,
    refuse_untrained,
)
from .trained_length import trained_max_length

__all__ = ["DEFAULT_MODEL", "FAMILY", "FlagRerankerBackend"]

DEFAULT_MODEL = "BAAI/bge-reranker-base"
_DEFAULT_MAX_LENGTH = 512  # FlagReranker's own default

logger = logging.getLogger("crossrank")

Precision = Literal["auto", "exact", "fp32", "fp16", "int8"]
Runtime = Literal["auto", "torch", "onnx"]

FAMILY = Family(
    name="flag",
    label="BGE reranker",
    extra="bge",
    # on the CPU: int8 where the fidelity guard finds the model ranks like fp32 with it,
    # else fp32 on ONNX Runtime when installed (same scores as compute_score), else torch;
    # fp16 (GPU) only on request
    policy=SpeedPolicy(
        precisions=("auto", "exact", "fp32", "fp16", "int8"),
        cpu_auto=(
            Choice("onnx", "int8", guarded=True),
            Choice("onnx", "fp32"),
            Choice("torch", "fp32"),
        ),
    ),
)


class FlagRerankerBackend(LocalBackend):
    """Scores pairs with a BGE reranker (any encoder-only ``FlagReranker`` model).

    ``model``: hub id (default ``BAAI/bge-reranker-base``), local directory, or a
    ready ``FlagEmbedding.FlagReranker`` (used as it is; its state is never changed).
    ``device``: ``"cpu"`` (default), ``"auto"`` (one GPU if present) or one torch
    device such as ``"cuda:0"``; never several devices, never a process pool.
    ``fp16``: half precision on a GPU (on CPU it is ignored with a warning, as
    FlagEmbedding itself does). ``max_length``: tokens per (query, text) pair,
    special tokens included (default: the length a local folder's
    ``crossrank_training.json`` records, else 512; capped by the model). ``revision``: a hub
    branch, tag or commit. ``cache_dir``: the Hugging Face download cache. Scores are raw
    logits; the engine's ``normalize="sigmoid"`` gives ``compute_score(..., normalize=True)``.

    Speed on the CPU: ``precision="auto"`` (default) runs an int8 variant on ONNX Runtime
    only where the fidelity guard finds it ranks like fp32 on a fixed probe (see
    ``describe()["fidelity"]``), else fp32 on ONNX Runtime when the ``fast`` extra is
    installed, else torch. ``"exact"``/``"fp32"``: fp32 (same scores as ``compute_score``,
    each pair its own sequence). ``"int8"``: ONNX Runtime with dynamically quantized linear
    layers, unchecked (faster; scores move). ``runtime``: ``"auto"``, ``"onnx"`` or
    ``"torch"``. ``num_threads``: threads for ONNX Runtime (default: the usable cores).
    ``onnx_cache_dir``: where exports are kept. A GPU always runs torch (``fp16=True`` or
    ``precision="fp16"`` for half precision). ``describe()`` tells the plan taken and why.

    A checkpoint without score-head weights (a base XLM-R or BERT, a bi-encoder) gets a new
    random head on every load: refused with :class:`~rerank_core.errors.UntrainedModelError`
    unless ``allow_untrained=True`` (plumbing tests only; a warning, ``untrained: True`` in
    ``describe()``, ONNX exports in a temporary directory removed on ``close()`` or at exit,
    never cached).
    """

    family = FAMILY

    def __init__(
        self,
        model: Any = None,
        *,
        device: str | None = None,
        fp16: bool = False,
        precision: Precision = "auto",
        runtime: Runtime = "auto",
        max_length: int | None = None,
        num_threads: int | None = None,
        onnx_cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        allow_untrained: bool = False,
    ) -> None:
        allow_untrained = check_allow_untrained(allow_untrained)
        if not isinstance(device, (str, type(None))):
            raise ConfigError(
                f"device must be one device name such as 'cpu' or 'cuda:0', got {device!r}; "
                "to use several GPUs, build one Reranker per GPU"
            )
        if not isinstance(fp16, bool):
            raise ConfigError(f"fp16 must be True or False, got {fp16!r}")
        request = SpeedRequest.checked(FAMILY.policy, precision, runtime, num_threads)
        if fp16 and precision not in ("auto", "fp16"):
            raise ConfigError(f"fp16=True contradicts precision={precision!r}")
        fp16 = fp16 or precision == "fp16"
        max_length = int_at_least("max_length", max_length, 8, allow_none=True)
        deps.require("torch", extra="bge", purpose="the bge backend")
        transformers = deps.require("transformers", extra="bge", purpose="the bge backend")

        if _is_flag_reranker(model):
            if device is not None or fp16 or revision is not None:
                raise ConfigError(
                    "device, fp16 and revision apply when the backend loads the model; "
                    "a ready FlagReranker is used on its own device and dtype, unchanged"
                )
            _refuse_instructions(model)
            hf_model, tokenizer = model.model, model.tokenizer
            model_id = str(
                getattr(hf_model.config, "_name_or_path", "") or model.model_name_or_path
            )
            first = next(hf_model.parameters())
            on_device = "cpu" if first.device.type == "cpu" else str(first.device)
            keep = _PRECISION_OF.get(str(first.dtype), "fp32")
            requested = max_length if max_length is not None else int(model.max_length)
            query_max = model.query_max_length
            owned = False
        else:
            model_id = str(model) if model is not None else DEFAULT_MODEL
            on_device = resolve_device(device, extra="bge")
            if fp16 and on_device == "cpu":
                logger.warning(
                    "fp16 needs a GPU; scoring %r in fp32 on CPU (FlagEmbedding does the same)",
                    model_id,
                )
                fp16 = False
            request = dataclasses.replace(
                request, precision="fp16" if fp16 else _not_fp16(request.precision)
            )
            kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
            if cache_dir is not None:
                kwargs["cache_dir"] = cache_dir
            if revision is not None:
                kwargs["revision"] = revision
            try:  # as FlagReranker loads it
                tokenizer = transformers.AutoTokenizer.from_pretrained(model_id, **kwargs)
                hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(
                    model_id, **kwargs
                )
                hf_model.to(on_device)
            except Exception as exc:
                raise load_error(model_id + (f"@{revision}" if revision else ""), exc) from exc
            keep = None
            trained = trained_max_length(model_id)  # the pair length it was trained on
            requested = max_length or trained or _DEFAULT_MAX_LENGTH
            query_max = None
            owned = True

        num_labels = int(getattr(hf_model.config, "num_labels", 1))
        if num_labels != 1:
            raise ModelLoadError(
                f"model {model_id!r} has {num_labels} output labels; a reranker has one score"
            )
        model_max = model_max_length(tokenizer, hf_model.config, default=_DEFAULT_MAX_LENGTH)
        if max_length is not None and requested > model_max:
            logger.warning(
                "max_length=%d is more than model %r takes; using %d",
                requested,
                model_id,
                model_max,
            )
        limit = min(requested, model_max)
        encoding = PairEncoding(
            max_length=limit,
            truncation="only_second",
            # FlagReranker cuts queries to 3/4 of max_length unless told otherwise
            query_max_tokens=int(query_max) if query_max else limit * 3 // 4,
        )
        loaded_from = getattr(hf_model, "name_or_path", None)
        weights_dir = local_weights_dir(model_id, revision, cache_dir, loaded_from, extra="bge")
        missing = missing_head_weights(hf_model, weights_dir)
        untrained = refuse_untrained(
            model_id, missing, allow_untrained=allow_untrained, checkpoint=weights_dir
        )
        self._start(
            LoadedModel(
                model_id=model_id,
                module=hf_model,
                hf_model=hf_model,
                hf_tokenizer=tokenizer,
                device=on_device,
                owned=owned,
                keep=keep,
                untrained=untrained,
            ),
            request,
            encoding,
            forward=lambda module: hf_forward(module, tokenizer, encoding, on_device),
            onnx_cache_dir=onnx_cache_dir,
            fingerprint={
                "model": model_id,
                "revision": revision,
                "weights": weights_digest(weights_dir),
                # a random head is new on every load: no two loads share cached scores
                **({"head": head_digest(hf_model, missing)} if untrained else {}),
            },
        )


_PRECISION_OF: dict[str, Literal["fp32", "bf16", "fp16"]] = {
    "torch.float16": "fp16",
    "torch.bfloat16": "bf16",
}


def _not_fp16(precision: str) -> str:
    """``precision="fp16"`` on the CPU, refused with a warning: what "auto" does."""
    return "auto" if precision == "fp16" else precision


def _is_flag_reranker(model: object) -> bool:
    """A ready ``FlagEmbedding`` reranker (checked without importing FlagEmbedding)."""
    return (
        type(model).__module__.split(".", 1)[0] == "FlagEmbedding"
        and hasattr(model, "model")
        and hasattr(model, "tokenizer")
    )


def _refuse_instructions(reranker: Any) -> None:
    if getattr(reranker, "query_instruction_for_rerank", None) or getattr(
        reranker, "passage_instruction_for_rerank", None
    ):
        raise ConfigError(
            "FlagReranker query/passage instructions are not supported: put the instruction "
            "in the query yourself so that windows are cut with it counted"
        )
