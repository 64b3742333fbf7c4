"""crossrank's scoring engine.

``import rerank_core`` is light: it imports no torch, transformers, FlagEmbedding,
cohere, LlamaIndex or LangChain. A backend's dependencies load when it is built.
"""

from __future__ import annotations

from .backends import BACKENDS, load_backend, register_backend
from .cache import CacheStats, CacheWarning, MemoryCache, ScoreCache, SQLiteCache, TieredCache
from .cascade import Cascade, CascadeRanking, CascadeStats, Stage, StageStats
from .config import EngineConfig, WindowConfig
from .engine import Reranker
from .errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    BackendError,
    BrokenDependencyError,
    CacheError,
    ConfigError,
    CrossrankError,
    DependencyError,
    EmptyQueryError,
    FirstStageScoreError,
    InputError,
    InvalidTextError,
    MissingDependencyError,
    ModelLoadError,
    RateLimitError,
    UntrainedModelError,
)
from .fusion import Fusion
from .redis_cache import RedisCache
from .scheduler import BatcherStats
from .types import (
    AsyncBackend,
    Backend,
    BackendInfo,
    RankedText,
    SupportsClose,
    SupportsDescribe,
    SupportsInfo,
    Tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "APIError",
    "APITimeoutError",
    "AsyncBackend",
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BatcherStats",
    "BrokenDependencyError",
    "CacheError",
    "CacheStats",
    "CacheWarning",
    "Cascade",
    "CascadeRanking",
    "CascadeStats",
    "ConfigError",
    "CrossrankError",
    "DependencyError",
    "EmptyQueryError",
    "EngineConfig",
    "FirstStageScoreError",
    "Fusion",
    "InputError",
    "InvalidTextError",
    "MemoryCache",
    "MissingDependencyError",
    "ModelLoadError",
    "RankedText",
    "RateLimitError",
    "RedisCache",
    "Reranker",
    "SQLiteCache",
    "ScoreCache",
    "Stage",
    "StageStats",
    "SupportsClose",
    "SupportsDescribe",
    "SupportsInfo",
    "TieredCache",
    "Tokenizer",
    "UntrainedModelError",
    "WindowConfig",
    "__version__",
    "load_backend",
    "register_backend",
]
