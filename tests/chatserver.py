"""A scripted OpenAI-compatible chat server on localhost, for collection tests.

`ChatServer(script)` answers POST /v1/chat/completions with n choices whose texts come from
`script(body, i)`; tokens are whitespace words (usage and per-token logprobs agree). The code
under test talks HTTP to it through the official `openai` client, exactly as to `vllm serve`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clikit import run_main




class ChatServer:
    """POST /v1/chat/completions -> n choices from `script(body, i)`; tokens = whitespace words."""

    def __init__(self, script, max_n=None, reject_logprobs=False, fail_after=None, delay=0.0):
        self.script = script
        self.delay = delay  # seconds each request takes (to see concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_n = max_n
        self.reject_logprobs = reject_logprobs
        self.fail_after = fail_after  # answer 400 to every request after this many
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server.lock:
                    server.requests.append(body)
                    count = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    self._answer(body, count)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body, count):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "no route", "type": "not_found"}})
                if server.fail_after is not None and count > server.fail_after:
                    return self._send(400, {"error": {"message": "scripted refusal", "type": "invalid_request_error"}})
                if server.reject_logprobs and body.get("logprobs"):
                    return self._send(400, {"error": {"message": "logprobs are not supported", "type": "invalid_request_error"}})
                n = int(body.get("n") or 1)
                if server.max_n:
                    n = min(n, server.max_n)
                texts = [server.script(body, i) for i in range(n)]
                prompt = sum(len(m["content"].split()) for m in body["messages"])
                choices = []
                for i, t in enumerate(texts):
                    c = {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                    if body.get("logprobs"):
                        c["logprobs"] = {"content": [{"token": w, "logprob": -0.5, "bytes": None, "top_logprobs": []}
                                                     for w in t.split()]}
                    choices.append(c)
                comp = sum(len(t.split()) for t in texts)
                self._send(200, {"id": f"c{count}", "object": "chat.completion", "created": int(time.time()),
                                 "model": body["model"], "choices": choices,
                                 "usage": {"prompt_tokens": prompt, "completion_tokens": comp,
                                           "total_tokens": prompt + comp}})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()



def run_cli(argv, capsys):
    """`collect ARGV` in-process: (exit code, stdout, stderr)."""
    from collect.cli import main

    return run_main(main, argv, capsys)
