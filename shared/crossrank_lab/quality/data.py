"""BEIR-layout datasets and TREC run files.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``).
A TREC run file has one ``qid Q0 docid rank score tag`` line per retrieved document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rerank_core.errors import InputError

__all__ = [
    "Dataset",
    "DatasetError",
    "Doc",
    "Qrels",
    "Run",
    "load_beir",
    "read_qrels",
    "read_trec_run",
    "sort_run",
    "write_trec_run",
]

Qrels = dict[str, dict[str, int]]
"""query id → {doc id: relevance grade}."""

Run = dict[str, list[tuple[str, float]]]
"""query id → [(doc id, score), ...], best first."""


class DatasetError(InputError):
    """A dataset folder or run file is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Doc:
    title: str
    text: str

    @property
    def body(self) -> str:
        """What a reranker reads: ``"title text"`` (BEIR's convention), or just the text."""
        title = self.title.strip()
        return f"{title} {self.text}" if title else self.text


@dataclass(slots=True)
class Dataset:
    """One split of a BEIR folder. ``queries`` holds only the queries judged in ``qrels``."""

    name: str
    path: Path
    split: str
    corpus: dict[str, Doc]
    queries: dict[str, str]
    qrels: Qrels
    runs: dict[str, Path] = field(default_factory=dict)

    @property
    def max_grade(self) -> int:
        return max((g for judged in self.qrels.values() for g in judged.values()), default=0)

    def default_rel_level(self) -> int:
        """Grade from which binary metrics count a document relevant.

        TREC DL grades passages 0–3 and counts grade ≥ 2 relevant for MRR, recall and MAP;
        every other BEIR dataset (binary, or 0–2 like DBpedia-Entity) counts grade ≥ 1.
        """
        return 2 if self.max_grade >= 3 else 1

    def body(self, doc_id: str) -> str:
        return self.corpus[doc_id].body

    def subset(self, query_ids: Iterable[str]) -> Dataset:
        """The same dataset restricted to ``query_ids`` (in the given order)."""
        keep = [q for q in query_ids if q in self.queries]
        return Dataset(
            name=self.name,
            path=self.path,
            split=self.split,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
            runs=dict(self.runs),
        )


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    try:
        f = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise DatasetError(f"{path}:{n}: expected an object with an '_id' field")
            yield row


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR qrels TSV (with or without the header line)."""
    qrels: Qrels = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read qrels {path}: {exc.strerror or exc}") from exc
    for n, line in enumerate(lines, 1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not parts or not line.strip():
            continue
        if n == 1 and parts[0] == "query-id":
            continue
        if len(parts) == 4:  # TREC qrels: qid iter docid grade
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise DatasetError(f"{path}:{n}: expected 'query-id corpus-id score', got {line!r}")
        try:
            grade = int(float(parts[2]))
        except ValueError:
            raise DatasetError(f"{path}:{n}: relevance {parts[2]!r} is not a number") from None
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def load_beir(
    path: str | Path,
    split: str = "test",
    *,
    max_queries: int | None = None,
    query_ids: Iterable[str] | None = None,
) -> Dataset:
    """Load one split of a BEIR-layout folder.

    Queries without judgments in ``qrels/<split>.tsv`` are dropped. ``max_queries``
    keeps the first N judged queries in ``queries.jsonl`` order; ``query_ids`` keeps
    exactly those. TREC run files under ``runs/`` are listed in ``Dataset.runs``.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(
            f"{root} has no qrels/{split}.tsv (splits present: {', '.join(have) or 'none'})"
        )
    qrels = read_qrels(qrels_path)
    queries_all: dict[str, str] = {}
    for row in _jsonl(root / "queries.jsonl"):
        queries_all[str(row["_id"])] = str(row.get("text") or "")
    wanted = list(query_ids) if query_ids is not None else None
    order = [q for q in (wanted if wanted is not None else queries_all) if q in qrels]
    unknown = [q for q in qrels if q not in queries_all]
    if unknown:
        raise DatasetError(
            f"{qrels_path}: {len(unknown)} judged query ids are not in queries.jsonl "
            f"(first: {unknown[0]!r})"
        )
    if max_queries is not None:
        order = order[:max_queries]
    if not order:
        raise DatasetError(f"{root}: no judged queries in split {split!r}")
    corpus: dict[str, Doc] = {}
    for row in _jsonl(root / "corpus.jsonl"):
        corpus[str(row["_id"])] = Doc(str(row.get("title") or ""), str(row.get("text") or ""))
    if not corpus:
        raise DatasetError(f"{root}/corpus.jsonl is empty")
    runs = {p.stem: p for p in sorted((root / "runs").glob("*.trec"))}
    return Dataset(
        name=root.name,
        path=root,
        split=split,
        corpus=corpus,
        queries={q: queries_all[q] for q in order},
        qrels={q: qrels[q] for q in order},
        runs=runs,
    )


def sort_run(run: Mapping[str, Iterable[tuple[str, float]]]) -> Run:
    """Each query's documents best first, ties broken like trec_eval (doc id, descending)."""
    out: Run = {}
    for qid, docs in run.items():
        out[qid] = sorted(docs, key=lambda d: (d[1], d[0]), reverse=True)
    return out


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``), each query best first."""
    p = Path(path)
    raw: dict[str, dict[str, float]] = {}
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read run file {p}: {exc.strerror or exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise DatasetError(f"{p}:{n}: expected 'qid Q0 docid rank score tag', got {line!r}")
        try:
            score = float(parts[4])
        except ValueError:
            raise DatasetError(f"{p}:{n}: score {parts[4]!r} is not a number") from None
        raw.setdefault(parts[0], {})[parts[2]] = score
    if not raw:
        raise DatasetError(f"run file {p} is empty")
    return sort_run({q: list(d.items()) for q, d in raw.items()})


def write_trec_run(run: Mapping[str, list[tuple[str, float]]], path: str | Path, tag: str) -> None:
    """Write a run (each query best first) as a TREC run file."""
    with Path(path).open("w", encoding="utf-8") as f:
        for qid, docs in run.items():
            for rank, (doc, score) in enumerate(docs, 1):
                f.write(f"{qid} Q0 {doc} {rank} {score!r} {tag}\n")
