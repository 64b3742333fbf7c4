"""monoT5, RankT5 and duoT5 against the papers' formulas written here with plain
transformers (as pygaggle / pyterrier-t5 compute them), on a tiny random T5 with a
Unigram tokenizer trained in the tests (``_tiny_generative.make_t5``)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _tiny_generative import make_t5
from _tiny_models import sample_texts
from helpers import need
from rerank_core import RankedText, Reranker, WindowConfig
from rerank_core.windows import make_windows, window_budget

torch = need("torch")
transformers = need("transformers")

QUERIES = ["what causes scurvy in sailors?", "vitamin C deficiency and immune response"]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_t5(tmp_path_factory.mktemp("t5") / "tiny-t5")


@pytest.fixture(scope="module")
def ref(t5_dir: Path) -> tuple[Any, Any]:
    tok = transformers.AutoTokenizer.from_pretrained(str(t5_dir))
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(t5_dir)).eval()
    return tok, model


def texts(n: int = 6, words: int = 30) -> list[str]:
    return [" ".join(t.split()[:words]) for t in sample_texts()[:n]]


def first_step(ref: tuple[Any, Any], text: str) -> Any:
    """One input alone, one decoder step from the decoder start token (pad id 0)."""
    tok, model = ref
    enc = tok(text, return_tensors="pt")
    start = torch.tensor([[model.config.decoder_start_token_id]])
    with torch.no_grad():
        return model(**enc, decoder_input_ids=start).logits[0, 0, :]


def mono_ref(ref: tuple[Any, Any], q: str, d: str) -> float:
    """pygaggle's MonoT5: log_softmax over the [false, true] logits, the true column."""
    tok, _ = ref
    logits = first_step(ref, f"Query: {q} Document: {d} Relevant:")
    vocab = tok.get_vocab()
    two = torch.stack([logits[vocab["▁false"]], logits[vocab["▁true"]]])
    return float(torch.log_softmax(two, dim=0)[1])


def duo_ref(ref: tuple[Any, Any], q: str, a: str, b: str) -> float:
    tok, _ = ref
    logits = first_step(ref, f"Query: {q} Document0: {a} Document1: {b} Relevant:")
    vocab = tok.get_vocab()
    two = torch.stack([logits[vocab["▁false"]], logits[vocab["▁true"]]])
    return float(torch.softmax(two, dim=0)[1])


@pytest.fixture(scope="module")
def mono(t5_dir: Path) -> Any:
    from rerank_core.backends.t5 import MonoT5Backend

    return MonoT5Backend(str(t5_dir), precision="exact", max_length=128)


def test_monot5_equals_pygaggle_formula(mono: Any, t5_dir: Path, ref: Any) -> None:
    from rerank_core.backends.t5 import MonoT5Backend

    pairs = [(q, t) for q in QUERIES for t in texts()]
    expected = [mono_ref(ref, q, t) for q, t in pairs]
    assert max(expected) - min(expected) > 1e-3
    logits = mono.score_pairs(pairs)
    # log sigmoid(true - false) is log_softmax([false, true])[true]
    got = [-math.log1p(math.exp(-s)) for s in logits]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4
    exact = MonoT5Backend(str(t5_dir), precision="exact", score="log_prob", max_length=128)
    got = exact.score_pairs(pairs)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4


def test_rankt5_is_the_designated_token_logit(t5_dir: Path, ref: Any) -> None:
    from rerank_core.backends.t5 import RankT5Backend

    b = RankT5Backend(str(t5_dir), precision="exact", max_length=128)
    tid = ref[0].convert_tokens_to_ids("<extra_id_10>")
    pairs = [(QUERIES[0], t) for t in texts()]
    expected = [float(first_step(ref, f"Query: {q} Document: {d}")[tid]) for q, d in pairs]
    got = b.score_pairs(pairs)
    assert max(abs(a - e) for a, e in zip(got, expected, strict=True)) < 1e-4


def test_monot5_windows_fit_untruncated(mono: Any, ref: Any) -> None:
    tok, _ = ref
    text = " ".join(sample_texts()[:3])
    for q in QUERIES:
        qn = len(mono.tokenizer.token_spans([q])[0])
        budget = window_budget(mono.max_length, qn, mono.tokenizer.pair_special_tokens)
        windows, _ = make_windows(
            mono.tokenizer.token_spans([text])[0], len(text), budget=budget, overlap=8
        )
        assert len(windows) > 3
        lengths = []
        for w in windows:
            ids = tok(f"Query: {q} Document: {text[w.start : w.end]} Relevant:")["input_ids"]
            lengths.append(len(ids))
            assert mono.encode_pair(q, text[w.start : w.end]) == ids  # nothing cut
        assert mono.max_length - 4 <= max(lengths) <= mono.max_length
    (r,) = Reranker(mono, cache=None, window=WindowConfig(overlap=8)).rerank(QUERIES[0], [text])
    assert r.n_windows > 3


def test_duot5_stage_sym_sum(t5_dir: Path, ref: Any, mono: Any) -> None:
    from rerank_core.backends.t5 import DuoT5Stage

    stage = DuoT5Stage(str(t5_dir), precision="exact", top_k=4, max_length=256)
    q = QUERIES[0]
    first = Reranker(mono, cache=None).rerank(q, texts(6, 20))
    out = stage.rerank(q, first)
    head = first[:4]
    p = [[duo_ref(ref, q, a.window_text, b.window_text) for b in head] for a in head]
    expected = [sum(p[i][j] + 1 - p[j][i] for j in range(4) if j != i) for i in range(4)]
    by_index = {r.index: r.score for r in out[:4]}
    for k, r in enumerate(head):
        assert abs(by_index[r.index] - expected[k]) < 1e-4
    assert [r.score for r in out[:4]] == sorted(by_index.values(), reverse=True)
    assert out[4:] == first[4:]  # the rest keeps its order and scores
    assert not any(r.truncated for r in out)
    strings = stage.rerank(q, [r.text for r in first])  # plain strings work too
    assert {r.index for r in strings[:4]} == {0, 1, 2, 3}


def test_duot5_cuts_long_texts_visibly(t5_dir: Path) -> None:
    from rerank_core.backends.t5 import DuoT5Stage

    stage = DuoT5Stage(str(t5_dir), precision="exact", top_k=3, max_length=96)
    long = [" ".join(sample_texts()[i : i + 2]) for i in range(3)]
    out = stage.rerank(
        QUERIES[1],
        [
            RankedText(index=i, score=0.0, text=t, window=(0, len(t)), n_windows=1)
            for i, t in enumerate(long)
        ],
    )
    assert all(r.truncated for r in out)


def test_no_heavy_imports() -> None:
    code = (
        "import sys, rerank_core, rerank_core.backends.t5, rerank_core.backends.llm; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
