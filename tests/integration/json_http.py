"""A small HTTP service in the test process that answers in JSON (the tests' stand-ins for a Schema Registry and an
identity provider): a subclass says what each request gets. It can be stopped and started again on its port."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class JsonHttpService:
    content_type = "application/json"

    def __init__(self) -> None:
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON answer) for a request."""
        raise NotImplementedError

    def start(self) -> Self:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._answer("PUT")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, answer = service.answer(method, self.path.split("?")[0], dict(self.headers.items()),
                                                self.rfile.read(length) if length else b"")
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", service.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
