"""A small local OpenAI-compatible chat server that a test starts and scripts.

    with ScriptedLLMServer() as srv:
        srv.push('{"guidelines": [], "trials": [...]}')   # the next answer's content
        srv.push(Fail(500))                               # then an HTTP 500
        srv.push(Hang(2.0))                               # then no answer for 2 s (a timeout)
        srv.responder = lambda request: "..."             # when the queue is empty
        searcher = AgentTTSSearcher(space, llm_base_url=srv.base_url, llm_model="test-model")
        ...
        srv.requests    # every request body received (parsed JSON), in order

POST {base}/chat/completions answers in the OpenAI chat-completion format, with a usage block
(whitespace-split token counts). A queue item or the responder's return value is a string
(the assistant's content), `Fail(status)`, `Hang(seconds)` or `Raw(body)` (a response that is
not the API's: an HTML page, an empty or cut body). With nothing queued and no
responder the server answers 500, so a test that under-scripts fails loudly. Standard
library only; one daemon thread; `close()` releases hanging handlers at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass(frozen=True)
class Fail:
    status: int = 500
    message: str = "scripted failure"


@dataclass(frozen=True)
class Hang:
    seconds: float


@dataclass(frozen=True)
class Raw:
    """An HTTP response that is not the API's: `body` as is (an HTML page, nothing, cut JSON)."""
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"


Item = str | Fail | Hang | Raw


class ScriptedLLMServer:
    def __init__(self, responder: Callable[[dict[str, Any]], Item] | None = None):
        self.queue: deque[Item] = deque()
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="scripted-llm", daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *items: Item) -> None:
        with self.lock:
            self.queue.extend(items)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "ScriptedLLMServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next(self, body: dict[str, Any]) -> Item:
        with self.lock:
            self.requests.append(body)
            if self.queue:
                return self.queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return Fail(500, "the test scripted no further response")

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server.lock:
                    server.paths.append(self.path)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return self._json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
                item = server._next(body)
                if isinstance(item, Hang):
                    server.closing.wait(item.seconds)  # the client times out meanwhile
                    item = Fail(503, "hung request released")
                if isinstance(item, Fail):
                    return self._json(item.status, {"error": {"message": item.message, "type": "server_error"}})
                if isinstance(item, Raw):
                    return self._send(item.status, item.body, item.content_type)
                prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                completion = len(item.split())
                self._json(200, {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": item}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                })

            def _json(self, status: int, payload: dict) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json")

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

        return Handler
