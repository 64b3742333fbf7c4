"""Small local model directories that FlagEmbedding can load offline.

``make_tiny_xlmr`` trains a small SentencePiece-style Unigram tokenizer on the bundled
SciFact sample, wraps it as an XLM-R tokenizer (``<s> q </s></s> d </s>``: four special
tokens per pair) and saves it beside a randomly initialised, seeded
``XLMRobertaForSequenceClassification`` with one output label.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "shared" / "rerank_core" / "data" / "scifact_sample.jsonl"


def sample_texts() -> list[str]:
    with SAMPLE.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def make_tiny_xlmr(out: Path, *, max_tokens: int = 128, seed: int = 7) -> Path:
    import torch
    from crossrank_lab.bench.common import xlmr_tokenizer
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    hf_tok = xlmr_tokenizer(sample_texts(), vocab_size=3000, max_length=max_tokens)
    config = XLMRobertaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_tokens + 2,  # XLM-R positions start after the pad id
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        initializer_range=0.5,  # a random encoder whose outputs depend clearly on the input
    )
    torch.manual_seed(seed)
    model = XLMRobertaForSequenceClassification(config)
    with torch.no_grad():  # spread the untrained head's scores so that texts differ clearly
        model.classifier.out_proj.weight.mul_(3.0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    hf_tok.save_pretrained(str(out))
    return out


_BUILT: dict[str, Path] = {}


def tiny_xlmr_once(tmp_path_factory: object) -> Path:
    """One tiny XLM-R directory per test session, shared by the test modules that need it."""
    if "xlmr" not in _BUILT:
        base = tmp_path_factory.mktemp("models")  # type: ignore[attr-defined]
        _BUILT["xlmr"] = make_tiny_xlmr(base / "tiny-xlmr", max_tokens=128)
    return _BUILT["xlmr"]
