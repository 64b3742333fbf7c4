"""The Cohere backend: the real ``cohere`` SDK against a loopback server speaking ``/v2/rerank``."""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator

import pytest
from _cohere_server import Action, CohereLikeServer, relevance
from helpers import need
from rerank_core import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigError,
    MissingDependencyError,
    RateLimitError,
    Reranker,
    WindowConfig,
)
from rerank_core.backends._words import WordTokenizer
from rerank_core.backends.cohere import CohereBackend

need("cohere")

KEY = "sk-test-0123456789-SECRET"
Q = "vitamin c deficiency scurvy"
DOCS = [
    "Paris is the capital of France.",
    "Scurvy is caused by a deficiency of vitamin C.",
    "Vitamin D comes from sunlight.",
    "Sailors got scurvy on long voyages.",
]


@pytest.fixture
def server() -> Iterator[CohereLikeServer]:
    srv = CohereLikeServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CO_API_KEY", "COHERE_API_KEY", "CO_API_URL"):
        monkeypatch.delenv(var, raising=False)


def backend(server: CohereLikeServer, **kw: object) -> CohereBackend:
    kw.setdefault("api_key", KEY)
    kw.setdefault("backoff", 0.01)
    return CohereBackend(base_url=server.url, **kw)  # type: ignore[arg-type]


def expected(query: str, docs: list[str]) -> list[float]:
    return [relevance(query, d) for d in docs]


# ---------------------------------------------------------------------- wire format


@pytest.mark.smoke
def test_normal_response_in_input_order(server: CohereLikeServer) -> None:
    b = backend(server)
    scores = b.score_pairs([(Q, d) for d in DOCS])
    assert scores == expected(Q, DOCS)
    assert len(set(scores)) > 2  # the fake model really tells the texts apart
    (req,) = server.rerank_requests
    assert req.body == {"model": "rerank-v3.5", "query": Q, "documents": DOCS}
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert "top_n" not in req.body  # every score is needed, never a server-side cut


@pytest.mark.parametrize("order", ["score", "reverse", "input"])
def test_results_in_any_order_map_back_by_index(server: CohereLikeServer, order: str) -> None:
    server.default = Action(order=order)
    assert backend(server).score_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)


def test_results_truncated_by_top_n_are_asked_for_again(server: CohereLikeServer) -> None:
    server.default = Action(top=3)  # a server that answers only its best three
    docs = [*DOCS, "scurvy", "vitamin", "c", "nothing here"]
    assert backend(server).score_pairs([(Q, d) for d in docs]) == expected(Q, docs)
    sent = [r.body["documents"] for r in server.rerank_requests]
    assert [len(s) for s in sent] == [8, 5, 2]  # each follow-up carries only the missing ones
    assert set(sent[1]) < set(sent[0]) and set(sent[2]) < set(sent[1])


def test_vllm_shaped_response(server: CohereLikeServer) -> None:
    server.default = Action(shape="vllm")
    assert backend(server, model="BAAI/bge-reranker-base").score_pairs(
        [(Q, d) for d in DOCS]
    ) == expected(Q, DOCS)
    assert server.rerank_requests[0].body["model"] == "BAAI/bge-reranker-base"


def test_infinity_shaped_response(server: CohereLikeServer) -> None:
    server.default = Action(shape="infinity")
    assert backend(server).score_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)


def test_max_tokens_per_doc_is_sent_and_bounds_windows(server: CohereLikeServer) -> None:
    b = backend(server, max_tokens_per_doc=40)
    assert b.max_length == 40 + b.tokenizer.pair_special_tokens + 1
    words = " ".join(f"filler{i}" for i in range(400))
    rr = Reranker(b, window=WindowConfig(overlap=4))
    (r,) = rr.rerank(Q, [words + " scurvy vitamin"])
    assert r.n_windows > 1
    est = WordTokenizer()
    for req in server.rerank_requests:
        assert req.body["max_tokens_per_doc"] == 40
        assert all(est.count(d) <= 40 for d in req.body["documents"])


def test_malformed_response_json(server: CohereLikeServer) -> None:
    server.script = [Action(shape="malformed")]
    with pytest.raises(APIError, match="not valid JSON"):
        backend(server).score_pairs([(Q, DOCS[0])])
    assert len(server.rerank_requests) == 1  # not retried


@pytest.mark.parametrize(
    "action, match",
    [
        (Action(bad_index=True), "outside"),
        (Action(duplicate=True), "twice"),
        (Action(shape="status", status=200, body={"id": "x", "results": []}), "none of the"),
    ],
)
def test_inconsistent_results_are_api_errors(
    server: CohereLikeServer, action: Action, match: str
) -> None:
    server.script = [action]
    with pytest.raises(APIError, match=match):
        backend(server).score_pairs([(Q, d) for d in DOCS])


def test_unexpected_shape_is_an_api_error(server: CohereLikeServer) -> None:
    server.script = [Action(shape="status", status=200, body={"data": [1, 2]})]
    with pytest.raises(APIError):
        backend(server).score_pairs([(Q, DOCS[0])])


# ---------------------------------------------------------------------- retries and errors


def test_429_with_retry_after_then_success(
    server: CohereLikeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script = [Action(shape="status", status=429, headers={"retry-after": "1"})]
    b = backend(server, backoff=5.0)  # would wait far longer without the header
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        assert b.score_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)
    waited = time.monotonic() - start
    assert 0.9 <= waited < 4.0
    assert len(server.rerank_requests) == 2
    assert "HTTP 429" in caplog.text and "retry 1 of 3" in caplog.text


def test_429_until_retries_run_out(server: CohereLikeServer) -> None:
    server.default = Action(shape="status", status=429, headers={"retry-after": "0"})
    with pytest.raises(RateLimitError) as info:
        backend(server, max_retries=2).score_pairs([(Q, DOCS[0])])
    assert info.value.status_code == 429
    assert "after 3 attempts" in str(info.value)
    assert len(server.rerank_requests) == 3


def test_retry_after_beyond_the_bound_gives_up_at_once(server: CohereLikeServer) -> None:
    server.default = Action(shape="status", status=429, headers={"retry-after": "3600"})
    start = time.monotonic()
    with pytest.raises(RateLimitError, match="max_retry_wait"):
        backend(server, max_retry_wait=5).score_pairs([(Q, DOCS[0])])
    assert time.monotonic() - start < 2
    assert len(server.rerank_requests) == 1


def test_500_then_success(server: CohereLikeServer) -> None:
    server.script = [Action(shape="status", status=500, body={"message": "boom"})]
    assert backend(server).score_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)
    assert len(server.rerank_requests) == 2


def test_5xx_until_retries_run_out(server: CohereLikeServer) -> None:
    server.default = Action(shape="status", status=503, body={"message": "overloaded"})
    with pytest.raises(APIError) as info:
        backend(server, max_retries=1).score_pairs([(Q, DOCS[0])])
    assert type(info.value) is APIError
    assert info.value.status_code == 503 and "overloaded" in str(info.value)
    assert len(server.rerank_requests) == 2


def test_sdk_retries_are_off_so_ours_count(server: CohereLikeServer) -> None:
    server.default = Action(shape="status", status=500)
    with pytest.raises(APIError):
        backend(server, max_retries=0).score_pairs([(Q, DOCS[0])])
    assert len(server.rerank_requests) == 1  # the SDK would have made 3 on its own


def test_slow_response_past_the_timeout(server: CohereLikeServer) -> None:
    server.default = Action(delay=1.5)
    start = time.monotonic()
    with pytest.raises(APITimeoutError, match=r"within 0.3s \(after 2 attempts\)") as info:
        backend(server, timeout=0.3, max_retries=1).score_pairs([(Q, DOCS[0])])
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - start < 1.5


def test_a_timeout_is_retried(server: CohereLikeServer) -> None:
    server.script = [Action(delay=1.0)]
    b = backend(server, timeout=0.3, max_retries=1)
    assert b.score_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)


def test_client_error_is_not_retried(server: CohereLikeServer) -> None:
    server.script = [Action(shape="status", status=400, body={"message": "invalid model"})]
    with pytest.raises(APIError, match="rejected the request \\(HTTP 400\\): invalid model"):
        backend(server).score_pairs([(Q, DOCS[0])])
    assert len(server.rerank_requests) == 1


def test_connection_refused_after_retries() -> None:
    srv = CohereLikeServer()
    url = srv.url
    srv.close()
    b = CohereBackend(base_url=url, api_key=KEY, max_retries=1, backoff=0.01)
    with pytest.raises(APIError, match=r"could not be reached.*after 2 attempts"):
        b.score_pairs([(Q, DOCS[0])])


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_an_authentication_error(server: CohereLikeServer, status: int) -> None:
    server.default = Action(shape="status", status=status, echo_auth=True)
    with pytest.raises(AuthenticationError) as info:
        backend(server).score_pairs([(Q, DOCS[0])])
    assert info.value.status_code == status
    assert len(server.rerank_requests) == 1
    # The server echoed the Authorization header; it must not reach our error or traceback.
    assert KEY not in "".join(traceback.format_exception(info.value))
    assert "***" in str(info.value)


# ---------------------------------------------------------------------- requests


def test_more_than_1000_texts_split_into_requests(server: CohereLikeServer) -> None:
    docs = [f"doc {i} about {'scurvy' if i % 3 else 'paris'}" for i in range(2500)]
    scores = backend(server).score_pairs([("scurvy", d) for d in docs])
    assert scores == expected("scurvy", docs)
    assert [len(r.body["documents"]) for r in server.rerank_requests] == [1000, 1000, 500]


def test_pairs_grouped_by_query(server: CohereLikeServer) -> None:
    pairs = [("scurvy", "a scurvy"), ("paris", "b paris"), ("scurvy", "c"), ("paris", "d")]
    scores = backend(server, max_docs_per_request=1).score_pairs(pairs)
    assert scores == [1.0, 1.0, 0.0, 0.0]
    sent = [(r.body["query"], r.body["documents"]) for r in server.rerank_requests]
    assert sent == [
        ("scurvy", ["a scurvy"]),
        ("scurvy", ["c"]),
        ("paris", ["b paris"]),
        ("paris", ["d"]),
    ]


def test_reranker_splits_a_big_batch(server: CohereLikeServer) -> None:
    docs = [f"text {i} scurvy" if i % 2 else f"text {i}" for i in range(1500)]
    rr = Reranker(backend(server), batch_size=2000, cache=None)
    ranked = rr.rerank("scurvy text", docs, top_n=3)
    assert [r.score for r in ranked] == [1.0, 1.0, 1.0]
    assert [len(r.body["documents"]) for r in server.rerank_requests] == [1000, 500]


def test_empty_makes_no_request(server: CohereLikeServer) -> None:
    b = backend(server)
    assert b.score_pairs([]) == []
    assert asyncio.run(b.ascore_pairs([])) == []
    rr = Reranker(b)
    assert rr.rerank(Q, []) == []
    assert server.requests == []


def test_chunk_max_over_a_long_text(server: CohereLikeServer) -> None:
    filler = " ".join(f"word{i}" for i in range(300))
    long_text = f"{filler} Scurvy comes from a vitamin C deficiency."
    rr = Reranker(
        "cohere",
        api_key=KEY,
        base_url=server.url,
        max_length=64,
        window=WindowConfig(overlap=8),
        cache=None,
    )
    ranked = rr.rerank(Q, [DOCS[0], long_text])
    best = ranked[0]
    assert best.index == 1 and best.score == 1.0
    assert best.n_windows > 5
    assert "vitamin C deficiency" in best.window_text
    # Every window fit the budget by the tokenizer that cut it.
    est = WordTokenizer()
    for req in server.rerank_requests:
        for d in req.body["documents"]:
            assert est.count(Q) + est.count(d) + 3 <= 64
    # The long text sent alone would score only the words it has (here: none of the window).
    assert rr.score(Q, [filler]) == [0.0]


def test_named_hf_tokenizer_cuts_windows(server: CohereLikeServer, minilm_bi_encoder_path) -> None:  # type: ignore[no-untyped-def]
    b = backend(server, tokenizer=str(minilm_bi_encoder_path), max_length=48)
    assert b.tokenizer.pair_special_tokens == 3
    rr = Reranker(b, window=WindowConfig(overlap=4), cache=None)
    (r,) = rr.rerank(Q, [" ".join(["filler"] * 200) + " scurvy"])
    assert r.n_windows > 3 and r.score == 0.25


# ---------------------------------------------------------------------- async


@pytest.mark.smoke
async def test_async_path_uses_the_async_client(server: CohereLikeServer) -> None:
    class NoSync:
        def rerank(self, **_: object) -> None:
            raise AssertionError("the sync client was used from async code")

    b = backend(server, client=NoSync())
    assert await b.ascore_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)
    rr = Reranker(b, cache=None)
    ranked = await rr.arerank(Q, DOCS, top_n=2)
    assert [r.index for r in ranked] == [1, 2]  # 2 and 3 tie; input order breaks ties


async def test_async_retries_and_errors(server: CohereLikeServer) -> None:
    server.script = [
        Action(shape="status", status=429, headers={"retry-after": "0"}),
        Action(shape="status", status=502),
    ]
    b = backend(server)
    assert await b.ascore_pairs([(Q, d) for d in DOCS]) == expected(Q, DOCS)
    assert len(server.rerank_requests) == 3
    server.default = Action(shape="status", status=401)
    with pytest.raises(AuthenticationError):
        await b.ascore_pairs([(Q, DOCS[0])])
    server.default = Action(delay=1.0)
    with pytest.raises(APITimeoutError):
        await backend(server, timeout=0.2, max_retries=0).ascore_pairs([(Q, DOCS[0])])


async def test_async_splits_and_groups(server: CohereLikeServer) -> None:
    pairs = [("scurvy", f"doc {i} scurvy") for i in range(1200)] + [("paris", "paris")]
    scores = await backend(server).ascore_pairs(pairs)
    assert scores == [1.0] * 1201
    assert sorted(len(r.body["documents"]) for r in server.rerank_requests) == [1, 200, 1000]


def test_async_works_across_event_loops(server: CohereLikeServer) -> None:
    b = backend(server)
    for _ in range(2):  # each asyncio.run has its own loop; connections are not shared
        assert asyncio.run(b.ascore_pairs([(Q, DOCS[1])])) == [1.0]


# ---------------------------------------------------------------------- keys and config


def test_key_never_shown(server: CohereLikeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.script = [
        Action(shape="status", status=429, headers={"retry-after": "0"}),
        Action(shape="status", status=500, echo_auth=True),
    ]
    b = backend(server)
    rr = Reranker(b)
    with caplog.at_level(logging.DEBUG):
        rr.rerank(Q, DOCS)
        server.default = Action(shape="status", status=401, echo_auth=True)
        with pytest.raises(AuthenticationError) as info:
            rr.rerank("another query", DOCS)
    shown = [
        caplog.text,
        repr(b),
        str(b),
        repr(rr),
        b.fingerprint,
        repr(vars(b)),
        str(info.value),
        "".join(traceback.format_exception(info.value)),
    ]
    for text in shown:
        assert KEY not in text
    assert "429" in caplog.text


def test_key_not_in_cache_keys(server: CohereLikeServer) -> None:
    a = backend(server, api_key="key-one")
    b = backend(server, api_key="key-two")
    assert a.fingerprint == b.fingerprint
    assert "key-one" not in a.fingerprint
    c = backend(server, max_tokens_per_doc=100)
    d = backend(server, model="rerank-v4.0-pro")
    assert len({a.fingerprint, c.fingerprint, d.fingerprint}) == 3


def test_key_from_environment(server: CohereLikeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COHERE_API_KEY", "from-cohere-api-key")
    CohereBackend(base_url=server.url).score_pairs([(Q, DOCS[0])])
    monkeypatch.setenv("CO_API_KEY", "from-co-api-key")  # CO_API_KEY wins
    CohereBackend(base_url=server.url).score_pairs([(Q, DOCS[0])])
    CohereBackend(base_url=server.url, api_key="explicit").score_pairs([(Q, DOCS[0])])
    auth = [r.headers["authorization"] for r in server.rerank_requests]
    assert auth == ["Bearer from-cohere-api-key", "Bearer from-co-api-key", "Bearer explicit"]


def test_base_url_from_environment(
    server: CohereLikeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CO_API_URL", server.url)
    b = CohereBackend(api_key=KEY)
    assert b.base_url == server.url
    assert b.score_pairs([(Q, DOCS[1])]) == [1.0]


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CO_API_KEY or COHERE_API_KEY"):
        CohereBackend()
    with pytest.raises(ConfigError, match="CO_API_KEY"):
        Reranker("cohere")
    with pytest.raises(ConfigError):
        CohereBackend(base_url="https://api.cohere.com")  # Cohere's own API needs a key
    with pytest.raises(ConfigError, match="non-empty"):
        CohereBackend(api_key="  ")


def test_self_hosted_server_needs_no_key(server: CohereLikeServer) -> None:
    b = CohereBackend(base_url=server.url + "/")
    assert b.base_url == server.url
    assert b.score_pairs([(Q, DOCS[1])]) == [1.0]


def test_secret_str_key(server: CohereLikeServer) -> None:
    pydantic = need("pydantic")
    b = backend(server, api_key=pydantic.SecretStr("secret-str-key"))
    b.score_pairs([(Q, DOCS[0])])
    assert server.rerank_requests[0].headers["authorization"] == "Bearer secret-str-key"


def test_credentials_in_base_url_are_not_shown() -> None:
    b = CohereBackend(base_url="http://user:pw-SECRET@localhost:9/prefix/", api_key=KEY)
    assert b.base_url == "http://localhost:9/prefix"
    assert "pw-SECRET" not in repr(b) + b.fingerprint


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": "30"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"backoff": -1},
        {"max_length": 4},
        {"max_tokens_per_doc": 0},
        {"max_docs_per_request": 0},
        {"device": "cuda:0"},
        {"base_url": "localhost:8000"},
        {"tokenizer": 42},
        {"model": ""},
    ],
)
def test_bad_options(kwargs: dict[str, object]) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(ConfigError):
        CohereBackend(**kwargs)  # type: ignore[arg-type]


def test_model_limits() -> None:
    assert CohereBackend(api_key=KEY).max_length == 4096
    assert CohereBackend(api_key=KEY).tokenizer.pair_special_tokens == 3
    assert CohereBackend("rerank-v4.0-pro", api_key=KEY).max_length == 32768
    assert CohereBackend("my-model", base_url="http://localhost:1").max_length == 512
    assert CohereBackend(api_key=KEY, max_length=1024).max_length == 1024


def test_score_scale_is_probability_and_sigmoid_does_not_apply(server: CohereLikeServer) -> None:
    rr = Reranker(backend(server), normalize="sigmoid")
    assert rr.backend.score_scale == "probability"
    assert rr.score(Q, DOCS) == expected(Q, DOCS)


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cohere", None)
    with pytest.raises(MissingDependencyError, match=r"crossrank\[cohere\]") as info:
        CohereBackend(api_key=KEY)
    assert info.value.extra == "cohere"


def test_backend_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, rerank_core, rerank_core.backends.cohere, rerank_core.backends.flag;"
        "heavy = {'torch', 'transformers', 'FlagEmbedding', 'cohere', 'httpx'} & set(sys.modules);"
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nan_never_escapes(server: CohereLikeServer) -> None:
    scores = backend(server).score_pairs([(Q, d) for d in DOCS] + [("other", "other")])
    assert all(math.isfinite(s) for s in scores)


def test_close_releases_connections_and_the_backend_still_works(server: CohereLikeServer) -> None:
    b = backend(server)
    assert b.score_pairs([(Q, DOCS[1])]) == [1.0]
    http = b._http
    b.close()
    assert http is not None and http.is_closed
    assert b.score_pairs([(Q, DOCS[1])]) == [1.0]  # a new client on demand
    b.close()
    b.close()  # closing twice is fine


def test_close_leaves_an_injected_client_open(server: CohereLikeServer) -> None:
    cohere = need("cohere")
    client = cohere.ClientV2(api_key=KEY, base_url=server.url)
    b = backend(server, client=client)
    b.score_pairs([(Q, DOCS[1])])
    b.close()
    assert client.rerank(model="m", query=Q, documents=[DOCS[1]]).results[0].relevance_score == 1.0
