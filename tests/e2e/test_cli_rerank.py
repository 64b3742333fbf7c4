"""The main job: `crossrank rerank` end to end, as a user runs it.

Bad input fails in well under a second, before anything is loaded (one line, exit 2); a
machine without the hub falls back to the reranker the checkout bundles."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"
CLI = [sys.executable, "-m", "rerank_core.cli", "rerank"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **OFFLINE, **(env or {})}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=full, timeout=timeout, cwd=ROOT
    )


def online_env(endpoint: str) -> dict[str, str]:
    """The environment of a machine that is not told it is offline, its hub at ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE}
    return {**env, "HF_ENDPOINT": endpoint}


def write_passages(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


SCURVY = [
    {"id": "a", "text": "Scurvy is caused by a lack of vitamin C."},
    {"id": "b", "text": "The Eiffel Tower is in Paris."},
    {"id": "c", "text": "Lemons prevent scurvy on long voyages."},
]


# ------------------------------------------------------------------ bad input, fast


def bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    not_json = tmp / "not.jsonl"
    not_json.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    no_text = tmp / "notext.jsonl"
    no_text.write_text('{"id": "1", "body": "x"}\n', encoding="utf-8")
    empty = tmp / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    a_file = tmp / "model.bin"
    a_file.write_bytes(b"\0")
    return [
        (["--top-n", "0"], "--top-n must be a positive int, got 0"),
        (["--candidates", "0"], "--candidates must be a positive int, got 0"),
        (["--precision", "int4"], "precision must be one of"),
        (["--overlap", "-1"], "window overlap must be"),
        (["--max-windows", "0"], "max_windows must be None or a positive int"),
        (["--overlap", "300", "--model", str(BUNDLED)], "--overlap 300 must be smaller"),
        (["--model", "/nonexistent/model"], "--model /nonexistent/model: no such directory"),
        (["--model", "models/no-such-model"], "--model models/no-such-model: no such directory"),
        (["--model", str(a_file)], "not a directory"),
        (["--model", str(tmp)], "not a model directory (it has no config.json)"),
        (["--passages", "/nonexistent.jsonl"], "--passages /nonexistent.jsonl: no such file"),
        (["--passages", str(tmp), "--query", "q"], "is a directory"),
        (["--passages", str(not_json), "--query", "q"], "line 2: not valid JSON"),
        (["--passages", str(no_text), "--query", "q"], "line 1: no 'text' field"),
        (["--passages", str(empty), "--query", "q"], "no passages"),
        (["--passages", str(empty)], "no passages"),
        (["--passages", str(write_passages(tmp / "ok.jsonl", SCURVY))], "--query is required"),
        (["--query", ""], "--query is empty"),
        (["--query", "   "], "--query is empty"),
        (["--backend", "nope"], "unknown backend 'nope'"),
        (["--backend", "cohere", "--precision", "int8"], "backend 'cohere' takes no option"),
    ]


def test_bad_input_fails_fast_with_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, message in bad_inputs(tmp_path):
        t0 = time.perf_counter()
        out = run(*args, timeout=60)
        took = time.perf_counter() - t0
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout == ""
        assert took < 5, (args, f"{took:.1f}s")  # interpreter start included; a busy machine


def test_bad_input_loads_no_model_library(tmp_path: Path) -> None:
    """Checked in the process itself: nothing heavy was imported when the error came."""
    code = (
        "import sys, json\n"
        "from rerank_core.cli import main\n"
        "codes = [main(['rerank', *a]) for a in json.loads(sys.argv[1])]\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers',"
        " 'onnxruntime', 'FlagEmbedding', 'bm25s') if m in sys.modules]\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy}))\n"
    )
    argv = [a for a, _ in bad_inputs(tmp_path)]
    env = {**os.environ, **OFFLINE}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argv)],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["codes"] == [2] * len(argv)
    assert got["heavy"] == []


def test_debug_shows_the_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rerank_core.cli", "--debug", "rerank", "--top-n", "0"],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" in out.stderr
    assert "--top-n must be a positive int" in out.stderr


# ------------------------------------------------------------------ the hub, offline


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def local_http(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server whose front page answers 200, as the hub's does."""

    def handler(*a: Any, **kw: Any) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_hub_probe(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, silent_port: int, local_http: str
) -> None:
    from rerank_core.commands import _hub

    for var in OFFLINE:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", local_http)
    assert _hub.offline_reason() is None
    monkeypatch.setenv("HF_ENDPOINT", local_http + "/no-such-page")
    assert _hub.offline_reason() == f"{local_http}/no-such-page answered HTTP 404"
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    t0 = time.perf_counter()
    reason = _hub.offline_reason()
    assert reason is not None and "cannot be reached" in reason
    assert time.perf_counter() - t0 < 2
    # a host that never answers: given up after the timeout, not after a minute of retries
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent_port}")
    t0 = time.perf_counter()
    reason = _hub.offline_reason(timeout=1.0)
    assert reason is not None and time.perf_counter() - t0 < 3
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _hub.offline_reason() == "HF_HUB_OFFLINE is set"


def test_model_paths_and_hub_ids_are_told_apart(tmp_path: Path) -> None:
    from rerank_core.commands import _hub

    assert not _hub.is_local_path("cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert not _hub.is_local_path("bert-base-uncased")
    assert _hub.is_local_path(str(tmp_path / "missing"))
    assert _hub.is_local_path("./x") and _hub.is_local_path("~/x") and _hub.is_local_path("a/b/c")
    (tmp_path / "models").mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _hub.is_local_path("models/absent")  # beside a models folder: a path
    finally:
        os.chdir(cwd)
    assert _hub.bundled_model(tmp_path) is None  # no weights there


def test_a_hub_model_offline_fails_fast_with_a_hint_that_works_outside_the_venv() -> None:
    t0 = time.perf_counter()
    out = run("--model", "cross-encoder/no-such-model-here", timeout=60)
    assert time.perf_counter() - t0 < 10  # no download retries
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "could not load model 'cross-encoder/no-such-model-here'" in out.stderr
    assert "not in the local cache" in out.stderr and "HF_HUB_OFFLINE is set" in out.stderr
    # the hint names the bundled model and a crossrank that runs without an activated venv
    assert f"rerank --model {BUNDLED}" in out.stderr
    assert f"{Path(sys.executable).parent}/crossrank" in out.stderr or sys.executable in out.stderr


# ------------------------------------------------------------------ real runs


@pytest.mark.model
def test_offline_demo_falls_back_to_the_bundled_reranker_and_says_so() -> None:
    out = run()
    assert out.returncode == 0, out.stderr
    notice = [line for line in out.stderr.splitlines() if "offline" in line]
    assert len(notice) == 1
    assert "HF_HUB_OFFLINE is set" in notice[0] and "bundled crossrank-minilm-l6" in notice[0]
    model_line = next(line for line in out.stdout.splitlines() if line.startswith("model: "))
    assert str(BUNDLED) in model_line
    assert "DL19 nDCG@10" in out.stdout  # the bundled model's measured quality, said
    assert "Before: BM25 top 20\n" in out.stdout
    before = out.stdout.split("Before:")[1].split("After:")[0].strip().splitlines()[1:]
    assert len(before) == 20  # "top 20" lists 20 rows
    after = out.stdout.split("After:")[1].strip().splitlines()[1:]
    assert len(after) == 5 and all("score=" in line and "(was #" in line for line in after)
    # ranking quality is measured over many queries in test_bundled_model.py


@pytest.mark.model
def test_an_unreachable_hub_is_found_in_seconds_without_being_told(closed_port: int) -> None:
    """No HF_HUB_OFFLINE: the probe finds the dead hub and the run goes on offline."""
    out = subprocess.run(
        [*CLI, "--top-n", "3", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=online_env(f"http://127.0.0.1:{closed_port}"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "cannot be reached" in out.stderr and "bundled crossrank-minilm-l6" in out.stderr
    data = json.loads(out.stdout)
    assert data["model"] == str(BUNDLED) and len(data["after"]) == 3


@pytest.mark.model
def test_more_candidates_than_shown_says_so() -> None:
    out = run("--model", str(BUNDLED), "--candidates", "30", "--top-n", "3")
    assert out.returncode == 0, out.stderr
    assert "Before: BM25 top 30, first 20 shown" in out.stdout
    assert "After: crossrank top 3 (30 passages" in out.stdout


@pytest.mark.model
def test_json_output_has_scores_in_order(tmp_path: Path) -> None:
    passages = write_passages(tmp_path / "p.jsonl", SCURVY)
    out = run(
        "--model", str(BUNDLED), "--passages", str(passages), "--query", "what causes scurvy",
        "--json", "--top-n", "3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    scores = [a["score"] for a in data["after"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert [a["id"] for a in data["after"]][-1] == "b"  # the Eiffel Tower is last


@pytest.mark.model
def test_precision_option_reaches_the_backend(minilm_path: Path, tmp_path: Path) -> None:
    rows = SCURVY[:2]
    passages = write_passages(tmp_path / "p.jsonl", rows)
    common = ["--model", str(minilm_path), "--passages", str(passages), "--query", "scurvy"]
    exact = run(*common, "--precision", "exact", "--json")
    assert exact.returncode == 0, exact.stderr
    # exact scores are CrossEncoder.predict's logits
    import sentence_transformers as st
    import torch

    ce = st.CrossEncoder(str(minilm_path), device="cpu")
    ref = ce.predict([("scurvy", r["text"]) for r in rows], activation_fn=torch.nn.Identity())
    got = {a["id"]: a["score"] for a in json.loads(exact.stdout)["after"]}
    assert got["a"] == pytest.approx(float(ref[0]), abs=1e-4)
    assert got["b"] == pytest.approx(float(ref[1]), abs=1e-4)
