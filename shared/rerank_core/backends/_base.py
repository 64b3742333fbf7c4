"""The read-only protocol properties every built-in backend exposes the same way."""

from __future__ import annotations

from typing import Generic, TypeVar

from ..types import Tokenizer

__all__ = ["BackendBase"]

T = TypeVar("T", bound=Tokenizer)


class BackendBase(Generic[T]):
    """Gives ``fingerprint``, ``max_length`` and ``tokenizer`` from attributes the
    subclass sets while it loads: ``_fingerprint``, ``_max_length`` and ``_tokenizer``."""

    _fingerprint: str
    _max_length: int
    _tokenizer: T

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer(self) -> T:
        return self._tokenizer
