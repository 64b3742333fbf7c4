"""Where the Hugging Face helpers used to live; they are in :mod:`.runtime.hf` now. Kept
for ``cohere.py``'s import until that line points there."""

from __future__ import annotations

from .runtime.hf import HFTokenizer, fingerprint_of

__all__ = ["HFTokenizer", "fingerprint_of"]
