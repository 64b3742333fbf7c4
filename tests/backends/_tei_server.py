"""A loopback HTTP server that speaks Text Embeddings Inference's wire format, for tests.

``POST /rerank`` ``{"query", "texts", "raw_scores", "truncate"}`` answers
``[{"index", "score"}]`` best first; a score is the fake model of ``_cohere_server``
(share of the query's words in the text). ``POST /tokenize`` ``{"inputs",
"add_special_tokens"}`` answers TEI's token lists (``id``, ``text``, ``special``, ``start``,
``stop``: UTF-8 byte offsets) from a real ``tokenizers.Tokenizer`` given to the server (or
404 without one, like a server that has no such route). With ``max_input_tokens`` set, a
(query, text) pair longer than that (by the same tokenizer) is answered as TEI does with
``truncate: false``: HTTP 413. Each request takes the next action from ``script`` and is
recorded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _cohere_server import relevance


@dataclass
class Action:
    """``kind``: "ok", "status" (``status`` with ``body`` and ``headers``), "malformed"
    (a 200 that is not JSON), "short" (one result left out), "bad_index". ``delay``:
    seconds before answering."""

    kind: str = "ok"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class TEIServer:
    def __init__(self, tokenizer: Any = None, *, max_input_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.script: list[Action] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(Recorded(self.path, headers, body))
                    action = (
                        server.script.pop(0)
                        if server.script and self.path == "/rerank"
                        else Action()
                    )
                if action.delay:
                    time.sleep(action.delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._answer(self, action, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"

    def _tokens(self, text: str, special: bool) -> list[dict[str, Any]]:
        enc = self.tokenizer.encode(text, add_special_tokens=special)
        out = []
        for tid, tok, (a, b), sp in zip(
            enc.ids, enc.tokens, enc.offsets, enc.special_tokens_mask, strict=True
        ):
            ba, bb = len(text[:a].encode()), len(text[:b].encode())  # TEI: byte offsets
            out.append({"id": tid, "text": tok, "special": bool(sp), "start": ba, "stop": bb})
        return out

    def _answer(self, h: BaseHTTPRequestHandler, action: Action, body: dict[str, Any]) -> None:
        if h.path == "/tokenize":
            if self.tokenizer is None:
                return self._send(h, 404, {"error": "not found"})
            inputs = body.get("inputs")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            special = bool(body.get("add_special_tokens", True))
            return self._send(h, 200, [self._tokens(t, special) for t in inputs])
        if h.path != "/rerank":
            return self._send(h, 404, {"error": f"no route {h.path}"})
        if action.kind == "status":
            payload = action.body if action.body is not None else {"error": "boom"}
            return self._send(h, action.status, payload, action.headers)
        if action.kind == "malformed":
            return self._send_raw(h, 200, b'[{"index": 0, "sco', {})
        query, texts = str(body.get("query", "")), [str(t) for t in body.get("texts", [])]
        if self.max_input_tokens and self.tokenizer is not None and not body.get("truncate"):
            for t in texts:
                n = len(self.tokenizer.encode(query, t).ids)
                if n > self.max_input_tokens:
                    return self._send(
                        h,
                        413,
                        {
                            "error": f"`inputs` must have less than {self.max_input_tokens} "
                            f"tokens. Given: {n}",
                            "error_type": "Validation",
                        },
                    )
        scored = sorted(
            ({"index": i, "score": relevance(query, t)} for i, t in enumerate(texts)),
            key=lambda r: -float(r["score"]),
        )
        if action.kind == "short" and scored:
            scored = scored[:-1]
        if action.kind == "bad_index" and scored:
            scored[0]["index"] = len(texts) + 3
        return self._send(h, 200, scored, action.headers)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        TEIServer._send_raw(h, status, json.dumps(payload).encode(), headers or {})

    @staticmethod
    def _send_raw(
        h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str]
    ) -> None:
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def of(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
