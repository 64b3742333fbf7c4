"""The cohere backend's ``api_version="v1"`` (``/v1/rerank``, the SDK's ``Client``: what
Infinity serves under ``--url-prefix /v1``) and its defaults for ``model=`` a local model
folder (the served model's tokenizer and window length). The real Infinity server is in
tests/e2e/test_infinity_server.py."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import need

cohere = need("cohere")
httpx = need("httpx")
tokenizers = need("tokenizers")

from rerank_core import ConfigError, Reranker  # noqa: E402
from rerank_core.backends._words import WordTokenizer  # noqa: E402
from rerank_core.backends.cohere import CohereBackend  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "crossrank-minilm-l6"
URL = "http://infinity.test"


class V1Server:
    """An httpx handler answering ``/v1/rerank`` as Infinity does (results sorted by score,
    ``relevance_score`` the sigmoid of a score: here the query words in the document)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append((request.url.path, body))
        if request.url.path != "/v1/rerank":
            return httpx.Response(404, json={"detail": "Not Found"})
        words = set(body["query"].lower().split())
        scores = [len(words & set(d.lower().split())) / 10 for d in body["documents"]]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        results = [{"relevance_score": scores[i], "index": i} for i in order]
        return httpx.Response(
            200,
            json={"object": "rerank", "results": results, "model": body.get("model"), "usage": {}},
        )


def test_v1_posts_the_v1_body_and_reads_its_answer() -> None:
    server = V1Server()
    client = cohere.Client(
        api_key="EMPTY",
        base_url=URL,
        httpx_client=httpx.Client(transport=httpx.MockTransport(server)),
    )
    b = CohereBackend("served", base_url=URL, api_version="v1", client=client, max_retries=0)
    texts = ["nothing here", "scurvy vitamin c", "scurvy"]
    ranked = Reranker(b, cache=None).rerank("scurvy vitamin c", texts)
    assert [r.index for r in ranked] == [1, 2, 0]
    assert [r.score for r in ranked] == [0.3, 0.1, 0.0]
    ((path, body),) = server.requests
    assert path == "/v1/rerank"
    assert body["query"] == "scurvy vitamin c" and sorted(body["documents"]) == sorted(texts)
    assert body["model"] == "served" and "max_tokens_per_doc" not in body


def test_v1_async() -> None:
    server = V1Server()
    aclient = cohere.AsyncClient(
        api_key="EMPTY",
        base_url=URL,
        httpx_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    )
    b = CohereBackend("served", base_url=URL, api_version="v1", async_client=aclient)
    got = asyncio.run(Reranker(b, cache=None).arerank("a b", ["a", "b c a", "x"]))
    assert [r.index for r in got] == [1, 0, 2]
    assert {p for p, _ in server.requests} == {"/v1/rerank"}


def test_v1_picks_the_v1_sdk_client_and_its_own_fingerprint() -> None:
    v1 = CohereBackend("served", base_url=URL, api_version="v1")
    v2 = CohereBackend("served", base_url=URL)
    assert type(v1._sync_client()) is cohere.Client
    assert type(v2._sync_client()) is cohere.ClientV2
    assert v1.fingerprint != v2.fingerprint
    assert "api_version" not in v2.fingerprint  # v2 caches keep their keys
    v1.close()
    v2.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_version": "v3"}, "api_version must be 'v2'"),
        ({"api_version": 1}, "api_version must be 'v2'"),
        ({"api_version": "v1", "max_tokens_per_doc": 100}, "max_tokens_per_doc is a /v2"),
    ],
)
def test_option_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CohereBackend("served", base_url=URL, **kwargs)  # type: ignore[arg-type]


def test_a_local_model_folder_brings_its_tokenizer_and_window_length() -> None:
    b = CohereBackend(str(MODEL), base_url=URL, api_version="v1")
    assert b.max_length == 192  # crossrank_training.json, as the local backends read it
    assert not isinstance(b.tokenizer, WordTokenizer)
    assert b.tokenizer.pair_special_tokens == 3
    text = "Scurvy is caused by a lack of vitamin C."
    ref = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    assert b.tokenizer.token_spans([text])[0] == ref.encode(text, add_special_tokens=False).offsets
    # explicit choices win
    words = CohereBackend(str(MODEL), base_url=URL, tokenizer="words", max_length=300)
    assert isinstance(words.tokenizer, WordTokenizer) and words.max_length == 300
    # a model name that is not a local folder: the estimate and the 512 default
    hub = CohereBackend("BAAI/bge-reranker-base", base_url=URL)
    assert isinstance(hub.tokenizer, WordTokenizer) and hub.max_length == 512


def test_a_folder_without_a_training_record_takes_the_models_own_limit(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(MODEL / "tokenizer.json", folder)
    assert CohereBackend(str(folder), base_url=URL).max_length == 512  # nothing stated
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    assert CohereBackend(str(folder), base_url=URL).max_length == 256
    (folder / "config.json").write_text(
        json.dumps({"max_position_embeddings": 130, "model_type": "roberta", "pad_token_id": 1})
    )
    assert CohereBackend(str(folder), base_url=URL).max_length == 128
