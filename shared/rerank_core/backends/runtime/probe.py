"""The fixed fidelity probe: (query, passage) pairs on which a fast ONNX variant of a
model is compared with fp32 before it is adopted.

The data ships with the package (``probe_data/fidelity_probe.json``) and is static:
32 groups of one query and 12 passages in a fixed graded order (3 relevant, 3 partially
relevant, 3 lexical distractors, 3 off-topic), so each group has a realistic spread of
scores, plus 16 long pairs (280–420 words) that exercise long windows. Loading is
deterministic and imports neither torch nor numpy.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ...errors import CrossrankError

__all__ = [
    "PASSAGES_PER_GROUP",
    "PROBE_VERSION",
    "Probe",
    "ProbeDataError",
    "load_probe",
    "parse_probe",
]

PROBE_VERSION = 1
PASSAGES_PER_GROUP = 12
_DATA_DIR = "probe_data"
_DATA_FILE = "fidelity_probe.json"


class ProbeDataError(CrossrankError, RuntimeError):
    """The packaged probe file is missing or corrupt (a broken installation)."""


@dataclass(frozen=True)
class Probe:
    """The probe pairs: ``groups`` is ``((query, passages), ...)``, ``long`` is
    ``((query, passage), ...)``."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    long: tuple[tuple[str, str], ...]

    def pairs(self) -> list[tuple[str, str]]:
        """Every group pair in order (group by group, passages in file order), then the
        long pairs."""
        out = [(query, passage) for query, passages in self.groups for passage in passages]
        out.extend(self.long)
        return out

    def group_slices(self) -> list[slice]:
        """For each group, the slice of :meth:`pairs` holding its pairs."""
        slices: list[slice] = []
        start = 0
        for _, passages in self.groups:
            slices.append(slice(start, start + len(passages)))
            start += len(passages)
        return slices


def _where() -> str:
    return f"{__package__}/{_DATA_DIR}/{_DATA_FILE}"


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProbeDataError(
            f"corrupt fidelity probe {_where()}: {what} must be a non-empty string, "
            f"got {value!r:.60}"
        )
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProbeDataError(
            f"corrupt fidelity probe {_where()}: {what} must be a list, got {type(value).__name__}"
        )
    return value


def _object(value: Any, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProbeDataError(
            f"corrupt fidelity probe {_where()}: {what} must be an object, "
            f"got {type(value).__name__}"
        )
    missing = [key for key in keys if key not in value]
    if missing:
        raise ProbeDataError(
            f"corrupt fidelity probe {_where()}: {what} lacks {', '.join(missing)}"
        )
    return value


def parse_probe(raw: Any) -> Probe:
    """Validate decoded probe JSON and build a :class:`Probe`; raises
    :class:`ProbeDataError` naming the first problem."""
    doc = _object(raw, "the document", ("version", "groups", "long"))
    if doc["version"] != PROBE_VERSION:
        raise ProbeDataError(
            f"corrupt fidelity probe {_where()}: version {doc['version']!r}, "
            f"this crossrank reads version {PROBE_VERSION}"
        )
    groups: list[tuple[str, tuple[str, ...]]] = []
    raw_groups = _list(doc["groups"], "groups")
    if not raw_groups:
        raise ProbeDataError(f"corrupt fidelity probe {_where()}: no groups")
    for i, item in enumerate(raw_groups):
        group = _object(item, f"groups[{i}]", ("query", "passages"))
        query = _text(group["query"], f"groups[{i}].query")
        passages = _list(group["passages"], f"groups[{i}].passages")
        if len(passages) != PASSAGES_PER_GROUP:
            raise ProbeDataError(
                f"corrupt fidelity probe {_where()}: groups[{i}] has {len(passages)} "
                f"passages, expected {PASSAGES_PER_GROUP}"
            )
        texts = tuple(
            _text(passage, f"groups[{i}].passages[{j}]") for j, passage in enumerate(passages)
        )
        groups.append((query, texts))
    long: list[tuple[str, str]] = []
    for i, item in enumerate(_list(doc["long"], "long")):
        pair = _object(item, f"long[{i}]", ("query", "passage"))
        long.append(
            (_text(pair["query"], f"long[{i}].query"), _text(pair["passage"], f"long[{i}].passage"))
        )
    return Probe(groups=tuple(groups), long=tuple(long))


@functools.lru_cache(maxsize=1)
def load_probe() -> Probe:
    """The packaged probe, read and validated once per process."""
    resource = resources.files(__package__) / _DATA_DIR / _DATA_FILE
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeDataError(f"cannot read the fidelity probe {_where()}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeDataError(f"corrupt fidelity probe {_where()}: invalid JSON ({exc})") from exc
    return parse_probe(raw)
