"""The crossrank error tree.

Every error crossrank raises on purpose derives from :class:`CrossrankError`, so
``except CrossrankError`` catches them all; the leaves also derive from the
built-in the caller would naturally expect (``ValueError`` for bad input,
``ImportError`` for a missing extra, ``TimeoutError`` for a timed-out API)::

    CrossrankError
    ├── ConfigError(ValueError)            bad option at construction
    ├── InputError(ValueError)             bad call arguments
    │   ├── EmptyQueryError                blank or non-string query
    │   ├── InvalidTextError               None / non-string text; has .index
    │   └── FirstStageScoreError           fusion without a valid first-stage score;
    │                                      has .index (None: the whole list)
    ├── DependencyError(ImportError)       an optional package can't be used
    │   ├── MissingDependencyError         not installed; names the extra to install
    │   └── BrokenDependencyError          installed but fails to import; shows why
    │                                      (raised by rerank_core.deps.require)
    ├── BackendError                       the model or API failed while scoring
    │   ├── ModelLoadError                 a model could not be loaded
    │   │   └── UntrainedModelError        its score head was initialised at random;
    │   │                                  has .model, .missing
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
    "BrokenDependencyError",
    "CacheError",
    "ConfigError",
    "CrossrankError",
    "DependencyError",
    "EmptyQueryError",
    "FirstStageScoreError",
    "InputError",
    "InvalidTextError",
    "MissingDependencyError",
    "ModelLoadError",
    "RateLimitError",
    "UntrainedModelError",
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


class FirstStageScoreError(InputError):
    """Score fusion needs a first-stage score per text and one is missing or not a finite
    number. ``index`` is the text's position (``None`` when the whole list is missing or
    has the wrong length)."""

    def __init__(self, message: str, *, index: int | None) -> None:
        super().__init__(message)
        self.index = index


class BackendError(CrossrankError):
    """The backend (model or API) failed while loading or scoring."""


class DependencyError(CrossrankError, ImportError):
    """An optional package that a feature needs cannot be used.

    ``package`` is the distribution name, ``extra`` the crossrank extra that installs it.
    """

    def __init__(self, message: str, *, extra: str, package: str = "") -> None:
        super().__init__(message)
        self.extra = extra
        self.package = package


class MissingDependencyError(DependencyError):
    """An optional package is not installed; the message names the extra to install."""


class BrokenDependencyError(DependencyError):
    """An optional package is installed but fails to import (usually a version conflict).

    The message names the package and its version and shows the underlying error;
    ``__cause__`` is that error.
    """


class ModelLoadError(BackendError):
    """A model could not be loaded (unknown id, unreachable hub, bad local path)."""


class UntrainedModelError(ModelLoadError):
    """The model's checkpoint holds no score-head weights, so loading it drew a random
    head (a bi-encoder or base encoder loaded as a reranker): its scores would be noise and
    differ in every process. ``model`` is the model id or path, ``missing`` the head
    weights the checkpoint lacks. ``allow_untrained=True`` loads it anyway (plumbing tests)."""

    def __init__(self, message: str, *, model: str, missing: list[str]) -> None:
        super().__init__(message)
        self.model = model
        self.missing = list(missing)


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
