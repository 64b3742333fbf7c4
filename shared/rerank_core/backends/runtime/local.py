"""The base of every locally run Hugging Face model backend.

A backend family (``cross_encoder.py``, ``flag.py``, ...) loads its model and states its
pair encoding; :meth:`LocalBackend._start` does the rest, the same way for all: the speed
plan (once, from the device, the request, the family's :class:`SpeedPolicy` and the CPU),
the ONNX export and its cache, the fallback to torch when an export fails (unless ONNX
Runtime was asked for by name), freeing the torch weights the backend owns once ONNX
Runtime holds its own copy, the torch runner in the planned dtype (a caller's model is
copied before it is converted, never changed), the fingerprint, ``describe()`` and
``close()``.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ...errors import BackendError, BrokenDependencyError
from ...types import BackendInfo, Pair, ScoreScale
from .._base import BackendBase
from . import guard, onnx_export
from .cpu import cpu_flags_summary, cpu_info, default_threads
from .hf import HFTokenizer, SpanMemo, fingerprint_of, release_weights, weights_released
from .onnx_export import OnnxExportError, QuantVariant
from .overhead import pair_added_tokens
from .plan import Precision, SpeedPlan, SpeedPolicy, SpeedRequest, plan_speed
from .runners import OnnxRunner, PairEncoding, Runner, TorchRunner
from .untrained import ScratchDir

__all__ = ["Family", "LoadedModel", "LocalBackend"]

logger = logging.getLogger("crossrank")

Forward = Callable[[Sequence[Pair]], list[float]]


@dataclass(frozen=True, slots=True)
class Family:
    """What a backend family declares once: ``name`` (in fingerprints and ``describe()``),
    ``label`` (in error messages), ``extra`` (the crossrank extra that installs it) and
    its speed ``policy``."""

    name: str
    label: str
    extra: str
    policy: SpeedPolicy


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model as the family loaded it.

    ``module``: the torch module the torch runner runs (and whose weights are freed once
    ONNX Runtime holds its own copy, when ``owned``). ``hf_model``/``hf_tokenizer``: the
    transformers model and fast tokenizer (``hf_model=None``: it cannot be exported to
    ONNX, ``not_exportable`` says why). ``owned``: the backend loaded it itself (else it
    is the caller's: never converted or freed). ``keep``: the dtype of a caller's model
    that is used as it is. ``untrained``: its score head was initialised at random on
    load (allowed by the caller): its ONNX export goes to a scratch directory removed on
    ``close()``/exit, never to the export cache, and ``describe()`` says so.
    """

    model_id: str
    module: Any
    hf_model: Any
    hf_tokenizer: Any
    device: str
    owned: bool
    keep: Precision | None = None
    not_exportable: str = ""
    untrained: bool = False


class LocalBackend(BackendBase[SpanMemo]):
    """Scoring, ``info``, ``describe()`` and ``close()`` for a local model; a family
    subclass loads the model and calls :meth:`_start` once."""

    family: ClassVar[Family]
    score_scale: ScoreScale = "logit"

    _runner: Runner
    _plan: SpeedPlan
    _model_id: str
    _device: str
    _threads: int
    _encoding: PairEncoding
    _variant: str | None = None  # the int8 variant scored with (None: not int8)
    _verdict: guard.Verdict | None = None  # the fidelity guard's, when it decided

    def _start(
        self,
        loaded: LoadedModel,
        request: SpeedRequest,
        encoding: PairEncoding,
        *,
        forward: Callable[[Any], Forward],
        onnx_cache_dir: str | os.PathLike[str] | None,
        fingerprint: Mapping[str, Any],
    ) -> None:
        """Plan, start a runner (ONNX Runtime or torch) and set the backend's facts.

        ``forward(module)``: the family's torch forward on the (possibly converted)
        module. ``fingerprint``: the family's own parts (model, revision, weights, ...);
        max_length, runtime, precision, recipe and activation are added here.
        """
        fam = self.family
        plan = plan_speed(
            device=loaded.device,
            precision=request.precision,
            runtime=request.runtime,
            policy=fam.policy,
            keep=loaded.keep,
        )
        self._threads = request.num_threads or default_threads()
        runner: Runner | None = None
        self._untrained = loaded.untrained
        self._scratch = ScratchDir(self) if loaded.untrained else None
        if plan.runtime == "onnx":
            if self._scratch is not None:  # never cached: a random head is new on every load
                onnx_cache_dir = self._scratch.path
            runner, plan = self._start_onnx(loaded, plan, request, encoding, onnx_cache_dir)
        if runner is None:
            module = _in_dtype(loaded.module, plan.precision, owned=loaded.owned)
            module.eval()
            runner = TorchRunner(
                module,
                forward(module),
                precision=plan.precision,
                device=loaded.device,
                threads=request.num_threads,  # torch's global setting: only if given
                model_name=loaded.model_id,
            )
        self._runner, self._plan = runner, plan
        self._model_id, self._device = loaded.model_id, loaded.device
        self._encoding = encoding
        self._max_length = encoding.max_length
        self._info = BackendInfo(model_id=loaded.model_id, micro_batching=True)
        self._tokenizer = SpanMemo(
            HFTokenizer(
                loaded.hf_tokenizer,
                extra=fam.extra,
                pair_tokens=(
                    encoding.added_tokens
                    if encoding.added_tokens is not None
                    else pair_added_tokens(loaded.hf_tokenizer)
                ),
            )
        )
        self._lock = threading.Lock()
        self._fingerprint = fingerprint_of(
            backend=fam.name,
            **fingerprint,
            max_length=encoding.max_length,
            precision=plan.precision,
            runtime=plan.runtime,
            recipe=runner.recipe,
            variant=self._variant,
            activation="identity",
        )

    def _start_onnx(
        self,
        loaded: LoadedModel,
        plan: SpeedPlan,
        request: SpeedRequest,
        encoding: PairEncoding,
        cache_dir: str | os.PathLike[str] | None,
    ) -> tuple[Runner | None, SpeedPlan]:
        """Export (or reuse) the model and start ONNX Runtime on it. An export that fails
        (or a broken onnxruntime) falls back to torch, unless ONNX Runtime or int8 was
        asked for by name or the owned weights are already freed. An absent ``fast``
        extra here means ONNX Runtime was asked for: MissingDependencyError."""
        try:
            onnx_export.require_fast()
            if loaded.hf_model is None or not hasattr(loaded.hf_tokenizer, "backend_tokenizer"):
                raise OnnxExportError(
                    loaded.not_exportable
                    or "only a transformers model with a fast tokenizer can be exported to ONNX"
                )
            tokenizer_json = loaded.hf_tokenizer.backend_tokenizer.to_str()
            if plan.guarded and loaded.untrained:  # a random head: nothing to measure
                plan = SpeedPlan("onnx", "fp32", "untrained score head: fp32, no fidelity guard")
            if plan.guarded:
                path, plan = self._guarded(loaded, plan, encoding, tokenizer_json, cache_dir)
            else:
                path = onnx_export.ensure_onnx_model(
                    loaded.hf_model,
                    loaded.hf_tokenizer,
                    "int8" if plan.precision == "int8" else "fp32",
                    cache_dir=cache_dir,
                )
                self._variant = onnx_export.VARIANTS[0].name if plan.precision == "int8" else None
            if loaded.owned:  # ONNX Runtime keeps its own copy: never both in memory
                release_weights(loaded.module)
            return self._onnx_runner(path, tokenizer_json, plan, encoding), plan
        except (OnnxExportError, BrokenDependencyError) as exc:
            if request.insists_on_onnx or weights_released(loaded.module):
                raise
            return None, self._fallback(loaded, request, str(exc))

    def _guarded(
        self,
        loaded: LoadedModel,
        plan: SpeedPlan,
        encoding: PairEncoding,
        tokenizer_json: str,
        cache_dir: str | os.PathLike[str] | None,
    ) -> tuple[Path, SpeedPlan]:
        """The fidelity guard's choice for this model and CPU: an int8 variant's path and
        plan, or the fp32 export's (see :mod:`~rerank_core.backends.runtime.guard`)."""
        digest = onnx_export.model_digest(loaded.hf_model)

        def export(precision: onnx_export.OnnxPrecision, variant: QuantVariant | None) -> Path:
            return onnx_export.ensure_onnx_model(
                loaded.hf_model,
                loaded.hf_tokenizer,
                precision,
                cache_dir=cache_dir,
                digest=digest,
                variant=variant,
            )

        runners: list[OnnxRunner] = []  # one per model the probe scores, closed after

        def scorer_for(path: Path, precision: Precision) -> Forward:
            runner = self._onnx_runner(
                path, tokenizer_json, replace(plan, precision=precision), encoding
            )
            runners.append(runner)
            return lambda pairs: list(runner.score(pairs))

        fp32 = export("fp32", None)
        try:
            verdict = guard.choose_variant(
                fp32.parent,
                reference=lambda pairs: scorer_for(fp32, "fp32")(pairs),
                quantize=lambda v: export("int8", v),
                scorer_for=lambda p: scorer_for(p, "int8"),
            )
        finally:
            for r in runners:
                r.close()
        self._verdict = verdict
        self._variant = verdict.variant
        if verdict.variant is None:
            return fp32, SpeedPlan("onnx", "fp32", verdict.reason)
        path = export("int8", onnx_export.variant_named(verdict.variant))
        return path, SpeedPlan("onnx", "int8", verdict.reason)

    def _onnx_runner(
        self, path: Path, tokenizer_json: str, plan: SpeedPlan, encoding: PairEncoding
    ) -> OnnxRunner:
        """ONNX Runtime on ``path``; a file it cannot load is removed from the cache (the
        next load exports it again) and named in the error."""
        try:
            return OnnxRunner(
                path,
                tokenizer_json,
                precision=plan.precision,
                encoding=encoding,
                threads=self._threads,
                extra=self.family.extra,
            )
        except OnnxExportError:
            raise
        except Exception as exc:
            onnx_export.remove_export(path)
            raise OnnxExportError(
                f"could not load the exported model {path}: {type(exc).__name__}: {exc}"
            ) from exc

    def _fallback(self, loaded: LoadedModel, request: SpeedRequest, why: str) -> SpeedPlan:
        plan = plan_speed(
            device=loaded.device,
            precision=request.precision,
            runtime="torch",
            policy=self.family.policy,
            keep=loaded.keep,
            have_onnx=False,
        )
        logger.warning(
            "ONNX Runtime path unavailable (%s); scoring with torch %s", why, plan.precision
        )
        return SpeedPlan("torch", plan.precision, f"fallback: {why}")

    # ------------------------------------------------------------------ Backend protocol

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        if not pairs:
            return []
        try:
            if self._encoding.query_max_tokens is not None:
                pairs = self._cut_queries(pairs, self._encoding.query_max_tokens)
            with self._lock:
                return list(self._runner.score(pairs))
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"{self.family.label} {self._model_id!r} failed: {exc}") from exc

    def _cut_queries(self, pairs: Sequence[Pair], limit: int) -> list[Pair]:
        """Queries cut to ``limit`` tokens (as FlagReranker cuts them)."""
        unique = list(dict.fromkeys(q for q, _ in pairs))
        cut: dict[str, str] = {}
        for q, spans in zip(unique, self._tokenizer.token_spans(unique), strict=True):
            cut[q] = q if len(spans) <= limit else q[: spans[limit - 1][1]]
        return [(cut[q], t) for q, t in pairs]

    def describe(self) -> dict[str, Any]:
        """Where and how this backend scores (plain values, JSON-able): ``backend``,
        ``model_id``, ``device``, ``runtime``, ``precision``, ``reason`` (why that plan),
        ``num_threads``, ``onnx_model_path`` (``None`` on torch), ``score_scale``,
        ``max_length``, ``pair_tokens`` (what the backend adds around each pair), ``cpu``
        and ``cpu_flags`` (the speed-relevant CPU features; ``None`` off the CPU),
        ``int8_variant`` (the int8 variant scored with, else ``None``), ``fidelity`` (the
        fidelity guard's verdict with each variant's probe figures, when the guard chose the
        precision; else ``None``), ``fingerprint`` and ``untrained`` (a random score head,
        allowed by ``allow_untrained=True``)."""
        path = self._runner.onnx_path
        info, on_cpu = cpu_info(), self._device == "cpu"
        return {
            "backend": self.family.name,
            "model_id": self._model_id,
            "device": self._device,
            "runtime": self._plan.runtime,
            "precision": self._plan.precision,
            "reason": self._plan.reason,
            "num_threads": self._threads,
            "onnx_model_path": str(path) if path is not None else None,
            "score_scale": self.score_scale,
            "max_length": self._max_length,
            "pair_tokens": self._tokenizer.pair_special_tokens,
            "cpu": info.model if on_cpu else None,
            "cpu_flags": cpu_flags_summary(info.flags) if on_cpu else None,
            "int8_variant": self._variant,
            "fidelity": self._verdict.as_dict() if self._verdict is not None else None,
            "fingerprint": self._fingerprint,
            "untrained": self._untrained,
        }

    def close(self) -> None:
        """Stop the ONNX worker threads (they also stop with the process); the backend
        still scores afterwards (the threads start again when needed). An untrained model's
        scratch export directory is removed."""
        self._runner.close()
        if self._scratch is not None:
            self._scratch.remove()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self._model_id!r}, device={self._device!r}, "
            f"runtime={self._plan.runtime!r}, precision={self._plan.precision!r}, "
            f"{self._repr_variant()}max_length={self._max_length})"
        )

    def _repr_variant(self) -> str:
        if self._verdict is not None:
            return f"variant={self._variant!r} (fidelity guard), "
        return f"variant={self._variant!r}, " if self._variant else ""


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _in_dtype(module: Any, precision: Precision, *, owned: bool) -> Any:
    """``module`` in ``precision``: converted in place when the backend owns it, else a
    converted copy (the caller's model is never changed)."""
    torch = sys.modules["torch"]
    dtype = getattr(torch, _DTYPES[precision])
    if next(module.parameters()).dtype == dtype:
        return module
    if not owned:
        module = copy.deepcopy(module)
    return module.to(dtype)
