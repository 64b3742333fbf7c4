"""BGE backend speed on the CPU: FlagEmbedding's ``FlagReranker.compute_score`` against
crossrank's ``bge`` backend on the torch runtime, the default (ONNX Runtime fp32) and
``precision="int8"``, on the same model and inputs, in one process.

The hub is out of reach here, so the model is ``BAAI/bge-reranker-base``'s architecture
(``XLMRobertaForSequenceClassification``: 12 layers, hidden 768, 12 heads, FFN 3072,
250,002-token embedding table, one label) with seeded random weights, and an XLM-R-style
Unigram tokenizer trained on the passages themselves (``<s> q </s></s> d </s>``). Speed
and memory depend on the architecture and the token counts, not on the weights; the
scores of such a model mean nothing, so only their agreement with crossrank's torch fp32
scores is reported (max |Δ logit|), never a ranking quality.

    python -m benchmarks.bge_speed [--queries 2] [--candidates 50] [--rounds 3]

Writes ``benchmarks/results/bge-speed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from crossrank_lab.bench.common import (
    bge_shaped_model,
    cache_dir,
    load_inputs,
    machine_facts,
    peak_rss_mb,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", type=Path, default=None, help="TREC DL 2019 passage folder")
    p.add_argument("--model-dir", type=Path, default=None, help="where to build the model")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--probe", help=argparse.SUPPRESS)  # internal: peak memory of one config
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import numpy as np
    from FlagEmbedding import FlagReranker
    from rerank_core import Reranker

    inputs = load_inputs(args.data, args.queries, args.candidates)
    model_dir = bge_shaped_model(args.model_dir or cache_dir() / "bge-base-shaped", inputs.filler)
    jobs = inputs.jobs

    def make(name: str) -> Any:
        if name == "flag":
            fr = FlagReranker(str(model_dir), use_fp16=False, devices=["cpu"])
            return lambda q, ts: fr.compute_score([[q, t] for t in ts])
        if name == "llamaindex":
            from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
            from llama_index.postprocessor.flag_embedding_reranker import FlagEmbeddingReranker

            li = FlagEmbeddingReranker(model=str(model_dir), top_n=10_000)

            def li_run(q: str, ts: list[str]) -> list[float]:
                nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(ts)]
                out = li.postprocess_nodes(nodes, query_bundle=QueryBundle(q))
                by_id = {n.node.node_id: float(n.score or 0.0) for n in out}
                return [by_id[str(i)] for i in range(len(ts))]

            return li_run
        options = {
            "torch": {"runtime": "torch"},
            "default": {},
            "int8": {"precision": "int8"},
        }[name]
        rr = Reranker("bge", model=str(model_dir), cache=None, **options)
        return rr.score

    names = ["flag", "torch", "default", "int8"]
    try:  # the LlamaIndex peer, when its package is installed (the dev group has it)
        import llama_index.postprocessor.flag_embedding_reranker  # noqa: F401

        names.insert(1, "llamaindex")
    except ImportError:
        pass
    labels = {
        "flag": "FlagEmbedding FlagReranker.compute_score (defaults)",
        "llamaindex": "LlamaIndex FlagEmbeddingReranker",
        "torch": "crossrank bge, runtime='torch' (fp32, padded batches)",
        "default": "crossrank bge default (ONNX Runtime fp32)",
        "int8": "crossrank bge precision='int8' (ONNX Runtime)",
    }
    if args.probe:
        fn = make(args.probe)
        for q, ts in jobs:
            fn(q, ts)
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return 0

    t0 = time.perf_counter()
    fns = {n: make(n) for n in names}  # exports happen here, once (cached on disk)
    print(f"loaded in {time.perf_counter() - t0:.0f} s", flush=True)
    scores = {
        n: np.concatenate([np.asarray(fns[n](q, ts), dtype=float) for q, ts in jobs]) for n in names
    }
    # the reference is crossrank's torch fp32 run: it encodes each pair as one text pair;
    # compute_score (under transformers 5) decodes its token ids back to text and encodes
    # that again, which changes the tokens of text with unknown characters
    diffs = {n: float(np.max(np.abs(scores[n] - scores["torch"]))) for n in names}
    peer_off = int(np.sum(np.abs(scores["flag"] - scores["torch"]) > 1e-4))
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(model_dir))
    with_unk = sum(
        hf_tok.unk_token_id in ids
        for q, ts in jobs
        for ids in hf_tok([q] * len(ts), ts, truncation="only_second")["input_ids"]
    )
    pairs = sum(len(ts) for _, ts in jobs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for j, (q, ts) in enumerate(jobs):
            shift = (r + j) % len(names)
            for n in names[shift:] + names[:shift]:
                t = time.perf_counter()
                fns[n](q, ts)
                times[n].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    mem: dict[str, float] = {}
    for n in names:
        cmd = [sys.executable, "-m", "benchmarks.bge_speed", "--probe", n]
        cmd += ["--model-dir", str(model_dir)]
        cmd += ["--queries", str(args.queries), "--candidates", str(args.candidates)]
        if args.data:
            cmd += ["--data", str(args.data)]
        import subprocess

        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        mem[n] = json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    tok = fns["default"].__self__.backend.tokenizer
    sizes = [
        len(tok.token_spans([q])[0]) + len(s) + tok.pair_special_tokens
        for q, ts in jobs
        for s in tok.token_spans(ts)
    ]
    rate = {n: len(times[n]) * (pairs / len(jobs)) / sum(times[n]) for n in names}
    ratio = {
        n: statistics.median(f / o for f, o in zip(times["flag"], times[n], strict=True))
        for n in names
    }
    info = machine_facts(fns["default"].__self__.describe())
    lines = [
        "# BGE backend speed (bge-reranker-base architecture, CPU)",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores ({info['flags']})",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- inputs: {inputs.source}; mean {statistics.fmean(sizes):.0f} tokens per pair",
        "- model: XLMRobertaForSequenceClassification shaped like BAAI/bge-reranker-base, "
        "seeded random weights (speed only)",
        f"- command: `python -m benchmarks.bge_speed --queries {args.queries} "
        f"--candidates {args.candidates} --rounds {args.rounds}`",
        "",
        "| configuration | pairs/s | × compute_score | peak RSS MB "
        "| max abs Δ logit vs crossrank torch fp32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in names:
        diff = "—" if n == "torch" else f"{diffs[n]:.1e}"
        lines.append(f"| {labels[n]} | {rate[n]:.1f} | {ratio[n]:.2f}× | {mem[n]:,.0f} | {diff} |")
    lines += [
        "",
        f"compute_score differs from crossrank's fp32 scores on {peer_off} of "
        f"{len(scores['flag'])} pairs by more than 1e-4: under transformers 5 FlagEmbedding "
        "turns its token ids back into text and tokenizes that again, which is not lossless "
        "where the text has characters the vocabulary lacks (this toy tokenizer's is small; "
        f"crossrank encodes each pair once); {with_unk} pairs hold an unknown token. On the "
        "other pairs they agree within fp32 rounding.",
    ]
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bge-speed.md").write_text(md, encoding="utf-8")
    report = {
        "pairs_per_s": rate,
        "ratio": ratio,
        "peak_rss_mb": mem,
        "max_abs_diff_vs_torch_fp32": diffs,
        "compute_score_pairs_off_by_1e-4": peer_off,
        "pairs_with_unknown_tokens": with_unk,
    }
    (args.out / "bge-speed.json").write_text(json.dumps(report, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
