"""The bi-encoder teacher: normalised embeddings of queries and documents.

Its cosine is the ``dense`` signal of :class:`~.training.TeacherMix`. Embeddings can be
kept in an ``.npz`` file keyed by the model, its weights, precision and the text, so
that later training runs (and teacher checks) do not encode the same texts again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["bi_encoder"]

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
        stored: dict[str, Any] = {}
        if cache is not None and cache.exists():
            with np.load(cache) as f:
                stored = dict(zip(f["keys"].tolist(), f["vectors"], strict=True))
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
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.name + ".tmp.npz")
                np.savez(tmp, keys=np.array(list(stored)), vectors=np.stack(list(stored.values())))
                tmp.replace(cache)
        logger.info("teacher embeddings: %d computed, %d cached", len(todo), len(texts) - len(todo))
        return np.stack([stored[k] for k in keys])

    return encode
