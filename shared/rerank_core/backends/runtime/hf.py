"""Hugging Face pieces every local backend shares: token spans from a fast tokenizer (with
a memo of recent texts), fingerprints, weights digests, devices, load errors, torch threads
and weight release."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ... import deps
from ...errors import ModelLoadError

__all__ = [
    "HFTokenizer",
    "SpanMemo",
    "fingerprint_of",
    "load_error",
    "local_weights_dir",
    "model_max_length",
    "release_weights",
    "resolve_device",
    "torch_threads",
    "weights_digest",
    "weights_released",
]


def release_weights(module: Any) -> None:
    """Free a torch module's weights (moved to the ``meta`` device: shapes and dtypes
    stay, storage goes). For a model the backend loaded itself and no longer runs
    because ONNX Runtime scores with its own copy; never for a model the caller passed."""
    try:
        module.to("meta")
    except Exception:  # best effort: keeping the weights is only a cost in memory
        return


def weights_released(module: Any) -> bool:
    """Whether :func:`release_weights` freed this module's weights."""
    return any(p.device.type == "meta" for p in module.parameters())


@contextlib.contextmanager
def torch_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """torch's global thread count set to ``threads`` while the block runs (the caller's
    setting comes back afterwards); left alone when ``threads`` is None."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_error(model: str, exc: BaseException) -> ModelLoadError:
    """A clear error for a model that could not be loaded."""
    offline = os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True", "YES", "yes"}
    hint = (
        "HF_HUB_OFFLINE is set, so only models already in the local cache or a local directory load"
        if offline
        else "the Hugging Face hub may be unreachable from this machine"
    )
    return ModelLoadError(
        f"could not load model {model!r}: {type(exc).__name__}: {str(exc).strip().rstrip('.')}. "
        f"Check the model id, or pass a local model directory as model=...; {hint}."
    )


def resolve_device(device: str | None, *, extra: str = "minilm") -> str:
    """``None``/"cpu" → CPU; "auto" → one GPU if present else CPU; anything else as given.
    (``extra``: what to install when "auto" needs torch and it is absent.)"""
    if device is None or device == "cpu":
        return "cpu"
    if device == "auto":
        torch = deps.require("torch", extra=extra, purpose="device='auto'")
        if torch.cuda.is_available():
            return "cuda:0"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    return device


def weights_digest(model_dir: str | os.PathLike[str] | None) -> str:
    """A cheap digest of a local model directory's weights and config.

    Hashes each weights file's size plus its first and last MiB, and the config
    files whole: enough to tell two checkpoints apart without reading GBs.
    ``"remote"`` when ``model_dir`` is not a local directory.
    """
    if model_dir is None:
        return "remote"
    path = Path(model_dir)
    if not path.is_dir():
        return "remote"
    h = hashlib.sha256()
    names = sorted(
        p
        for p in path.iterdir()
        if p.is_file()
        and (p.suffix in {".safetensors", ".bin", ".onnx", ".pt"} or p.name.endswith("config.json"))
    )
    for p in names:
        h.update(p.name.encode())
        size = p.stat().st_size
        h.update(size.to_bytes(8, "little"))
        with p.open("rb") as f:
            if p.suffix == ".json" or size <= 2 << 20:
                h.update(f.read())
            else:
                h.update(f.read(1 << 20))
                f.seek(size - (1 << 20))
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def fingerprint_of(**parts: Any) -> str:
    """A stable fingerprint string from named parts."""
    return json.dumps(parts, sort_keys=True, default=str)


class HFTokenizer:
    """Token spans from a Hugging Face fast tokenizer.

    Works on a private copy of the Rust tokenizer with truncation and padding
    off: the copy is never mutated, so it is safe to use from many threads while
    the model's own tokenizer is busy (no "Already borrowed").
    """

    def __init__(
        self, hf_tokenizer: Any, *, extra: str = "minilm", pair_tokens: int | None = None
    ) -> None:
        tokenizers = deps.require("tokenizers", extra=extra, purpose="a local model's tokenizer")
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                f"tokenizer {type(hf_tokenizer).__name__} is not a fast tokenizer; "
                "crossrank needs character offsets to cut windows"
            )
        self._tok = tokenizers.Tokenizer.from_str(backend.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        # every token the backend adds around a pair (``pair_tokens``, measured by the
        # family), else the tokenizer's own special tokens
        self._special = (
            int(hf_tokenizer.num_special_tokens_to_add(pair=True))
            if pair_tokens is None
            else int(pair_tokens)
        )

    @property
    def pair_special_tokens(self) -> int:
        return self._special

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        if not texts:
            return []
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [[(int(a), int(b)) for a, b in enc.offsets] for enc in encs]


class SpanMemo:
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


_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl")


def model_max_length(tokenizer: Any, config: Any, *, default: int) -> int:
    """The most tokens the model can take in one input: the tokenizer's limit and the
    position embeddings (RoBERTa-like models start positions after the pad id)."""
    caps = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        caps.append(tok_max)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in _ROBERTA_LIKE:
            positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
        caps.append(positions)
    return min(caps) if caps else default


def local_weights_dir(
    model_id: str,
    revision: str | None,
    cache_dir: str | None,
    loaded_from: str | None,
    *,
    extra: str,
) -> str | None:
    """The local directory a model's weights were read from (for :func:`weights_digest`):
    ``loaded_from`` or ``model_id`` when a directory, else its snapshot in the Hugging
    Face cache; ``None`` when not found."""
    for cand in (loaded_from, model_id):
        if cand and Path(cand).is_dir():
            return cand
    try:
        hub = deps.require("huggingface_hub", extra=extra)
        found = hub.try_to_load_from_cache(
            model_id, "config.json", cache_dir=cache_dir, revision=revision
        )
    except Exception:
        return None
    return str(Path(found).parent) if isinstance(found, str) else None
