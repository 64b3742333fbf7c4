"""Production controls through the engine (issue 15): confidence, cutoff scales, evidence
windows, latency deadlines and out-of-memory recovery. Small deterministic backends: the
logic is the engine's, not a model's."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Sequence

import pytest
from helpers import KeywordBackend, need
from rerank_core import BackendError, BackendInfo, ConfigError, Reranker
from rerank_core.deadline import priority_batches
from rerank_core.evidence import evidence_span
from rerank_core.memory import is_out_of_memory
from rerank_core.scales import logit
from rerank_core.types import Ranking

Pair = tuple[str, str]
TEXTS = ["the cat sat on the mat", "a dog barks loudly", "a cat and a dog", "nothing here"]
MANY = [f"text {i} " + ("cat " if i % 3 == 0 else "") + "filler words here" for i in range(40)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- confidence


def test_rank1_score_and_low_confidence_flag(
    keyword_backend: KeywordBackend, caplog: pytest.LogCaptureFixture
) -> None:
    rr = Reranker(keyword_backend, confidence_threshold=2.0)
    caplog.set_level(logging.INFO, logger="crossrank")
    good = rr.rerank("cat dog", TEXTS)
    assert isinstance(good, Ranking) and isinstance(good, list)
    assert good.top_score == 2.0 and not good.low_confidence
    assert good.confidence_threshold == 2.0 and good.score_scale == "logit"
    weak = rr.rerank("zebra cat", TEXTS, top_n=1)
    assert weak.top_score == 1.0 and weak.low_confidence
    # per call: a lower threshold; the best score is taken before min_score and top_n cut
    cut = rr.rerank("zebra cat", TEXTS, min_score=5.0, confidence_threshold=0.5)
    assert cut == [] and cut.top_score == 1.0 and not cut.low_confidence
    records = [r for r in caplog.records if r.getMessage().startswith("rerank: top-1 score")]
    assert len(records) == 3
    assert records[1].crossrank_top_score == 1.0  # type: ignore[attr-defined]
    assert records[1].crossrank_low_confidence is True  # type: ignore[attr-defined]
    assert "LOW CONFIDENCE" in records[1].getMessage()
    assert "zebra" not in caplog.text  # the query is never logged


def test_no_threshold_no_flag_and_empty_input(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    out = rr.rerank("zebra", TEXTS)
    assert out.top_score == 0.0 and not out.low_confidence and out.confidence_threshold is None
    empty = rr.rerank("cat", [], confidence_threshold=1.0)
    assert empty == [] and empty.top_score is None and empty.low_confidence
    many = rr.rerank_many([("cat", TEXTS), ("zebra", TEXTS)], confidence_threshold=1.0)
    assert [m.low_confidence for m in many] == [False, True]


def test_passthrough_is_low_confidence_with_a_threshold(keyword_backend: KeywordBackend) -> None:
    keyword_backend.fail = RuntimeError("model crashed")
    rr = Reranker(keyword_backend, on_error="passthrough", confidence_threshold=0.0)
    out = rr.rerank("cat", TEXTS)
    assert out.top_score is None and out.low_confidence and out.unscored == 4
    assert not out.deadline_passed


# ---------------------------------------------------------------- score scales


def test_cutoff_scale_converts_exactly(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    assert rr.score_scale == "logit"
    on_logits = rr.rerank("cat dog", TEXTS, min_score=1.5)
    as_prob = rr.rerank("cat dog", TEXTS, min_score=sigmoid(1.5), cutoff_scale="probability")
    assert [r.index for r in as_prob] == [r.index for r in on_logits] == [2]
    flagged = rr.rerank("cat", TEXTS, confidence_threshold=0.8, cutoff_scale="probability")
    assert flagged.confidence_threshold == pytest.approx(logit(0.8)) and flagged.low_confidence
    norm = Reranker(KeywordBackend(), normalize="sigmoid", cutoff_scale="logit")
    assert norm.score_scale == "probability"
    out = norm.rerank("cat dog", TEXTS, min_score=1.5)  # a logit cutoff on 0–1 results
    assert [r.index for r in out] == [2] and out[0].score == pytest.approx(sigmoid(2.0))


def test_a_0_to_1_cutoff_on_logits_warns_once(
    keyword_backend: KeywordBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crossrank")
    rr = Reranker(keyword_backend, confidence_threshold=0.7)  # warned at construction
    rr.rerank("cat", TEXTS, min_score=0.5)
    rr.rerank("cat", TEXTS, min_score=0.4)
    warned = [r.getMessage() for r in caplog.records if "raw logits" in r.getMessage()]
    assert len(warned) == 2  # once per option
    assert "confidence_threshold=0.7" in warned[0] and "min_score=0.5" in warned[1]
    assert "cutoff_scale='probability'" in warned[0]
    caplog.clear()
    declared = Reranker(KeywordBackend(), cutoff_scale="probability")
    declared.rerank("cat", TEXTS, min_score=0.5)
    Reranker(KeywordBackend(), normalize="sigmoid").rerank("cat", TEXTS, min_score=0.5)
    Reranker(KeywordBackend()).rerank("cat", TEXTS, min_score=0.0)  # 0 and 1: no guess
    assert not [r for r in caplog.records if "raw logits" in r.getMessage()]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cutoff_scale": "sigmoid"},
        {"confidence_threshold": "high"},
        {"confidence_threshold": 1.5, "cutoff_scale": "probability"},
        {"deadline_ms": 0},
        {"deadline_ms": -5},
        {"deadline_ms": float("nan")},
    ],
)
def test_bad_controls_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Reranker(KeywordBackend(), **kwargs)  # type: ignore[arg-type]


def test_bad_per_call_controls_are_config_errors(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    with pytest.raises(ConfigError, match="must be in"):
        rr.rerank("cat", TEXTS, min_score=2.0, cutoff_scale="probability")
    with pytest.raises(ConfigError, match="deadline_ms"):
        rr.rerank("cat", TEXTS, deadline_ms=0)
    assert keyword_backend.calls == []


# ---------------------------------------------------------------- evidence windows


def test_evidence_is_the_best_window_with_word_boundary_context() -> None:
    text = " ".join(f"w{i}" for i in range(300)) + " alpha beta " + " ".join(["zzz"] * 300)
    rr = Reranker(KeywordBackend(max_length=40), cache=None)
    r = rr.rerank("alpha beta", [text])[0]
    assert r.n_windows > 5 and "alpha beta" in r.window_text
    assert r.evidence() == r.window_text
    wide = r.evidence(context_chars=25)
    assert r.window_text in wide and len(wide) <= len(r.window_text) + 2 * (25 + 40)
    assert text.startswith(wide) or text[text.index(wide) - 1] == " "  # starts on a word
    assert evidence_span("abc def ghi", (4, 7), 1) == (0, 11)  # widened to whole words
    assert evidence_span("abc", (0, 3), 100) == (0, 3)


# ---------------------------------------------------------------- deadlines


class SlowKeyword(KeywordBackend):
    """Sleeps ``delay`` seconds per batch."""

    def __init__(self, delay: float, *, shared: bool = True) -> None:
        super().__init__()
        self.delay = delay
        self.info = BackendInfo(micro_batching=shared)

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        time.sleep(self.delay)
        return super().score_pairs(pairs)


class SlowAsyncKeyword(KeywordBackend):
    """A truly async backend (no micro-batcher) that takes ``delay`` per request."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        await asyncio.sleep(self.delay)
        return self.score_pairs(pairs)


DELAY = 0.1
DEADLINE_MS = 250.0
SLACK = 0.15  # thread wake-ups and planning on a busy 2-core machine


def check_deadline_result(out: Ranking, took: float, *, texts: list[str]) -> None:
    assert took < DEADLINE_MS / 1000 + DELAY + SLACK, took  # deadline plus one batch
    scored = [r for r in out if r.scored]
    unscored = [r for r in out if not r.scored]
    assert scored and unscored and out.deadline_passed
    assert out == scored + unscored  # scored first
    assert [r.score for r in scored] == sorted((r.score for r in scored), reverse=True)
    assert [r.index for r in unscored] == sorted(r.index for r in unscored)  # first-stage order
    assert all(math.isnan(r.score) and r.window == (0, len(r.text)) for r in unscored)
    # batches follow the first-stage order: what was scored is a prefix of the input
    assert sorted(r.index for r in scored) == list(range(len(scored)))
    assert out.unscored == len(unscored) == len(texts) - len(scored)


@pytest.mark.parametrize("shared", [True, False], ids=["micro-batched", "direct"])
def test_deadline_sync(shared: bool) -> None:
    rr = Reranker(SlowKeyword(DELAY, shared=shared), batch_size=4, cache=None)
    t0 = time.perf_counter()
    out = rr.rerank("cat", MANY, deadline_ms=DEADLINE_MS)
    check_deadline_result(out, time.perf_counter() - t0, texts=MANY)
    assert rr.describe()["engine"]["scorer"] == ("micro-batched" if shared else "direct")


@pytest.mark.parametrize("shared", [True, False], ids=["micro-batched", "direct"])
def test_deadline_async(shared: bool) -> None:
    rr = Reranker(SlowKeyword(DELAY, shared=shared), batch_size=4, cache=None)

    async def go() -> tuple[Ranking, float]:
        t0 = time.perf_counter()
        out = await rr.arerank("cat", MANY, deadline_ms=DEADLINE_MS)
        return out, time.perf_counter() - t0

    out, took = asyncio.run(go())
    check_deadline_result(out, took, texts=MANY)


def test_deadline_with_a_truly_async_backend() -> None:
    rr = Reranker(SlowAsyncKeyword(DELAY), batch_size=4, cache=None)
    assert rr.describe()["engine"]["scorer"] == "async"

    async def go() -> tuple[Ranking, float]:
        t0 = time.perf_counter()
        out = await rr.arerank("cat", MANY, deadline_ms=DEADLINE_MS)
        return out, time.perf_counter() - t0

    out, took = asyncio.run(go())
    check_deadline_result(out, took, texts=MANY)


@pytest.mark.parametrize("shared", [True, False], ids=["micro-batched", "direct"])
def test_a_batch_slower_than_the_deadline_still_counts(shared: bool) -> None:
    """The batch running at the deadline finishes and its scores are used: deadline plus
    one batch, never a wasted batch."""
    rr = Reranker(SlowKeyword(0.4, shared=shared), batch_size=4, cache=None)
    for call in (
        lambda: rr.rerank("cat", MANY, deadline_ms=150),
        lambda: asyncio.run(rr.arerank("cat", MANY, deadline_ms=150)),
    ):
        t0 = time.perf_counter()
        out = call()
        assert time.perf_counter() - t0 < 0.15 + 0.4 + SLACK
        assert len(MANY) - out.unscored == 4  # the first batch: the first four texts
        assert sorted(r.index for r in out if r.scored) == [0, 1, 2, 3]


def test_engine_default_deadline_and_no_caching_of_unscored() -> None:
    rr = Reranker(SlowKeyword(DELAY), batch_size=4, deadline_ms=DEADLINE_MS)
    first = rr.rerank("cat", MANY)
    assert first.deadline_passed and rr.pairs_scored == len(MANY) - first.unscored
    scores = rr.score("cat", MANY)
    assert sum(math.isnan(s) for s in scores) < first.unscored  # the cache helped
    full = rr.rerank("cat", MANY, deadline_ms=60_000)
    assert not full.deadline_passed and full.unscored == 0 and len(full) == len(MANY)


def test_deadline_under_the_micro_batcher_leaves_other_callers_whole() -> None:
    rr = Reranker(SlowKeyword(0.05), batch_size=4, cache=None)
    got: dict[str, Ranking] = {}

    def patient() -> None:
        got["patient"] = rr.rerank("dog", MANY)

    t = threading.Thread(target=patient)
    t.start()
    t0 = time.perf_counter()
    got["hurried"] = rr.rerank("cat", MANY, deadline_ms=150)
    hurried_s = time.perf_counter() - t0
    t.join(30)
    assert hurried_s < 0.15 + 0.05 + SLACK
    assert got["hurried"].deadline_passed
    assert got["patient"].unscored == 0 and not got["patient"].deadline_passed


def test_top_n_close_to_the_candidates_warns_once(
    keyword_backend: KeywordBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crossrank")
    rr = Reranker(keyword_backend)
    rr.rerank("cat", MANY, top_n=10)  # 30 <= 40: fine
    assert "barely" not in caplog.text
    rr.rerank("cat", TEXTS, top_n=2)
    rr.rerank("cat", TEXTS, top_n=2)
    assert caplog.text.count("barely change") == 1
    assert "top_n=2 of only 4 candidates" in caplog.text


def test_priority_batches_follow_the_callers_order() -> None:
    batches = priority_batches([5, 50, 10, 40, 20, 30], batch_size=2)
    assert batches == [[1, 0], [3, 2], [5, 4]]  # pairs of consecutive items, longest first
    assert priority_batches([5, 50, 10], batch_size=4, max_tokens=60) == [[1], [2, 0]]


# ---------------------------------------------------------------- out of memory


class OutOfMemoryError(RuntimeError):
    """Named like ``torch.cuda.OutOfMemoryError``: recognised by name, torch not needed."""


class OomKeyword(KeywordBackend):
    """Raises ``error`` when a batch's padded tokens (pairs x longest) exceed ``cap``."""

    def __init__(self, cap: int, error: type[BaseException] = OutOfMemoryError) -> None:
        super().__init__(max_length=64)
        self.cap = cap
        self.error = error
        self.ooms = 0
        self.info = BackendInfo(micro_batching=False)

    def padded(self, pairs: Sequence[Pair]) -> int:
        spans = self.tokenizer.token_spans([q + " " + t for q, t in pairs])
        return len(pairs) * (max(len(s) for s in spans) + 3)

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        if self.padded(pairs) > self.cap:
            self.ooms += 1
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().score_pairs(pairs)


def test_is_out_of_memory_by_name_message_and_cause() -> None:
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    wrapped = BackendError("backend failed")
    wrapped.__cause__ = OutOfMemoryError("x")
    assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(RuntimeError("CUDA device-side assert"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only runtime errors by message


@pytest.mark.parametrize("shared", [False, True], ids=["direct", "micro-batched"])
def test_oom_halves_the_token_budget_and_keeps_it(
    shared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crossrank")
    backend = OomKeyword(cap=60)
    backend.info = BackendInfo(micro_batching=shared)
    rr = Reranker(backend, batch_size=32, cache=None)
    start_budget = rr.describe()["engine"]["batch_tokens_now"]
    out = rr.rerank("cat", MANY)
    want = Reranker(KeywordBackend(), cache=None).rerank("cat", MANY)
    assert [(r.index, r.score) for r in out] == [(r.index, r.score) for r in want]  # none lost
    budget = rr.describe()["engine"]["batch_tokens_now"]
    assert budget <= 60 < start_budget
    assert "out of accelerator memory" in caplog.text and f"now {budget}" in caplog.text
    ooms = backend.ooms
    assert ooms >= 1
    rr.rerank("dog", MANY)  # the working budget is remembered: no new out-of-memory error
    assert backend.ooms == ooms


def test_oom_with_the_real_torch_error_type() -> None:
    torch = need("torch")
    backend = OomKeyword(cap=60, error=torch.cuda.OutOfMemoryError)
    rr = Reranker(backend, batch_size=16, cache=None)
    assert len(rr.rerank("cat", MANY)) == len(MANY) and backend.ooms >= 1


def test_oom_on_a_single_pair_is_a_backend_error_or_passthrough() -> None:
    with pytest.raises(BackendError, match="single pair"):
        Reranker(OomKeyword(cap=3), cache=None).rerank("cat", TEXTS)
    rr = Reranker(OomKeyword(cap=3), cache=None, on_error="passthrough")
    out = rr.rerank("cat", TEXTS)
    assert out.unscored == 4 and [r.index for r in out] == [0, 1, 2, 3]
