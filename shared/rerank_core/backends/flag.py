"""FlagEmbedding ``FlagReranker`` backend (preset ``"bge"``).

FlagEmbedding loads the model and tokenizer; scoring is done here, on the same model
and tokenizer, with the same pair encoding as ``FlagReranker.compute_score``
(query cut to ``query_max_length`` tokens, ``only_second`` truncation at
``max_length``, the model's own special tokens), so scores match it. We do not call
``compute_score`` itself because it changes shared state on every call
(``use_fp16`` is switched off on CPU, ``model.half()`` and ``model.to(device)`` run
each time), spends a whole extra forward pass probing the batch size, sorts and
batches on its own (the engine already did) and starts a multiprocessing pool when
it sees several GPUs.

On the CPU the default (``precision="auto"``) scores on ONNX Runtime in fp32: the model
is exported once (cached on disk like the MiniLM backend's exports) and each pair runs
as its own sequence, with the same scores as ``compute_score`` and no padding.
``precision="int8"`` quantizes it dynamically, as the MiniLM default does.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import BackendError, ConfigError, ModelLoadError
from ..types import Pair, ScoreScale
from ._base import BackendBase
from ._cpu import SpeedPlan, check_speed_options, default_threads, onnxruntime_available
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

__all__ = ["DEFAULT_MODEL", "FlagRerankerBackend"]

DEFAULT_MODEL = "BAAI/bge-reranker-base"
_DEFAULT_MAX_LENGTH = 512  # FlagReranker's own default
_CONFIG_FILES = ["*.json", "*.txt", "*.model"]  # configs, vocabularies, sentencepiece models
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl")

logger = logging.getLogger("crossrank")

Precision = Literal["auto", "exact", "fp32", "fp16", "int8"]
Runtime = Literal["auto", "torch", "onnx"]
_PRECISIONS = ("auto", "exact", "fp32", "fp16", "int8")


class FlagRerankerBackend(BackendBase[HFTokenizer]):
    """Scores pairs with a BGE reranker (any encoder-only ``FlagReranker`` model).

    ``model``: hub id (default ``BAAI/bge-reranker-base``), local directory, or a
    ready ``FlagEmbedding.FlagReranker`` (used as it is; its state is never changed).
    ``device``: ``"cpu"`` (default), ``"auto"`` (one GPU if present) or one torch
    device such as ``"cuda:0"``; never several devices, never a process pool.
    ``fp16``: half precision on a GPU (on CPU it is ignored with a warning, as
    FlagEmbedding itself does). ``max_length``: tokens per (query, text) pair,
    special tokens included (default 512, capped by the model). ``revision``: a hub
    branch, tag or commit. Scores are raw logits; the engine's ``normalize="sigmoid"``
    gives ``compute_score(..., normalize=True)``.

    Speed on the CPU: ``precision="auto"`` (default) and ``"exact"``/``"fp32"`` score
    with ONNX Runtime in fp32 when the ``fast`` extra is installed (same scores as
    ``compute_score``, each pair its own sequence), else with torch. ``"int8"``: ONNX
    Runtime with dynamically quantized linear layers (faster; scores move, see the
    README). ``runtime``: ``"auto"``, ``"onnx"`` or ``"torch"``. ``num_threads``:
    threads for ONNX Runtime (default: the usable cores). ``onnx_cache_dir``: where
    exports are kept. A GPU always runs torch (``fp16=True`` or ``precision="fp16"``
    for half precision).
    """

    score_scale: ScoreScale = "logit"

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
    ) -> None:
        try:
            import torch
            from FlagEmbedding import FlagReranker
        except ImportError as exc:
            raise missing("FlagEmbedding", "bge", exc) from exc
        if not isinstance(device, (str, type(None))):
            raise ConfigError(
                f"device must be one device name such as 'cpu' or 'cuda:0', got {device!r}; "
                "to use several GPUs, build one Reranker per GPU"
            )
        if not isinstance(fp16, bool):
            raise ConfigError(f"fp16 must be True or False, got {fp16!r}")
        check_speed_options(precision, runtime, num_threads, _PRECISIONS)
        if fp16 and precision not in ("auto", "fp16"):
            raise ConfigError(f"fp16=True contradicts precision={precision!r}")
        fp16 = fp16 or precision == "fp16"
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8
        ):
            raise ConfigError(f"max_length must be an int >= 8, got {max_length!r}")
        self._torch = torch

        if isinstance(model, FlagReranker):
            if device is not None or fp16 or revision is not None:
                raise ConfigError(
                    "device, fp16 and revision apply when the backend loads the model; "
                    "a ready FlagReranker is used on its own device and dtype, unchanged"
                )
            reranker = model
            hf_model = reranker.model
            model_id = str(
                getattr(hf_model.config, "_name_or_path", "") or reranker.model_name_or_path
            )
            first = next(hf_model.parameters())
            self.device = str(first.device)
            dtype = first.dtype
            flag_max = int(reranker.max_length)
            requested = max_length if max_length is not None else flag_max
            query_max = reranker.query_max_length
            self._owns_model = False
        else:
            model_id = str(model) if model is not None else DEFAULT_MODEL
            self.device = resolve_device(device)
            path = _resolve_revision(model_id, revision, cache_dir)
            try:
                reranker = FlagReranker(
                    path,
                    use_fp16=False,  # set below, once, on our terms
                    devices=[self.device],  # one device: never a process pool
                    normalize=False,
                    trust_remote_code=trust_remote_code,
                    cache_dir=cache_dir,
                    max_length=max_length or _DEFAULT_MAX_LENGTH,
                )
            except Exception as exc:
                raise load_error(model_id, exc) from exc
            hf_model = reranker.model
            if fp16 and self.device == "cpu":
                logger.warning(
                    "fp16 needs a GPU; scoring %r in fp32 on CPU (FlagEmbedding does the same)",
                    model_id,
                )
                fp16 = False
            try:
                hf_model.to(self.device)
                if fp16:
                    hf_model.half()
            except Exception as exc:
                raise load_error(model_id, exc) from exc
            # Keep FlagReranker's own view consistent with the model as we set it up, so that
            # calling its compute_score does not convert the model again.
            reranker.use_fp16 = fp16
            dtype = next(hf_model.parameters()).dtype
            requested = max_length if max_length is not None else _DEFAULT_MAX_LENGTH
            query_max = None
            self._owns_model = True

        if getattr(reranker, "query_instruction_for_rerank", None) or getattr(
            reranker, "passage_instruction_for_rerank", None
        ):
            raise ConfigError(
                "FlagReranker query/passage instructions are not supported: put the instruction "
                "in the query yourself so that windows are cut with it counted"
            )
        num_labels = int(getattr(hf_model.config, "num_labels", 1))
        if num_labels != 1:
            raise ModelLoadError(
                f"model {model_id!r} has {num_labels} output labels; a reranker has one score"
            )
        hf_model.eval()
        self.reranker = reranker
        self.model = hf_model
        self.model_id = model_id
        self._dtype = dtype
        self.precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")

        model_max = _model_max_length(reranker.tokenizer, hf_model.config)
        if max_length is not None and requested > model_max:
            logger.warning(
                "max_length=%d is more than model %r takes; using %d",
                requested,
                model_id,
                model_max,
            )
        self._max_length = min(requested, model_max)
        if self._owns_model:
            reranker.max_length = self._max_length  # its compute_score then encodes as we do
        # FlagReranker cuts queries to 3/4 of max_length unless told otherwise.
        self._query_max = int(query_max) if query_max else self._max_length * 3 // 4
        self._tokenizer = HFTokenizer(reranker.tokenizer)
        # A private copy for encoding pairs: the caller's FlagReranker may be used elsewhere,
        # and a fast tokenizer whose truncation settings change mid-call fails ("Already borrowed").
        self._encoder = copy.deepcopy(reranker.tokenizer)
        self._lock = threading.Lock()
        self._threads = num_threads or default_threads()
        self._torch_num_threads = num_threads  # torch's global setting: only if given
        self._onnx: Any = None
        self.plan = self._plan_speed(precision, runtime, onnx_cache_dir)
        self.runtime = self.plan.runtime
        self.precision = self.plan.precision
        self._fingerprint = fingerprint_of(
            backend="flag",
            model=model_id,
            revision=revision,
            weights=weights_digest(
                _local_dir(model_id, cache_dir, getattr(hf_model, "name_or_path", None))
            ),
            max_length=self._max_length,
            precision=self.precision,
            runtime=self.runtime,
            recipe=getattr(self._onnx, "recipe", None),
            activation="identity",
        )

    def _plan_speed(
        self, precision: str, runtime: str, cache_dir: str | os.PathLike[str] | None
    ) -> SpeedPlan:
        """Torch on a GPU; on the CPU ONNX Runtime (fp32, or int8 when asked for) when
        the ``fast`` extra is there and the model exports, else torch fp32."""
        here = cast(Literal["fp32", "bf16", "fp16"], self.precision)
        if self.device != "cpu":
            if runtime == "onnx" or precision == "int8":
                raise ConfigError(
                    f"runtime='onnx' and precision='int8' run on the CPU only, not on "
                    f"{self.device!r}"
                )
            return SpeedPlan("torch", here, f"{self.device}: torch {here}")
        insist = runtime == "onnx" or precision == "int8"
        if runtime == "torch":
            if precision == "int8":
                raise ConfigError(
                    "precision='int8' runs on ONNX Runtime; use runtime='onnx' or 'auto'"
                )
            return SpeedPlan("torch", here, "runtime='torch' asked for")
        if here != "fp32" and not insist:  # a ready model in another dtype: used as it is
            return SpeedPlan("torch", here, f"the model is {here}")
        want: Literal["fp32", "int8"] = "int8" if precision == "int8" else "fp32"
        if not onnxruntime_available():
            if insist:
                raise missing("onnxruntime", "fast", ImportError("no module named 'onnxruntime'"))
            return SpeedPlan("torch", "fp32", "onnxruntime is not installed: torch fp32")
        from .onnx_runtime import OnnxExportError, start_scorer

        try:
            self._onnx = start_scorer(
                self.model,
                self.reranker.tokenizer,
                want,
                max_length=self._max_length,
                threads=self._threads,
                cache_dir=cache_dir,
                truncation="only_second",
                # ONNX Runtime keeps its own copy: free the weights we loaded ourselves
                before_session=(lambda: release_weights(self.model)) if self._owns_model else None,
            )
        except OnnxExportError as exc:
            if insist or weights_released(self.model):
                raise
            logger.warning("ONNX Runtime path unavailable (%s); scoring with torch fp32", exc)
            return SpeedPlan("torch", "fp32", f"fallback: {exc}")
        return SpeedPlan("onnx", want, f"CPU: ONNX Runtime {want}")

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
        torch = self._torch
        try:
            if self._onnx is not None:
                cut = self._cut_queries([q for q, _ in pairs])
                return list(self._onnx.score([(q, p[1]) for q, p in zip(cut, pairs, strict=True)]))
            threads = torch_threads(self._torch, self._torch_num_threads)
            with self._lock, threads, torch.inference_mode():
                self._check_model()
                queries = self._cut_queries([q for q, _ in pairs])
                batch = self._encoder(
                    queries,
                    [t for _, t in pairs],
                    truncation="only_second",
                    max_length=self._max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch, return_dict=True).logits
                scores = logits.view(-1).float().cpu().tolist()
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"BGE reranker {self.model_id!r} failed: {exc}") from exc
        return [float(s) for s in scores]

    def close(self) -> None:
        """Stop the ONNX worker threads (they also stop with the process)."""
        if self._onnx is not None:
            self._onnx.close()

    def _cut_queries(self, queries: list[str]) -> list[str]:
        """Queries cut to ``query_max_length`` tokens, as FlagReranker does."""
        unique = list(dict.fromkeys(queries))
        cut: dict[str, str] = {}
        for q, spans in zip(unique, self._tokenizer.token_spans(unique), strict=True):
            cut[q] = q if len(spans) <= self._query_max else q[: spans[self._query_max - 1][1]]
        return [cut[q] for q in queries]

    def _check_model(self) -> None:
        """Refuse to score if someone converted the shared model since we were built."""
        first = next(self.model.parameters())
        want = self._torch.device(self.device)
        same_device = first.device.type == want.type and (
            want.index is None or first.device.index == want.index
        )
        if first.dtype != self._dtype or not same_device:
            raise BackendError(
                f"the model of {self.model_id!r} was changed to {first.dtype} on {first.device} "
                f"after this backend was built for {self._dtype} on {self.device} "
                "(FlagReranker.compute_score converts its model); build a new backend"
            )

    def __repr__(self) -> str:
        return (
            f"FlagRerankerBackend(model={self.model_id!r}, device={self.device!r}, "
            f"runtime={self.runtime!r}, precision={self.precision!r}, "
            f"max_length={self._max_length})"
        )


def _model_max_length(tokenizer: Any, config: Any) -> int:
    """The most tokens the model can take in one input."""
    caps = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        caps.append(tok_max)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in _ROBERTA_LIKE:
            positions -= (
                int(getattr(config, "pad_token_id", 1) or 0) + 1
            )  # positions start after pad
        caps.append(positions)
    return min(caps) if caps else _DEFAULT_MAX_LENGTH


def _resolve_revision(model_id: str, revision: str | None, cache_dir: str | None) -> str:
    """A local directory for ``model_id`` at ``revision`` (FlagReranker takes no revision)."""
    if revision is None or Path(model_id).is_dir():
        return model_id
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=[*_CONFIG_FILES, "*.safetensors"],
        )
        if not any(Path(path).glob("*.safetensors")):
            path = snapshot_download(
                model_id,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=[*_CONFIG_FILES, "*.bin"],
            )
    except Exception as exc:
        raise load_error(f"{model_id}@{revision}", exc) from exc
    return str(path)


def _local_dir(model_id: str, cache_dir: str | None, loaded_from: str | None) -> str | None:
    """The directory the weights were read from, for the fingerprint's weights digest."""
    for cand in (loaded_from, model_id):
        if cand and Path(cand).is_dir():
            return cand
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir)
    except Exception:
        return None
    return str(Path(found).parent) if isinstance(found, str) else None
