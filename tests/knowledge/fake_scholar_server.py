"""A local server replaying recorded Semantic Scholar and arXiv responses (fixtures/).

``GET /graph/v1/paper/search`` answers with ``fixtures/s2_*.json`` and ``GET /api/query`` with
``fixtures/arxiv_*.xml``; ``fail_with`` makes every answer that HTTP status. Requests are
recorded so tests can assert whether the network was touched.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures"


class FakeScholarServer:
    """Context manager; ``s2_url`` and ``arxiv_url`` go into ``KnowledgeConfig``."""

    def __init__(self, s2_fixture: str = "s2_linear_attention.json",
                 arxiv_fixture: str = "arxiv_linear_attention.xml", fail_with: int | None = None) -> None:
        self.s2_body = (FIXTURES / s2_fixture).read_bytes()
        self.arxiv_body = (FIXTURES / arxiv_fixture).read_bytes()
        self.fail_with = fail_with
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> "FakeScholarServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                parts = urlsplit(self.path)
                server.requests.append((parts.path, parse_qs(parts.query)))
                if server.fail_with is not None:
                    status, ctype, body = server.fail_with, "application/json", b'{"message": "failure"}'
                elif parts.path == "/graph/v1/paper/search":
                    status, ctype, body = 200, "application/json", server.s2_body
                elif parts.path == "/api/query":
                    status, ctype, body = 200, "application/atom+xml", server.arxiv_body
                else:
                    status, ctype, body = 404, "application/json", b'{"error": "not found"}'
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def s2_url(self) -> str:
        return self.url

    @property
    def arxiv_url(self) -> str:
        return f"{self.url}/api/query"
