"""sentence-transformers ``CrossEncoder`` backend (preset ``"minilm"``), with fast CPU paths."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import BackendError, ConfigError
from ..types import Pair, ScoreScale
from ._base import BackendBase
from ._cpu import (
    SpeedPlan,
    check_speed_options,
    cpu_info,
    default_threads,
    onnxruntime_available,
    plan_speed,
)
from ._hf import (
    HFTokenizer,
    fingerprint_of,
    load_error,
    missing,
    release_weights,
    resolve_device,
    torch_threads,
    weights_digest,
    weights_released,
)

__all__ = ["DEFAULT_MODEL", "CrossEncoderBackend"]

logger = logging.getLogger("crossrank")

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"

Precision = Literal["auto", "exact", "fp32", "bf16", "fp16", "int8"]
Runtime = Literal["auto", "torch", "onnx"]
_PRECISIONS = ("auto", "exact", "fp32", "bf16", "fp16", "int8")


class CrossEncoderBackend(BackendBase["_SpanMemo"]):
    """Scores pairs with a sentence-transformers ``CrossEncoder``.

    ``model``: hub id or local directory, or a ready ``CrossEncoder`` instance (never
    modified: conversions work on a copy). ``device``: ``"cpu"`` (default), ``"auto"``
    (one GPU if present) or a torch device string. ``max_length``: cap on tokens per
    pair (default: the model's).

    Speed (see the README's speed section):

    * ``precision="auto"`` (default): on a CPU with int8 dot products (VNNI, AMX, Arm
      dotprod) the model is exported to ONNX and quantized to int8 with ONNX Runtime;
      else bf16 where the CPU has bf16 instructions; else fp32. On CUDA fp16.
    * ``precision="exact"`` (or ``"fp32"``): fp32 scores equal to
      ``CrossEncoder.predict`` (ONNX Runtime when installed, else torch).
    * ``"int8"``, ``"bf16"``, ``"fp16"``: asked for explicitly.
    * ``runtime``: ``"auto"`` (default), ``"onnx"`` or ``"torch"``.
    * ``num_threads``: CPU threads for scoring (default: the cores this process may
      use). ONNX Runtime uses its own threads; torch's global setting is changed
      only while this backend scores, and only if ``num_threads`` is given.
    * ``onnx_cache_dir``: where exports are kept (default ``$CROSSRANK_CACHE_DIR`` or
      ``~/.cache/crossrank``), keyed by a digest of the weights.

    On the CPU each pair of a reduced-precision run is its own sequence, so a score
    never depends on the other pairs of its batch. The fingerprint names the runtime
    and precision: caches of different modes never mix. Scores are raw logits (the
    model's activation is not applied); the engine's ``normalize="sigmoid"`` maps
    them to 0–1.
    """

    score_scale: ScoreScale = "logit"

    def __init__(
        self,
        model: Any = None,
        *,
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Runtime = "auto",
        max_length: int | None = None,
        num_threads: int | None = None,
        onnx_cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
    ) -> None:
        try:
            import torch
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise missing("sentence-transformers", "minilm", exc) from exc
        check_speed_options(precision, runtime, num_threads, _PRECISIONS)
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise ConfigError(f"max_length must be an int >= 8, got {max_length!r}")
        self._torch = torch
        owned = not isinstance(model, CrossEncoder)
        if isinstance(model, CrossEncoder):
            ce = model
            model_id = str(getattr(ce.config, "_name_or_path", "") or type(ce).__name__)
        else:
            model_id = str(model) if model is not None else DEFAULT_MODEL
            kwargs: dict[str, Any] = {
                "device": resolve_device(device),
                "trust_remote_code": trust_remote_code,
            }
            if revision is not None:
                kwargs["revision"] = revision
            if local_files_only is not None:
                kwargs["local_files_only"] = local_files_only
            try:
                ce = CrossEncoder(model_id, **kwargs)
            except Exception as exc:
                raise load_error(model_id, exc) from exc
        model_device = str(ce.device)
        on_device = "cpu" if model_device.startswith("cpu") else model_device
        try:
            plan = plan_speed(device=on_device, precision=precision, runtime=runtime)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.model_id = model_id
        model_max = int(ce.max_seq_length or 512)
        self._max_length = min(max_length, model_max) if max_length else model_max
        if max_length and self._max_length != model_max:
            if not owned:
                ce = copy.deepcopy(ce)
                owned = True
            ce.max_seq_length = self._max_length
        self._threads = num_threads or default_threads()
        self._torch_num_threads = num_threads  # torch's global setting: only if given
        self._onnx: Any = None
        head = _head_digest(ce)  # before the ONNX path may free the weights
        if plan.runtime == "onnx":
            plan = self._start_onnx(ce, plan, precision, runtime, onnx_cache_dir, owned)
        if plan.runtime == "torch" and plan.precision != "fp32":
            if not owned:
                ce = copy.deepcopy(ce)
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[plan.precision]
            ce = ce.to(dtype)
        ce.eval()
        self.model = ce
        self.plan = plan
        self.runtime = plan.runtime
        self.precision = plan.precision
        self._per_pair = on_device == "cpu" and plan.precision != "fp32"
        self._tokenizer = _SpanMemo(HFTokenizer(ce.tokenizer))
        self._identity = torch.nn.Identity()
        self._lock = threading.Lock()
        local_dir = getattr(ce.config, "_name_or_path", None)
        self._fingerprint = fingerprint_of(
            backend="cross-encoder",
            model=model_id,
            revision=revision,
            weights=weights_digest(local_dir),
            head=head,
            max_length=self._max_length,
            precision=plan.precision,
            runtime=plan.runtime,
            recipe=getattr(self._onnx, "recipe", None),
            activation="identity",
            num_labels=int(ce.num_labels),
        )

    # ------------------------------------------------------------------ set-up

    def _start_onnx(
        self,
        ce: Any,
        plan: SpeedPlan,
        precision: str,
        runtime: str,
        cache_dir: str | os.PathLike[str] | None,
        owned: bool,
    ) -> SpeedPlan:
        """Export (or reuse) the ONNX model. If that fails, fall back to torch, unless ONNX
        Runtime or int8 was asked for by name. The torch weights of a model this backend
        loaded itself are freed before ONNX Runtime loads its copy."""
        from .onnx_runtime import OnnxExportError, start_scorer

        insist = runtime == "onnx" or precision == "int8"
        if not onnxruntime_available():
            if insist:
                raise missing("onnxruntime", "fast", ImportError("no module named 'onnxruntime'"))
            return self._fallback(plan, "onnxruntime is not installed")
        try:
            if len(ce) != 1:
                raise OnnxExportError(
                    "only a CrossEncoder made of one transformers model can be exported"
                )
            self._onnx = start_scorer(
                ce.model,
                ce.tokenizer,
                "int8" if plan.precision == "int8" else "fp32",
                max_length=self._max_length,
                threads=self._threads,
                cache_dir=cache_dir,
                before_session=(lambda: release_weights(ce)) if owned else None,
            )
        except OnnxExportError as exc:
            if insist or weights_released(ce):
                raise
            return self._fallback(plan, str(exc))
        return plan

    def _fallback(self, plan: SpeedPlan, why: str) -> SpeedPlan:
        prec: Literal["fp32", "bf16"] = "fp32"
        if plan.precision != "fp32" and cpu_info().bf16:
            prec = "bf16"
        logger.warning("ONNX Runtime path unavailable (%s); scoring with torch %s", why, prec)
        return SpeedPlan("torch", prec, f"fallback: {why}")

    # ------------------------------------------------------------------ Backend protocol

    @property
    def num_threads(self) -> int:
        return self._threads

    @property
    def onnx_model_path(self) -> Path | None:
        """The ONNX file this backend scores with (``None`` on the torch runtime)."""
        return self._onnx.path if self._onnx is not None else None

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        if not pairs:
            return []
        try:
            with self._lock:
                if self._onnx is not None:
                    return list(self._onnx.score(pairs))
                threads = torch_threads(self._torch, self._torch_num_threads)
                with threads, self._torch.inference_mode():
                    if self._per_pair:
                        return [self._predict([p])[0] for p in pairs]
                    return self._predict(pairs)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cross-encoder {self.model_id!r} failed: {exc}") from exc

    def _predict(self, pairs: Sequence[Pair]) -> list[float]:
        scores = self.model.predict(
            [list(p) for p in pairs],
            batch_size=len(pairs),
            show_progress_bar=False,
            activation_fn=self._identity,
            convert_to_numpy=True,
        )
        flat = scores.reshape(len(pairs), -1)[:, -1] if scores.ndim > 1 else scores
        return [float(s) for s in flat]

    def close(self) -> None:
        """Stop the ONNX worker threads (they also stop with the process)."""
        if self._onnx is not None:
            self._onnx.close()

    def __repr__(self) -> str:
        return (
            f"CrossEncoderBackend(model={self.model_id!r}, runtime={self.runtime!r}, "
            f"precision={self.precision!r})"
        )


class _SpanMemo:
    """The model's token spans, remembered for recently seen texts.

    Windowing tokenizes every text on every call, even when all its scores are
    cached; a warm call then costs mostly tokenization. Spans of up to
    ``max_tokens`` tokens (about 64 bytes each) are kept, least recently used first out.
    """

    def __init__(self, inner: HFTokenizer, max_tokens: int = 262_144) -> None:
        self._inner = inner
        self._max_tokens = max_tokens
        self._held = 0
        self._memo: OrderedDict[str, list[tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def pair_special_tokens(self) -> int:
        return self._inner.pair_special_tokens

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        out: list[list[tuple[int, int]] | None] = [None] * len(texts)
        todo: list[int] = []
        with self._lock:
            memo = self._memo
            for i, t in enumerate(texts):
                got = memo.get(t)
                if got is None:
                    todo.append(i)
                else:
                    memo.move_to_end(t)
                    out[i] = got
        if todo:
            fresh = self._inner.token_spans([texts[i] for i in todo])
            with self._lock:
                for i, spans in zip(todo, fresh, strict=True):
                    out[i] = spans
                    if len(spans) <= self._max_tokens // 8 and texts[i] not in self._memo:
                        self._memo[texts[i]] = spans
                        self._held += len(spans) + 1
                while self._held > self._max_tokens and self._memo:
                    _, old = self._memo.popitem(last=False)
                    self._held -= len(old) + 1
        return [x if x is not None else [] for x in out]


def _head_digest(ce: Any) -> str:
    """Digest of the score head's weights as loaded.

    A checkpoint without a trained head (e.g. a bi-encoder loaded as a cross-encoder) gets
    a fresh random head on every load; the file digest alone would let two such loads share
    cache entries although they score differently.
    """
    h = hashlib.sha256()
    for name, param in list(ce.named_parameters())[-2:]:
        h.update(name.encode())
        h.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
