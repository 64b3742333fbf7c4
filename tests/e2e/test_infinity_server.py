"""A real third-party rerank server: Infinity (``infinity-emb`` 0.0.78) serving the bundled
``models/crossrank-minilm-l6`` folder, against the local backend on the same folder.

The server runs from its own venv, ``.venv-infinity`` (``bash scripts/setup.sh --dev``
builds it from ``constraints-infinity.txt``: Infinity needs transformers 4 and
sentence-transformers 3). It is started once for the module on a free loopback port,
offline, with ``--url-prefix /v1`` so that it answers the cohere backend's
``api_version="v1"`` (``POST /v1/rerank``: ``{"model", "query", "documents"}`` ->
``{"results": [{"index", "relevance_score"}]}``). Infinity sends the sigmoid of the
model's logit as ``relevance_score`` (it is not asked for ``raw_scores``), so the local
side is compared with ``normalize="sigmoid"``: same order, scores within ``ATOL``, same
windows. The server's log is printed when a test fails. Skipped only when the venv is
absent (a strict run, as in CI, fails on that skip).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import NOT_INSTALLED, need

ROOT = Path(__file__).resolve().parents[2]
SERVER_VENV = ROOT / ".venv-infinity"
SERVER = SERVER_VENV / "bin" / "infinity_emb"
MODEL = ROOT / "models" / "crossrank-minilm-l6"
DATA = ROOT / "shared" / "rerank_core" / "data"
READY_TIMEOUT = 90.0  # seconds for the server to load the model and answer /health
# relevance_score vs sigmoid(local logit), on the probability scale: both fp32 torch
# (transformers 4.57 there, 5.x here); measured at most 5.1e-8 over 90 texts (10 queries)
ATOL = 1e-6

pytestmark = pytest.mark.model  # real models, here and in the server

cohere = need("cohere")
need("torch")
need("sentence_transformers")

from rerank_core import RankedText, Reranker  # noqa: E402
from rerank_core.backends.cohere import CohereBackend  # noqa: E402
from rerank_core.backends.cross_encoder import CrossEncoderBackend  # noqa: E402
from rerank_core.errors import APIError  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InfinityServer:
    """``infinity_emb v2`` on ``model`` at a free port; the log goes to ``log``."""

    def __init__(self, model: Path, workdir: Path) -> None:
        self.port = _free_port()
        self.log = workdir / "infinity.log"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "INFINITY_ANONYMOUS_USAGE_STATS": "0",
            "DO_NOT_TRACK": "1",
            "HF_HOME": str(workdir / "hf"),
        }
        env.pop("VIRTUAL_ENV", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(SERVER),
                    "v2",
                    "--model-id",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--url-prefix",
                    "/v1",
                    "--engine",
                    "torch",
                    "--device",
                    "cpu",
                    "--no-bettertransformer",
                    "--no-model-warmup",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,  # its .infinity_cache goes there
                env=env,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the Infinity server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"the Infinity server did not answer /health within {timeout:g}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfinityServer]:
    if not SERVER.is_file():
        pytest.skip(
            f"{NOT_INSTALLED} infinity-emb (the server venv {SERVER_VENV.name}; "
            "bash scripts/setup.sh --dev builds it from constraints-infinity.txt)"
        )
    srv = InfinityServer(MODEL, tmp_path_factory.mktemp("infinity"))
    try:
        srv.wait_ready(READY_TIMEOUT)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def infinity(server: InfinityServer, request: pytest.FixtureRequest) -> Iterator[InfinityServer]:
    """The server; its log is printed after a test that failed."""
    failed = request.session.testsfailed
    start = server.log.stat().st_size
    yield server
    if request.session.testsfailed > failed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        with server.log.open("rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")[-6000:]
        if reporter is not None:
            reporter.write_line(f"\n--- Infinity server log during {request.node.name}:")
            reporter.write_line(text or "(nothing)")


@pytest.fixture(scope="module")
def expected() -> list[list[RankedText]]:
    """The local backend's rankings of :func:`_jobs` (fp32 torch, sigmoid of the logit)."""
    backend = CrossEncoderBackend(str(MODEL), precision="exact", runtime="torch")
    with Reranker(backend, cache=None, normalize="sigmoid") as local:
        return [local.rerank(query, texts) for query, texts in _jobs()]


def _remote(url: str, **kwargs: object) -> CohereBackend:
    return CohereBackend(
        str(MODEL), base_url=url, api_version="v1", max_retries=0, timeout=60, **kwargs
    )


def _jobs() -> list[tuple[str, list[str]]]:
    """Three queries over five sample passages each (title + abstract, most of them longer
    than one 192-token window) and a text three abstracts long."""
    docs = [json.loads(line) for line in (DATA / "scifact_sample.jsonl").open()]
    queries = [json.loads(line) for line in (DATA / "scifact_sample_queries.jsonl").open()]
    by_id = {d["id"]: f"{d['title']} {d['text']}" for d in docs}
    jobs = []
    for i, q in enumerate(queries[:3]):
        texts = [by_id[r] for r in q["relevant"] if r in by_id]
        texts += [f"{d['title']} {d['text']}" for d in docs[10 * i : 10 * i + 5 - len(texts)]]
        texts.append(" ".join(f"{d['title']} {d['text']}" for d in docs[50 + 3 * i : 53 + 3 * i]))
        jobs.append((q["text"], texts))
    return jobs


def test_the_served_model_folder_sets_tokenizer_and_windows(infinity: InfinityServer) -> None:
    remote = _remote(infinity.url)
    local = CrossEncoderBackend(str(MODEL), precision="exact", runtime="torch")
    assert remote.max_length == local.max_length == 192  # the recorded training length
    assert remote.tokenizer.pair_special_tokens == local.tokenizer.pair_special_tokens
    text = _jobs()[0][1][-1]
    assert remote.tokenizer.token_spans([text]) == local.tokenizer.token_spans([text])
    assert "api_version='v1'" in repr(remote)


def test_same_ranking_scores_and_windows_as_the_local_backend(
    infinity: InfinityServer, expected: list[list[RankedText]]
) -> None:
    remote = Reranker(_remote(infinity.url), cache=None)
    jobs = _jobs()
    multi = 0
    for (query, texts), ours in zip(jobs, expected, strict=True):
        theirs = remote.rerank(query, texts)
        assert [r.index for r in theirs] == [r.index for r in ours], query
        for a, b in zip(theirs, ours, strict=True):
            assert a.n_windows == b.n_windows and a.window == b.window, (query, a.index)
            assert 0.0 < a.score < 1.0
            assert math.isclose(a.score, b.score, rel_tol=0, abs_tol=ATOL), (a.score, b.score)
        multi += sum(r.n_windows >= 2 for r in ours)
        assert max(r.n_windows for r in ours) >= 3  # the three-abstract text
    assert multi >= 2 * len(jobs)  # chunk-max is exercised on every query


def test_top_n_and_async(infinity: InfinityServer, expected: list[list[RankedText]]) -> None:
    remote = Reranker(_remote(infinity.url), cache=None)
    query, texts = _jobs()[1]
    top = remote.rerank(query, texts, top_n=3)
    assert [r.index for r in top] == [r.index for r in expected[1][:3]]
    got = asyncio.run(remote.arerank(query, texts, top_n=3))
    assert [(r.index, r.score) for r in got] == [(r.index, r.score) for r in top]


def test_the_server_down_is_a_typed_error(infinity: InfinityServer) -> None:
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    rr = Reranker(_remote(down), cache=None)
    with pytest.raises(APIError, match="could not be reached"):
        rr.rerank("what causes scurvy", ["Scurvy is caused by a lack of vitamin C."])
    # an answer the server refuses is typed too (and not retried): /v2 is not served here
    wrong = Reranker(
        CohereBackend(
            "rerank-v3.5", base_url=infinity.url, api_version="v2", max_retries=0, timeout=30
        ),
        cache=None,
    )
    with pytest.raises(APIError) as info:
        wrong.rerank("what causes scurvy", ["Scurvy is caused by a lack of vitamin C."])
    assert info.value.status_code == 404
