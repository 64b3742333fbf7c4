"""The bounded ONNX export cache and ``crossrank cache info`` / ``clear``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rerank_core.backends.runtime import export_cache


def _fake_export(root: Path, digest: str, mb: float, used: int, variant: str | None) -> Path:
    d = root / "onnx" / digest
    d.mkdir(parents=True)
    (d / "model.fp32.onnx").write_bytes(b"m")
    (d / "model.fp32.onnx.data").write_bytes(b"\0" * int(mb * 1_000_000))
    (d / "meta.json").write_text(json.dumps({"name_or_path": f"models/{digest}"}))
    (d / "guard.abcdef012345.json").write_text(json.dumps({"variant": variant}))
    os.utime(d, (used, used))
    return d


def test_entries_are_listed_most_recent_first(tmp_path: Path) -> None:
    _fake_export(tmp_path, "aaa", 0.5, 1_000, None)
    _fake_export(tmp_path, "bbb", 0.25, 2_000, "int8-b32")
    found = export_cache.entries(tmp_path)
    assert [e.digest for e in found] == ["bbb", "aaa"]
    assert found[0].verdicts == {"abcdef012345": "int8-b32"}
    assert found[1].verdicts == {"abcdef012345": "fp32"}
    assert found[0].model == "models/bbb" and found[0].files == ("model.fp32.onnx",)
    assert 250_000 < found[0].bytes < 260_000
    assert export_cache.entries(tmp_path / "nothing") == []


def test_prune_evicts_least_recently_used_by_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        _fake_export(tmp_path, f"d{i}", 0.4, 1_000 + i, None)  # d4 is the most recent
    monkeypatch.setenv("CROSSRANK_CACHE_MAX_MB", "1")  # room for two of 0.4 MB
    keep = tmp_path / "onnx" / "d0"  # the one just used stays even though it is the oldest
    evicted = export_cache.prune(tmp_path, keep=keep)
    assert sorted(evicted) == ["d1", "d2", "d3"]
    assert sorted(e.digest for e in export_cache.entries(tmp_path)) == ["d0", "d4"]


def test_prune_bounds_entries_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(4):
        _fake_export(tmp_path, f"d{i}", 0.01, 1_000 + i, None)
    monkeypatch.setenv("CROSSRANK_ONNX_CACHE_ENTRIES", "2")
    export_cache.prune(tmp_path)
    assert sorted(e.digest for e in export_cache.entries(tmp_path)) == ["d2", "d3"]


def test_a_bound_that_is_not_a_positive_number_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CROSSRANK_CACHE_MAX_MB", "lots")
    monkeypatch.setenv("CROSSRANK_ONNX_CACHE_ENTRIES", "0")
    assert export_cache.limits() == (
        export_cache.DEFAULT_MAX_ENTRIES,
        export_cache.DEFAULT_MAX_MB * 1_000_000,
    )


def test_clear_by_prefix_and_all(tmp_path: Path) -> None:
    _fake_export(tmp_path, "abc123", 0.01, 1_000, None)
    _fake_export(tmp_path, "abd456", 0.01, 2_000, None)
    with pytest.raises(KeyError, match="2 exports"):
        export_cache.clear(tmp_path, ["ab"])
    with pytest.raises(KeyError, match="no export"):
        export_cache.clear(tmp_path, ["zzz"])
    assert [e.digest for e in export_cache.clear(tmp_path, ["abc"])] == ["abc123"]
    assert [e.digest for e in export_cache.clear(tmp_path)] == ["abd456"]
    assert export_cache.entries(tmp_path) == []


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CROSSRANK_CACHE_DIR=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "rerank_core.cli", "cache", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_info_and_clear(tmp_path: Path) -> None:
    _fake_export(tmp_path, "abc123", 0.5, 1_000, "int8-b32")
    info = _cli("info", cache=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "1 export(s)" in info.stdout and "abc123" in info.stdout
    assert "int8-b32" in info.stdout and "models/abc123" in info.stdout
    doc = json.loads(_cli("info", "--json", cache=tmp_path).stdout)
    assert doc["entries"][0]["digest"] == "abc123" and doc["max_entries"] >= 1
    bad = _cli("clear", "nope", cache=tmp_path)
    assert bad.returncode == 2 and "'nope' matches no export" in bad.stderr
    cleared = _cli("clear", cache=tmp_path)
    assert cleared.returncode == 0 and "removed 1 export(s)" in cleared.stdout
    assert not (tmp_path / "onnx" / "abc123").exists()
    assert "torch" not in _cli("info", cache=tmp_path).stderr
