"""The crossrank error tree.

Every error crossrank raises on purpose derives from :class:`CrossrankError`, so
``except CrossrankError`` catches them all; the leaves also derive from the
built-in the caller would naturally expect (``ValueError`` for bad input,
``ImportError`` for a missing extra, ``TimeoutError`` for a timed-out API)::

    CrossrankError
    ├── ConfigError(ValueError)            bad option at construction
    ├── InputError(ValueError)             bad call arguments
    │   ├── EmptyQueryError                blank or non-string query
    │   └── InvalidTextError               None / non-string text; has .index
    ├── BackendError                       the model or API failed while scoring
    │   ├── MissingDependencyError(ImportError)   names the extra to install
    │   ├── ModelLoadError                 a model could not be loaded
    │   └── APIError                       an HTTP reranking API failed; has .status_code
    │       ├── AuthenticationError        401/403: the key was rejected
    │       ├── RateLimitError             429 after the retries ran out
    │       └── APITimeoutError(TimeoutError)
    └── CacheError                         raised by cache tiers; the engine never
                                           lets it escape a rerank call
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendError",
    "CacheError",
    "ConfigError",
    "CrossrankError",
    "EmptyQueryError",
    "InputError",
    "InvalidTextError",
    "MissingDependencyError",
    "ModelLoadError",
    "RateLimitError",
]


class CrossrankError(Exception):
    """Base class of every error crossrank raises on purpose."""


class ConfigError(CrossrankError, ValueError):
    """An option given at construction is invalid."""


class InputError(CrossrankError, ValueError):
    """The arguments of a scoring call are invalid."""


class EmptyQueryError(InputError):
    """The query is empty, blank or not a string."""


class InvalidTextError(InputError):
    """A text is ``None`` or not a string. ``index`` is its position in the input."""

    def __init__(self, message: str, *, index: int, query_index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.query_index = query_index


class BackendError(CrossrankError):
    """The backend (model or API) failed while loading or scoring."""


class MissingDependencyError(BackendError, ImportError):
    """A backend's optional dependency is not installed; the message names the extra."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class ModelLoadError(BackendError):
    """A model could not be loaded (unknown id, unreachable hub, bad local path)."""


class APIError(BackendError):
    """A reranking HTTP API returned an error or could not be reached."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(APIError):
    """The API rejected the key (HTTP 401 or 403)."""


class RateLimitError(APIError):
    """The API kept answering 429 until the retries ran out."""


class APITimeoutError(APIError, TimeoutError):
    """The API did not answer within the timeout, retries included."""


class CacheError(CrossrankError):
    """A cache tier failed. The engine catches it, warns once and scores afresh."""
