"""A local OpenAI-compatible chat-completions server for the LLM-backend tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_reply(text: str) -> tuple[int, dict]:
    """A 200 reply in the chat-completions format."""
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


class ChatServer:
    """Answers ``POST .../chat/completions`` from a script of ``(status, body)`` pairs, or from
    a function of the request body returning one. Records every request."""

    def __init__(self, script: list | Callable[[dict], tuple[int, dict]]) -> None:
        self.script, self.requests = script if callable(script) else list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(n))
                outer.requests.append((self.path, dict(self.headers), body))
                if callable(outer.script):
                    status, reply = outer.script(body)
                else:
                    status, reply = outer.script.pop(0)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
