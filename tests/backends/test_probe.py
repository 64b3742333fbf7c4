"""The packaged fidelity probe: its shape, its determinism, its validation of a corrupt
file, and that loading it imports neither torch nor numpy."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources
from typing import Any

import pytest
from rerank_core.backends.runtime import probe as probe_module
from rerank_core.backends.runtime.probe import (
    PASSAGES_PER_GROUP,
    Probe,
    ProbeDataError,
    load_probe,
    parse_probe,
)
from rerank_core.errors import CrossrankError

GROUPS = 32
LONG = 16


def raw_probe() -> dict[str, Any]:
    path = resources.files(probe_module.__package__) / "probe_data" / "fidelity_probe.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def words(text: str) -> int:
    return len(text.split())


def test_counts_and_order() -> None:
    probe = load_probe()
    assert len(probe.groups) == GROUPS
    assert all(len(passages) == PASSAGES_PER_GROUP for _, passages in probe.groups)
    assert len(probe.long) == LONG
    pairs = probe.pairs()
    assert len(pairs) == GROUPS * PASSAGES_PER_GROUP + LONG == 400
    # groups first, in file order, then the long pairs
    query, passages = probe.groups[1]
    assert pairs[PASSAGES_PER_GROUP : 2 * PASSAGES_PER_GROUP] == [(query, p) for p in passages]
    assert pairs[-LONG:] == list(probe.long)


def test_group_slices_cover_the_group_pairs() -> None:
    probe = load_probe()
    slices = probe.group_slices()
    pairs = probe.pairs()
    assert len(slices) == GROUPS
    assert slices[0].start == 0
    assert slices[-1].stop == GROUPS * PASSAGES_PER_GROUP
    for (query, passages), part in zip(probe.groups, slices, strict=True):
        assert pairs[part] == [(query, p) for p in passages]


def test_passage_lengths() -> None:
    probe = load_probe()
    group_lengths = [words(p) for _, passages in probe.groups for p in passages]
    assert min(group_lengths) >= 15
    assert max(group_lengths) <= 130
    for query, passage in probe.long:
        assert 280 <= words(passage) <= 420, query


def test_no_duplicates() -> None:
    probe = load_probe()
    passages = [p for _, group in probe.groups for p in group] + [p for _, p in probe.long]
    assert len(set(passages)) == len(passages)
    queries = [q for q, _ in probe.groups] + [q for q, _ in probe.long]
    assert len(set(queries)) == len(queries)


def test_file_is_small_utf8_with_non_ascii_text() -> None:
    path = resources.files(probe_module.__package__) / "probe_data" / "fidelity_probe.json"
    data = path.read_bytes()
    assert len(data) <= 150_000
    text = data.decode("utf-8")
    assert "°C" in text and "µ" in text and "–" in text


def test_deterministic() -> None:
    first = load_probe()
    assert load_probe() is first  # cached
    fresh = parse_probe(raw_probe())
    assert fresh == first
    assert fresh.pairs() == first.pairs()
    assert isinstance(first, Probe)
    with pytest.raises(AttributeError):
        first.groups = ()  # type: ignore[misc]


def test_parse_does_not_mutate_its_input() -> None:
    raw = raw_probe()
    before = copy.deepcopy(raw)
    parse_probe(raw)
    assert raw == before


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.pop("long"), "lacks long"),
        (lambda d: d["groups"][3]["passages"].pop(), "groups[3] has 11 passages, expected 12"),
        (lambda d: d["groups"][0]["passages"].__setitem__(5, "  "), r"groups[0].passages[5]"),
        (lambda d: d["groups"][2].__setitem__("query", 7), "groups[2].query"),
        (lambda d: d["long"][4].__setitem__("passage", ""), "long[4].passage"),
        (lambda d: d.__setitem__("groups", {}), "groups must be a list"),
        (lambda d: d.__setitem__("groups", []), "no groups"),
    ],
)
def test_corrupt_data_is_a_clear_runtime_error(corrupt: Any, message: str) -> None:
    raw = raw_probe()
    corrupt(raw)
    with pytest.raises(ProbeDataError) as info:
        parse_probe(raw)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, CrossrankError)
    assert message in str(info.value)
    assert "fidelity_probe.json" in str(info.value)


def test_import_and_load_do_not_import_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        "import rerank_core.backends.runtime.probe as p\n"
        "probe = p.load_probe()\n"
        "assert len(probe.pairs()) == 400\n"
        "print(sorted(m for m in ('torch', 'numpy', 'onnxruntime') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
