"""sentence-transformers ``CrossEncoder`` backend (preset ``"minilm"``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import BackendError, ConfigError
from ..types import Pair, ScoreScale
from ._hf import HFTokenizer, fingerprint_of, load_error, missing, resolve_device, weights_digest

__all__ = ["DEFAULT_MODEL", "CrossEncoderBackend"]

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"

Precision = Literal["fp32", "bf16", "fp16"]


class CrossEncoderBackend:
    """Scores pairs with a sentence-transformers ``CrossEncoder``.

    ``model``: hub id or local directory, or a ready ``CrossEncoder`` instance.
    ``device``: ``"cpu"`` (default), ``"auto"`` (one GPU if present) or a torch
    device string. ``precision``: ``"fp32"`` (default, exact), ``"bf16"`` or
    ``"fp16"``. ``max_length``: cap on tokens per pair (default: the model's).
    Scores are raw logits (the model's activation is not applied); the engine's
    ``normalize="sigmoid"`` maps them to 0–1.
    """

    score_scale: ScoreScale = "logit"

    def __init__(
        self,
        model: Any = None,
        *,
        device: str | None = None,
        precision: Precision = "fp32",
        max_length: int | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
    ) -> None:
        try:
            import torch
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise missing("sentence-transformers", "minilm", exc) from exc
        if precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            raise ConfigError(f"max_length must be an int >= 8, got {max_length!r}")
        self._torch = torch
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
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if precision != "fp32":
            ce = ce.to(dtype)
        ce.eval()
        self.model = ce
        self.model_id = model_id
        self.precision = precision
        model_max = int(ce.max_seq_length or 512)
        self._max_length = min(max_length, model_max) if max_length else model_max
        if max_length:
            ce.max_seq_length = self._max_length
        self._tokenizer = HFTokenizer(ce.tokenizer)
        self._identity = torch.nn.Identity()
        self._lock = threading.Lock()
        local_dir = getattr(ce.config, "_name_or_path", None)
        self._fingerprint = fingerprint_of(
            backend="cross-encoder",
            model=model_id,
            revision=revision,
            weights=weights_digest(local_dir),
            max_length=self._max_length,
            precision=precision,
            activation="identity",
            num_labels=int(ce.num_labels),
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        if not pairs:
            return []
        try:
            with self._lock, self._torch.inference_mode():
                scores = self.model.predict(
                    [list(p) for p in pairs],
                    batch_size=len(pairs),
                    show_progress_bar=False,
                    activation_fn=self._identity,
                    convert_to_numpy=True,
                )
        except Exception as exc:
            raise BackendError(f"cross-encoder {self.model_id!r} failed: {exc}") from exc
        flat = scores.reshape(len(pairs), -1)[:, -1] if scores.ndim > 1 else scores
        return [float(s) for s in flat]

    def __repr__(self) -> str:
        return f"CrossEncoderBackend(model={self.model_id!r}, precision={self.precision!r})"
