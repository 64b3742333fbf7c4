"""The tei backend against a local server speaking Text Embeddings Inference's wire format
(``_tei_server.py``): scores, batching, retries, typed errors, and windows cut with the
server's ``/tokenize``, a named local tokenizer, or the word estimate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cohere_server import relevance
from _tei_server import Action, TEIServer
from _tiny_models import sample_texts
from helpers import need
from rerank_core import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigError,
    RateLimitError,
    Reranker,
    WindowConfig,
)
from rerank_core.backends._words import WordTokenizer
from rerank_core.backends.tei import TEIBackend
from rerank_core.windows import make_windows, window_budget

httpx = need("httpx")
tokenizers = need("tokenizers")

QUERY = "what causes scurvy in sailors"
TEXTS = [
    "Scurvy is caused by a lack of vitamin C.",
    "Sailors on long voyages lacked fruit.",
    "The Eiffel Tower is in Paris.",
    "what causes scurvy",
]


@pytest.fixture(scope="module")
def bert_tok(minilm_bi_encoder_path: Path) -> Any:
    tok = tokenizers.Tokenizer.from_file(str(minilm_bi_encoder_path / "tokenizer.json"))
    tok.no_padding()  # as a server tokenizes: no padding, no truncation
    tok.no_truncation()
    return tok


@pytest.fixture
def server(bert_tok: Any) -> Iterator[TEIServer]:
    s = TEIServer(bert_tok, max_input_tokens=128)
    yield s
    s.close()


@pytest.fixture
def bare() -> Iterator[TEIServer]:
    s = TEIServer(None)  # no /tokenize
    yield s
    s.close()


def backend(server: TEIServer, **kw: Any) -> TEIBackend:
    kw.setdefault("backoff", 0.01)
    return TEIBackend(server.url, **kw)


def test_scores_are_the_servers_in_input_order(server: TEIServer) -> None:
    b = backend(server)
    got = Reranker(b, cache=None).score(QUERY, TEXTS)
    assert got == pytest.approx([relevance(QUERY, t) for t in TEXTS])
    (req,) = server.of("/rerank")
    assert sorted(req.body.pop("texts")) == sorted(TEXTS)  # the engine may reorder
    assert req.body == {"query": QUERY, "raw_scores": True, "truncate": False}
    assert Reranker("tei", base_url=server.url, cache=None).score(QUERY, TEXTS) == got


def test_requests_group_by_query_and_respect_the_batch_limit(server: TEIServer) -> None:
    b = backend(server, max_docs_per_request=3)
    pairs = [(QUERY, f"text {i} scurvy") for i in range(7)] + [("other", "x other")]
    scores = b.score_pairs(pairs)
    assert scores == pytest.approx([relevance(q, t) for q, t in pairs])
    sizes = [(r.body["query"], len(r.body["texts"])) for r in server.of("/rerank")]
    assert sizes == [(QUERY, 3), (QUERY, 3), (QUERY, 1), ("other", 1)]


def test_async_scores_equal_sync(server: TEIServer) -> None:
    b = backend(server, max_docs_per_request=2)
    pairs = [(QUERY, t) for t in TEXTS]
    got = asyncio.run(b.ascore_pairs(pairs))
    assert got == pytest.approx(b.score_pairs(pairs))
    assert asyncio.run(Reranker(b, cache=None).ascore(QUERY, TEXTS)) == pytest.approx(got)


def test_retries_then_succeeds_honouring_retry_after(server: TEIServer) -> None:
    server.script = [
        Action("status", 503),
        Action("status", 429, headers={"retry-after": "0"}),
    ]
    b = backend(server, max_retries=2)
    assert b.score_pairs([(QUERY, TEXTS[0])]) == pytest.approx([relevance(QUERY, TEXTS[0])])
    assert len(server.of("/rerank")) == 3


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        (Action("status", 401), AuthenticationError, "HTTP 401"),
        (Action("status", 429, headers={"retry-after": "999"}), RateLimitError, "max_retry_wait"),
        (Action("status", 422, body={"error": "bad input"}), APIError, "rejected.*bad input"),
        (Action("malformed"), APIError, "not JSON"),
        (Action("short"), APIError, "scored 3 of the 4"),
        (Action("bad_index"), APIError, "no index"),
    ],
)
def test_typed_errors(server: TEIServer, action: Action, error: type, match: str) -> None:
    server.script = [action]
    with pytest.raises(error, match=match):
        backend(server, max_retries=1, max_retry_wait=5).score_pairs([(QUERY, t) for t in TEXTS])


def test_retries_run_out(server: TEIServer) -> None:
    server.script = [Action("status", 500)] * 3
    with pytest.raises(APIError, match=r"HTTP 500.*after 3 attempts") as info:
        backend(server, max_retries=2).score_pairs([(QUERY, "x")])
    assert info.value.status_code == 500


def test_timeout_is_typed(server: TEIServer) -> None:
    server.script = [Action(delay=0.5)]
    with pytest.raises(APITimeoutError, match=r"did not answer within 0\.1s"):
        backend(server, timeout=0.1, max_retries=0).score_pairs([(QUERY, "x")])


def test_api_key_is_sent_and_never_shown(server: TEIServer) -> None:
    server.script = [Action("status", 403, body={"error": "key sk-secret-1 refused"})]
    b = backend(server, api_key="sk-secret-1", max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        b.score_pairs([(QUERY, "x")])
    assert "sk-secret-1" not in str(info.value) and "sk-secret-1" not in repr(b)
    assert server.of("/rerank")[0].headers["authorization"] == "Bearer sk-secret-1"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        TEIBackend()
    with pytest.raises(ConfigError, match="http"):
        TEIBackend("ftp://x")
    with pytest.raises(ConfigError, match="max_docs_per_request"):
        TEIBackend("http://127.0.0.1:9", max_docs_per_request=0, tokenizer="words")
    with pytest.raises(ConfigError, match="device"):
        TEIBackend("http://127.0.0.1:9", device="cuda")
    with pytest.raises(ConfigError, match="takes no option"):
        Reranker("tei", base_url="http://127.0.0.1:9", tokenizer="words", modle="x")


def test_injected_transport() -> None:
    def handler(request: Any) -> Any:
        if request.url.path == "/tokenize":
            return httpx.Response(404)
        return httpx.Response(200, json=[{"index": 1, "score": 2.0}, {"index": 0, "score": -1}])

    b = TEIBackend("http://tei.test", transport=httpx.MockTransport(handler))
    assert b.describe()["tokenizer"] == "words" and b.truncate is True
    assert b.score_pairs([("q", "a"), ("q", "b")]) == [-1.0, 2.0]


# ---------------------------------------------------------------------------- windows


def long_text() -> str:
    return " ".join(sample_texts()[:3])


def test_server_tokenize_cuts_windows_that_fit_the_served_model(
    server: TEIServer, bert_tok: Any
) -> None:
    b = backend(server, max_length=128)
    assert b.describe()["tokenizer"] == "server"
    assert b.tokenizer.pair_special_tokens == 4  # twice BERT's 2 per text (3 per pair)
    text = "Ünïcode façade — " + long_text()  # multi-byte characters: byte offsets converted
    ours = b.tokenizer.token_spans([text])[0]
    ref = bert_tok.encode(text, add_special_tokens=False).offsets
    assert ours == [tuple(o) for o in ref]
    (r,) = Reranker(b, window=WindowConfig(overlap=8)).rerank(QUERY, [text])
    assert r.n_windows > 2
    # truncate=false and the server's 413 on an overlong pair: every window fitted
    assert all(req.body["truncate"] is False for req in server.of("/rerank"))
    q = len(bert_tok.encode(QUERY, add_special_tokens=False).ids)
    windows, _ = make_windows(ours, len(text), budget=window_budget(128, q, 4), overlap=8)
    for w in windows:
        assert len(bert_tok.encode(QUERY, text[w.start : w.end]).ids) <= 128


def test_a_named_local_tokenizer_when_the_server_has_none(
    bare: TEIServer, minilm_bi_encoder_path: Path
) -> None:
    b = backend(bare, tokenizer=str(minilm_bi_encoder_path), max_length=128)
    assert b.describe()["tokenizer"] == "local" and b.truncate is False
    assert b.tokenizer.pair_special_tokens == 3
    (r,) = Reranker(b).rerank(QUERY, [long_text()])
    assert r.n_windows > 2
    assert not bare.of("/tokenize")


def test_auto_falls_back_to_the_estimate_and_lets_the_server_truncate(
    bare: TEIServer, caplog: pytest.LogCaptureFixture
) -> None:
    b = backend(bare, max_length=128)
    assert "word-based estimate" in caplog.text
    assert isinstance(b.tokenizer, WordTokenizer) and b.truncate is True
    Reranker(b).rerank(QUERY, [long_text()])
    assert all(req.body["truncate"] is True for req in bare.of("/rerank"))
    with pytest.raises(ConfigError, match="tokenize"):
        backend(bare, tokenizer="server")


def test_tokenize_answers_are_remembered(server: TEIServer) -> None:
    b = backend(server)
    before = len(server.of("/tokenize"))
    b.tokenizer.token_spans(TEXTS)
    b.tokenizer.token_spans(TEXTS)
    assert len(server.of("/tokenize")) == before + 1
