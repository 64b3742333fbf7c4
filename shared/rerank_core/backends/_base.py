"""The read-only protocol properties every built-in backend exposes the same way, and
defaults for the declared optional capabilities (``info``, ``describe()``, ``close()``)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ..types import AsyncBackend, BackendInfo, Tokenizer

__all__ = ["BackendBase"]

T = TypeVar("T", bound=Tokenizer)


class BackendBase(Generic[T]):
    """Gives ``fingerprint``, ``max_length`` and ``tokenizer`` from attributes the
    subclass sets while it loads: ``_fingerprint``, ``_max_length`` and ``_tokenizer``.

    Defaults for the optional capabilities: ``info`` (a subclass sets ``_info``, or
    overrides the property; by default it reports the ``model_id`` and
    ``preferred_batch_size`` attributes, and a backend without ``ascore_pairs`` is a local
    model that shares batches through the micro-batcher), ``describe()`` (the backend's
    class, model id, fingerprint and max_length; subclasses add their facts) and
    ``close()`` (nothing to release)."""

    _fingerprint: str
    _max_length: int
    _tokenizer: T
    _info: BackendInfo | None = None
    model_id: str | None = None
    preferred_batch_size: int | None = None

    @property
    def info(self) -> BackendInfo:
        if self._info is not None:
            return self._info
        return BackendInfo(
            model_id=self.model_id,
            preferred_batch_size=self.preferred_batch_size,
            micro_batching=not isinstance(self, AsyncBackend),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": type(self).__name__,
            "model_id": self.info.model_id,
            "fingerprint": self.fingerprint,
            "max_length": self.max_length,
        }

    def close(self) -> None:
        """Release resources; the default holds none."""

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer(self) -> T:
        return self._tokenizer
