"""A loopback HTTP server that speaks Cohere's ``/v2/rerank`` wire format, for tests.

Each request takes the next action from ``script`` (or ``default`` when the script is
empty). A relevance score is the share of the query's distinct words found in the
document, so tests can compute the expected score of any (query, document) pair.
Every request is recorded (path, lower-cased headers, JSON body).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_WORD = re.compile(r"\w+")


def relevance(query: str, doc: str) -> float:
    """The fake model: share of the query's distinct words that occur in the document."""
    q = {w.lower() for w in _WORD.findall(query)}
    d = {w.lower() for w in _WORD.findall(doc)}
    return len(q & d) / len(q) if q else 0.0


@dataclass
class Action:
    """What the server does with one request.

    ``shape``: "cohere", "vllm", "infinity" (a 200 with results), "status" (an error
    status with ``body`` and ``headers``), "malformed" (a 200 that is not JSON).
    ``delay``: seconds to wait before answering. ``top``: answer only the best ``top``
    results. ``order``: "score" (best first, like the API), "reverse" or "input".
    ``bad_index``/``duplicate``: corrupt the results.
    """

    shape: str = "cohere"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    top: int | None = None
    order: str = "score"
    bad_index: bool = False
    duplicate: bool = False
    echo_auth: bool = False


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class CohereLikeServer:
    def __init__(self) -> None:
        self.script: list[Action] = []
        self.default = Action()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(Recorded(self.path, headers, body))
                    action = server.script.pop(0) if server.script else server.default
                if action.delay:
                    time.sleep(action.delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client left
                    server._answer(self, action, body, headers)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"

    # ------------------------------------------------------------------ answers

    def _answer(
        self,
        h: BaseHTTPRequestHandler,
        action: Action,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        if h.path != "/v2/rerank":
            return self._send(h, 404, {"message": f"no route {h.path}"})
        if action.shape == "status":
            payload = action.body if action.body is not None else {"message": "error"}
            if action.echo_auth:
                payload = {"message": f"invalid api token: {headers.get('authorization')}"}
            return self._send(h, action.status, payload, action.headers)
        if action.shape == "malformed":
            return self._send_raw(h, 200, b'{"results": [{"index": 0, "relevance', action.headers)
        query = str(body.get("query", ""))
        docs = [str(d) for d in body.get("documents", [])]
        scored = [(i, relevance(query, d)) for i, d in enumerate(docs)]
        if action.order == "score":
            scored.sort(key=lambda x: -x[1])
        elif action.order == "reverse":
            scored.reverse()
        top = action.top if action.top is not None else body.get("top_n")
        if top:
            scored = scored[: int(top)]
        if action.bad_index and scored:
            scored[0] = (len(docs) + 5, scored[0][1])
        if action.duplicate and len(scored) > 1:
            scored[1] = (scored[0][0], scored[1][1])
        model = body.get("model")
        if action.shape == "vllm":
            payload: dict[str, Any] = {
                "id": f"rerank-{uuid.uuid4().hex}",
                "model": model,
                "usage": {"total_tokens": sum(len(d.split()) for d in docs)},
                "results": [
                    {
                        "index": i,
                        "document": {"text": docs[i], "multi_modal": None},
                        "relevance_score": s,
                    }
                    for i, s in scored
                ],
            }
        elif action.shape == "infinity":
            payload = {
                "object": "rerank",
                "results": [
                    {"relevance_score": s, "index": i, "document": None} for i, s in scored
                ],
                "model": model,
                "usage": {"prompt_tokens": 10, "total_tokens": 10},
                "id": f"infinity-{uuid.uuid4()}",
                "created": int(time.time()),
            }
        else:
            payload = {
                "id": str(uuid.uuid4()),
                "results": [{"index": i, "relevance_score": s} for i, s in scored],
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
            }
        return self._send(h, 200, payload, action.headers)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        CohereLikeServer._send_raw(h, status, json.dumps(payload).encode(), headers)

    @staticmethod
    def _send_raw(
        h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    # ------------------------------------------------------------------ helpers

    @property
    def rerank_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v2/rerank"]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
