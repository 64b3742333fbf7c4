"""The examples run end to end (as users run them: a subprocess per script, offline) with
the reranker the repository bundles, ``models/crossrank-minilm-l6`` — a trained model, so
the reranked order is checked for quality, not only for shape — and the long-documents
example's logic holds with a transparent test backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"

RETRIEVED = re.compile(r"^\s*\d+\. ([* ]) cosine=\s*(-?[\d.]+)\s+\[(\w+)\]", re.M)
RERANKED = re.compile(r"^\s*\d+\. ([* ]) score=\s*(-?[\d.]+)\s+\(was #(\d+)\s*\) \[(\w+)\]", re.M)
LONG_ROW = re.compile(
    r"^\s*\d+\.\s+([A-H])\s+(-?[\d.]+)\s+(\d+)( \(truncated\))?\s+(\d+)–(\d+)\s+(yes|no)$", re.M
)


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: int = 420
) -> subprocess.CompletedProcess[str]:
    ours = ("CROSSRANK_MODEL", "CROSSRANK_EMBED_MODEL")  # the examples' own, set per test
    inherited = {k: v for k, v in os.environ.items() if k not in ours}
    full_env = {
        **inherited,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
    )


def section(out: str, title: str) -> str:
    """The lines of ``out`` from the line starting with ``title`` to the next blank line."""
    start = out.index(title)
    end = out.find("\n\n", start)
    return out[start : end if end != -1 else len(out)]


@pytest.mark.model
def test_llamaindex_query_engine_example() -> None:
    """No --model and no hub: the example says so and uses the bundled reranker."""
    done = run_example(
        "llamaindex_query_engine.py", "--limit", "40", "--candidates", "10", "--top-n", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HF_HUB_OFFLINE is set): using the bundled crossrank-minilm-l6" in done.stderr
    out = done.stdout
    assert "reranker: " in out and str(BUNDLED) in out.split("reranker: ")[1].splitlines()[0]
    indexed = re.search(r"indexed (\d+) passages", out)
    assert indexed is not None and int(indexed.group(1)) >= 40  # + the claim's relevant ones
    retrieved = RETRIEVED.findall(section(out, "Retrieved: vector search top 10"))
    reranked = RERANKED.findall(section(out, "Reranked: crossrank top 3"))
    assert len(retrieved) == 10 and len(reranked) == 3
    ids = [r[2] for r in retrieved]
    assert len(set(ids)) == 10
    # the trained bi-encoder finds the claim's judged-relevant abstracts
    assert any(mark == "*" for mark, *_ in retrieved)
    scores = [float(r[1]) for r in reranked]
    assert scores == sorted(scores, reverse=True)
    for _mark, _score, was, doc_id in reranked:
        assert ids[int(was) - 1] == doc_id  # "was #k" points at the right retrieved passage
    assert reranked[0][0] == "*"  # a trained reranker: a judged-relevant abstract first
    assert "async query: same top 3: yes; pairs scored again: 0" in out


@pytest.mark.model
def test_langchain_retriever_example() -> None:
    done = run_example(
        "langchain_retriever.py", "--limit", "40", "--candidates", "10", "--claim", "7",
        env={"CROSSRANK_MODEL": str(BUNDLED)},  # the model from the environment
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bundled" not in done.stderr  # a model was given: no fallback notice
    out = done.stdout
    assert "query: ADAR1 binds to Dicer to cleave pre-miRNA." in out
    assert str(BUNDLED) in out
    retrieved = RETRIEVED.findall(section(out, "Retrieved: vector search top 10"))
    assert len(retrieved) == 10
    assert retrieved[0][0] == "*"  # the relevant abstract is the bi-encoder's first hit
    direct = RERANKED.findall(section(out, "Reranked: RerankRetriever top 5"))
    compressed = RERANKED.findall(section(out, "Same through ContextualCompressionRetriever"))
    assert len(direct) == 5 and direct == compressed
    assert direct[0][0] == "*"  # the judged-relevant abstract stays first after reranking
    assert {r[3] for r in direct} <= {r[2] for r in retrieved}
    # the second pass came from the shared engine's cache: every window of the 10 candidates
    cached = re.search(r": 0 pairs scored, (\d+) from the shared engine's cache", out)
    assert cached is not None and int(cached.group(1)) >= 10
    assert "same top 5: yes" in out


@pytest.mark.model
def test_long_documents_example() -> None:
    done = run_example("long_documents.py", "--model", str(BUNDLED))
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    chunk_max = LONG_ROW.findall(section(out, "Chunk-max: every window scored"))
    truncated = LONG_ROW.findall(section(out, "Truncation: WindowConfig(max_windows=1)"))
    assert sorted(r[0] for r in chunk_max) == sorted(r[0] for r in truncated) == list("ABCD")
    for _doc, _score, n_windows, trunc, start, end, _ in chunk_max:
        assert int(n_windows) >= 3 and not trunc  # long documents: several windows each
        assert 0 <= int(start) < int(end)
    for _doc, _score, n_windows, trunc, start, _end, holds in truncated:
        assert n_windows == "1" and trunc and start == "0" and holds == "no"
    m = re.search(r"holds the judged-relevant abstract at chars (\d+)–(\d+)", out)
    assert m is not None
    b_row = next(r for r in chunk_max if r[0] == "B")
    overlap = int(b_row[4]) < int(m.group(2)) and int(m.group(1)) < int(b_row[5])
    assert b_row[6] == ("yes" if overlap else "no")  # the report matches the spans
    assert "truncated=True" in out and "so truncation never saw it" in out
    assert "Best window of document B:" in out
    # the ranking quality of chunk-max against truncation is measured over many queries
    # (README: long documents); one claim with the bundled model proves nothing either way


@pytest.mark.parametrize(
    "name", ["llamaindex_query_engine.py", "langchain_retriever.py", "long_documents.py"]
)
def test_examples_exit_clearly_when_the_model_cannot_load(name: str, tmp_path: Path) -> None:
    done = run_example(name, "--model", str(tmp_path / "no-such-model"), timeout=180)
    assert done.returncode == 1
    assert "error: could not load the reranker" in done.stderr
    assert "CROSSRANK_MODEL" in done.stderr  # the hint says how to run offline
    assert "Traceback" not in done.stderr


def test_examples_choose_the_bundled_reranker_only_when_the_hub_is_out_of_reach(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
    finally:
        sys.path.remove(str(EXAMPLES))
    assert _common.BUNDLED is not None and _common.BUNDLED.path == BUNDLED
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(ROOT / "no-such-hub-cache"))
    assert _common.choose_model("some/model") == "some/model"  # given: used as is
    assert capsys.readouterr().err == ""
    assert _common.choose_model(None) == str(BUNDLED)
    notice = capsys.readouterr().err.strip()
    assert "offline (HF_HUB_OFFLINE is set): using the bundled crossrank-minilm-l6" in notice
    assert "DL19 nDCG@10" in notice and len(notice.splitlines()) == 1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused
    assert _common.choose_model(None) == str(BUNDLED)
    assert "cannot be reached" in capsys.readouterr().err
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # later loads stay local: no retries


def test_long_documents_logic_with_a_word_overlap_backend(keyword_backend: Any) -> None:
    """With a transparent scorer (query words present in the window), chunk-max finds the
    abstract hidden deep in document B and truncation cannot: the example's claim holds."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
        import long_documents
    finally:
        sys.path.remove(str(EXAMPLES))
    from helpers import KeywordBackend

    claim = _common.claims()[7]  # "ADAR1 binds to Dicer to cleave pre-miRNA."
    docs = long_documents.build(_common.passages(), claim)
    assert docs.target_span[0] > 4000  # deep inside document B
    chunk_max, truncated = long_documents.compare(KeywordBackend(max_length=128), claim.text, docs)

    best = chunk_max[0]
    assert best.index == docs.target_doc
    assert long_documents.overlaps(best.window, docs.target_span)
    assert best.n_windows > 5 and not best.truncated
    assert all(r.truncated and r.window[0] == 0 for r in truncated)
    assert all(r.window[1] < docs.target_span[0] for r in truncated)
    assert truncated[0].index != docs.target_doc  # truncation ranks another document first
