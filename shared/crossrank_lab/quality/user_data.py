"""A user's own training data: one JSONL or CSV file instead of a BEIR folder.

Each row is either

- ``query``, ``text``, ``label``: a judged pair, ``label`` an integer grade (0 = not
  relevant; 1 or more relevant, higher is better), or
- ``query``, ``positive``, ``negatives``: a relevant text and the texts that are not;
  in JSONL ``negatives`` is a list of strings, in CSV one cell with the texts separated
  by ``||`` (:data:`CSV_SEPARATOR`; it may be empty).

A CSV file needs a header row naming its columns; other columns are ignored, and so are
other keys of a JSONL object. Rows are grouped by query (the exact query string), in
file order; every query needs at least one relevant text. Everything is checked before
any model loads, and a problem raises :class:`UserDataError` naming file, line and column.

:func:`user_source` turns the file into a training source: a small corpus of all its
texts (so BM25 or the bi-encoder can mine more negatives from the other queries' texts)
whose lists take the query's own negatives first.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import Dataset, DatasetError, Doc

__all__ = [
    "CSV_SEPARATOR",
    "USER_SUFFIXES",
    "UserDataError",
    "UserQuery",
    "is_user_file",
    "read_user_file",
    "user_dataset",
]

CSV_SEPARATOR = "||"
"""Separates the texts of a CSV ``negatives`` cell."""

USER_SUFFIXES = (".jsonl", ".csv")

_LABELLED = ("query", "text", "label")
_PAIRED = ("query", "positive", "negatives")


class UserDataError(DatasetError):
    """A row of a user training file is missing a column or holds a bad value."""

    def __init__(self, path: Path, line: int, column: str | None, problem: str) -> None:
        where = f"{path}:{line}" + (f": column {column!r}" if column else "")
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem


@dataclass(slots=True)
class UserQuery:
    """One query of a user file: its texts with their grades (0 = a negative), in order
    of appearance, and the line where the query first appears."""

    query: str
    line: int
    grades: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, grade: int) -> None:
        # the same text twice: the higher grade wins
        self.grades[text] = max(grade, self.grades.get(text, grade))


def is_user_file(spec: str) -> bool:
    """Whether a ``--train`` value names a JSONL or CSV file (not a BEIR folder)."""
    path = Path(spec)
    return path.suffix.lower() in USER_SUFFIXES and not path.is_dir()


def _text(path: Path, line: int, column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UserDataError(path, line, column, f"must be text, got {type(value).__name__}")
    if not value.strip():
        raise UserDataError(path, line, column, "is empty")
    return value.strip()


def _label(path: Path, line: int, value: Any) -> int:
    number: float
    if isinstance(value, (int, float)):  # JSON true/false count as 1/0
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise UserDataError(
                path, line, "label", f"must be an integer grade (0, 1, 2, ...), got {value!r}"
            ) from None
    else:
        raise UserDataError(path, line, "label", f"must be an integer grade, got {value!r}")
    if number != number or number < 0 or number != int(number):
        raise UserDataError(
            path, line, "label", f"must be an integer grade >= 0 (0 = not relevant), got {value!r}"
        )
    return int(number)


def _negatives(path: Path, line: int, value: Any, *, csv_cell: bool) -> list[str]:
    if csv_cell:
        if not isinstance(value, str):
            raise UserDataError(path, line, "negatives", "is missing")
        parts = [p.strip() for p in value.split(CSV_SEPARATOR)] if value.strip() else []
        for i, p in enumerate(parts, 1):
            if not p:
                msg = f"negative {i} is empty (texts are separated by {CSV_SEPARATOR!r})"
                raise UserDataError(path, line, "negatives", msg)
        return parts
    if not isinstance(value, list):
        got = type(value).__name__
        raise UserDataError(path, line, "negatives", f"must be a list of texts, got {got}")
    out: list[str] = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, str) or not item.strip():
            raise UserDataError(path, line, "negatives", f"item {i} must be a non-empty text")
        out.append(item.strip())
    return out


def _rows(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """(line, row) pairs and whether the file is CSV."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"training file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read training file {path}: {exc}") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(raw.splitlines(keepends=True))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if not header:
            raise UserDataError(
                path, 1, None, "no header row (query,text,label or query,positive,negatives)"
            )
        reader.fieldnames = header
        for row in reader:
            if None in row:  # more cells than the header names
                raise UserDataError(path, reader.line_num, None, "more cells than columns")
            rows.append((reader.line_num, dict(row)))
        return rows, True
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserDataError(path, n, None, f"not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserDataError(path, n, None, "expected a JSON object")
        rows.append((n, {str(k).strip().lower(): v for k, v in obj.items()}))
    return rows, False


def read_user_file(path: str | Path) -> list[UserQuery]:
    """The file's rows grouped by query, checked (see the module docstring)."""
    path = Path(path)
    rows, is_csv = _rows(path)
    if not rows:
        raise UserDataError(path, 1, None, "no rows")
    queries: dict[str, UserQuery] = {}
    for line, row in rows:
        need: tuple[str, ...]
        if "label" in row or "text" in row:
            need = _LABELLED
        elif "positive" in row or "negatives" in row:
            need = _PAIRED
        else:
            need = ()
        missing = [c for c in need if c not in row or row[c] is None]
        if not need or missing:
            have = ", ".join(sorted(row)) or "none"
            raise UserDataError(
                path,
                line,
                missing[0] if missing else None,
                f"missing column(s) {', '.join(missing) if missing else 'query/text/label'}: "
                f"a row needs query,text,label or query,positive,negatives (has {have})",
            )
        query = _text(path, line, "query", row["query"])
        entry = queries.setdefault(query, UserQuery(query, line))
        if need == _LABELLED:
            entry.add(_text(path, line, "text", row["text"]), _label(path, line, row["label"]))
        else:
            entry.add(_text(path, line, "positive", row["positive"]), 1)
            for neg in _negatives(path, line, row["negatives"], csv_cell=is_csv):
                entry.add(neg, 0)
    for q in queries.values():
        if not any(g > 0 for g in q.grades.values()):
            raise UserDataError(
                path,
                q.line,
                "label",
                f"query {q.query[:60]!r} has no relevant text (label >= 1 or a positive)",
            )
    return list(queries.values())


def user_dataset(path: str | Path) -> Dataset:
    """The file as a :class:`~.data.Dataset`: corpus ``d1, d2, ...`` (each distinct text),
    queries ``q1, q2, ...`` and their grades as qrels (negatives graded 0)."""
    path = Path(path)
    grouped = read_user_file(path)
    doc_ids: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, q in enumerate(grouped, 1):
        qid = f"q{n}"
        queries[qid] = q.query
        judged: dict[str, int] = {}
        for text, grade in q.grades.items():
            did = doc_ids.setdefault(text, f"d{len(doc_ids) + 1}")
            judged[did] = grade
        qrels[qid] = judged
    corpus = {did: Doc("", text) for text, did in doc_ids.items()}
    return Dataset(path.stem, path, "user", corpus, queries, qrels)
