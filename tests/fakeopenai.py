"""A scripted OpenAI-compatible server that behaves like llama.cpp's, with faults on request.

POST /v1/chat/completions and /v1/completions, one choice per request whatever `n` says (as
llama.cpp's server), the text from `script(prompt_text, seed)`, usage in whitespace words. Faults
for the endpoint-handling tests: `fault` is one of "html" (HTTP 200 with an HTML page),
"empty" (no choices), "truncated" (a JSON body cut short), "nousage", applied to the first
`fault_count` requests (None: all of them); `delay` seconds per request.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, script, fault=None, fault_count=None, delay=0.0):
        self.script = script
        self.fault = fault
        self.fault_count = fault_count
        self.delay = delay
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server.lock:
                    server.requests.append((self.path, body, dict(self.headers)))
                    count = len(server.requests)
                if server.delay:
                    time.sleep(server.delay)
                faulty = server.fault and (server.fault_count is None or count <= server.fault_count)
                path = self.path.rstrip("/")
                if path == "/v1/chat/completions":
                    prompt = "\n".join(m["content"] for m in body["messages"])
                elif path == "/v1/completions":
                    prompt = body["prompt"]
                else:
                    return self._send(404, json.dumps({"error": {"message": "no route"}}).encode())
                text = server.script(prompt, body.get("seed"))
                if path.endswith("/chat/completions"):
                    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                    obj = "chat.completion"
                else:
                    choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
                    obj = "text_completion"
                p, c = len(prompt.split()), max(1, len(text.split()))
                payload = {"id": f"r{count}", "object": obj, "created": 0, "model": body["model"], "choices": [choice],
                           "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}
                if faulty and server.fault == "html":
                    return self._send(200, b"<html><body><h1>Bad Gateway</h1>proxy error</body></html>", "text/html")
                if faulty and server.fault == "empty":
                    payload["choices"] = []
                if faulty and server.fault == "nousage":
                    del payload["usage"]
                data = json.dumps(payload).encode()
                if faulty and server.fault == "truncated":
                    data = data[: len(data) // 2]
                self._send(200, data)

            def _send(self, status, data, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hangs up on a broken answer is what the tests provoke

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def numseq_script(correct_every: int = 3):
    """A numseq 'model': continues the last sequence shown, off by one on every `correct_every`-th
    seed (so scores are neither all 0 nor all 1), deterministic in (prompt, seed)."""
    import re

    def script(prompt: str, seed) -> str:
        seqs = re.findall(r"(?:Numbers:|comes next\?)\s*([-\d, ]+\d)", prompt)
        nums = [int(x) for x in seqs[-1].split(",")]
        nxt = nums[-1] + (nums[-1] - nums[-2])
        if correct_every and seed is not None and int(seed) % correct_every == 0:
            nxt += 1
        return f" {nxt}" if "Numbers:" in prompt else f"Next: {nxt}"

    return script
