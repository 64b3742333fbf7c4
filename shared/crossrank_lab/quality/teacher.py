"""The teachers: a bi-encoder's normalised embeddings and a cross-encoder's scores.

The bi-encoder's cosine is the ``dense`` signal of :class:`~.training.TeacherMix`; a
reranker's raw score (its logit) is the ``reranker`` signal. Both can be kept in an
``.npz`` file (``--teacher-cache``) keyed by the model, its weights and the text (the
reranker's by its engine fingerprint and the pair), so that later training runs do not
encode or score the same texts again; ``crossrank finetune`` keeps the reranker's scores
beside the embeddings, in ``<cache>.reranker.npz`` (:func:`reranker_cache`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["bi_encoder", "cross_encoder", "reranker_cache"]

logger = logging.getLogger("crossrank.quality")


def bi_encoder(
    model: str,
    device: str | None,
    *,
    progress: bool,
    cache: Path | None,
    bf16: bool,
    chunk: int = 2048,
) -> Any:
    """``encode(texts)`` with the bi-encoder: L2-normalised embeddings, bf16 autocast where
    the CPU has it, and an optional ``.npz`` cache keyed by the model and each text."""
    import contextlib
    import hashlib

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from .._support import model_digest, resolve_device

    st = SentenceTransformer(model, device=resolve_device(device))
    salt = f"{model}|{model_digest(model)}|{st.max_seq_length}|{'bf16' if bf16 else 'fp32'}"

    def key(text: str) -> str:
        return hashlib.sha1(f"{salt}|{text}".encode()).hexdigest()

    def encode(texts: list[str]) -> Any:
        stored = _load(cache)
        keys = [key(t) for t in texts]
        todo = [i for i, k in enumerate(keys) if k not in stored]
        amp = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if bf16 and st.device.type == "cpu"
            else contextlib.nullcontext()
        )
        for at in range(0, len(todo), chunk):  # saved chunk by chunk: a long run can resume
            part = todo[at : at + chunk]
            with amp, torch.inference_mode():
                fresh = st.encode(
                    [texts[i] for i in part],
                    batch_size=64,
                    normalize_embeddings=True,
                    convert_to_tensor=True,
                    show_progress_bar=progress,
                )
            for i, v in zip(part, fresh.float().cpu().numpy(), strict=True):
                stored[keys[i]] = v
            if cache is not None:
                _save(cache, stored)
        logger.info("teacher embeddings: %d computed, %d cached", len(todo), len(texts) - len(todo))
        return np.stack([stored[k] for k in keys])

    return encode


def reranker_cache(cache: Path | None) -> Path | None:
    """Where the reranker teacher's scores go, beside the embeddings file ``cache``."""
    if cache is None:
        return None
    stem = cache.name.removesuffix(".npz")
    return cache.with_name(f"{stem}.reranker.npz")


def _load(cache: Path | None) -> dict[str, Any]:
    import numpy as np

    if cache is None or not cache.exists():
        return {}
    with np.load(cache) as f:
        return dict(zip(f["keys"].tolist(), f["vectors"], strict=True))


def _save(cache: Path, stored: dict[str, Any]) -> None:
    import numpy as np

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, keys=np.array(list(stored)), vectors=np.stack(list(stored.values())))
    tmp.replace(cache)


def cross_encoder(
    model: str,
    *,
    backend: str = "minilm",
    cache: Path | None = None,
    threads: int | None = None,
    device: str | None = None,
    max_length: int | None = None,
    max_windows: int | None = None,
    chunk: int = 2048,
    **options: Any,
) -> Any:
    """``score(pairs)``: a reranker's raw score per ``(query, document)`` pair, through
    rerank_core's :class:`~rerank_core.Reranker` (the engine's defaults: the fast runtime,
    ``precision="auto"``, the model's own windows, no score normalisation), so the
    teacher scores a pair exactly as the engine ranks it. ``max_length``/``max_windows``:
    the windows it reads (``crossrank finetune`` gives the student's ``--max-length`` and
    one window, so the teacher scores the text the student sees). Pairs are scored query
    by query; with ``cache`` each score is stored under the engine's fingerprint, the
    window settings and the pair (a 1-element vector, the embeddings' ``.npz`` layout)."""
    import hashlib

    import numpy as np
    from rerank_core import Reranker, WindowConfig

    extra: dict[str, Any] = dict(options)
    if threads is not None:
        extra["num_threads"] = threads
    if device is not None:
        extra["device"] = device
    if max_length is not None:
        extra["max_length"] = max_length
    window = WindowConfig(max_windows=max_windows)
    reranker = Reranker(backend, model=model, cache=None, window=window, **extra)
    salt = f"reranker|{reranker.fingerprint}|{reranker.backend.max_length}|{max_windows}"

    def key(query: str, doc: str) -> str:
        return hashlib.sha1(f"{salt}|{query}\0{doc}".encode()).hexdigest()

    def score(pairs: list[tuple[str, str]]) -> list[float]:
        stored = _load(cache)
        keys = [key(q, d) for q, d in pairs]
        by_query: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k not in stored:
                by_query.setdefault(pairs[i][0], []).append(i)
        todo = sum(len(v) for v in by_query.values())
        done = 0
        since_save = 0
        for query, idx in by_query.items():
            scores = reranker.score(query, [pairs[i][1] for i in idx])
            for i, s in zip(idx, scores, strict=True):
                stored[keys[i]] = np.array([s], dtype=np.float32)
            done += len(idx)
            since_save += len(idx)
            if cache is not None and (since_save >= chunk or done == todo):
                _save(cache, stored)  # chunk by chunk: a long run can resume
                since_save = 0
        logger.info("teacher reranker scores: %d computed, %d cached", todo, len(pairs) - todo)
        return [float(stored[k][0]) for k in keys]

    return score
