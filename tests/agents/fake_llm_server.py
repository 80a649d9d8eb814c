"""A scripted local server speaking the OpenAI chat-completions API and the Anthropic messages API.

The real SDK clients talk to it over HTTP on 127.0.0.1 (random free port), so the backends' full
code paths (request building, status handling, retries, usage parsing) run in tests. Answers
come from a script (a queue of :class:`Reply`) and/or a ``responder`` callable that sees each
:class:`RecordedRequest` (for whole design flows whose answers depend on the prompt)::

    with FakeLLMServer([Reply.rate_limit(retry_after="0.05"), Reply.json({...})]) as server:
        spec = spec_for(server, "proposer", provider="openai")
        ...
        assert len(server.requests) == 2

Reusable from any test: ``from tests.agents.fake_llm_server import FakeLLMServer, Reply, spec_for``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from model_discovery.agents.spec import AgentSpec


@dataclass
class Reply:
    """One scripted answer: assistant ``text`` (shaped per API) or an error ``status``."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 120
    completion_tokens: int = 60
    delay_s: float = 0.0
    error_message: str = ""

    @classmethod
    def json(cls, obj: Any, prose: str = "", fenced: bool = False, **kw: Any) -> "Reply":
        """An answer carrying ``obj`` as JSON, optionally inside a fence and/or after prose."""
        body = json.dumps(obj, indent=1)
        if fenced:
            body = f"```json\n{body}\n```"
        return cls(text=f"{prose}\n{body}" if prose else body, **kw)

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1", **kw: Any) -> "Reply":
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls(status=429, headers=headers, error_message="rate limit exceeded", **kw)

    @classmethod
    def server_error(cls, status: int = 500, **kw: Any) -> "Reply":
        return cls(status=status, error_message="internal server error", **kw)


@dataclass
class RecordedRequest:
    """A request as the server saw it."""

    api: str  # "openai" | "anthropic"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    ts: float

    @property
    def system(self) -> str:
        if self.api == "anthropic":
            sys_ = self.body.get("system", "")
            return sys_ if isinstance(sys_, str) else " ".join(b.get("text", "") for b in sys_)
        return " ".join(_text(m.get("content")) for m in self.body.get("messages", []) if m.get("role") == "system")

    @property
    def conversation(self) -> list[dict[str, str]]:
        """Non-system messages as ``{"role", "content"}`` with text content."""
        return [{"role": m["role"], "content": _text(m.get("content"))}
                for m in self.body.get("messages", []) if m.get("role") != "system"]

    @property
    def last_user_text(self) -> str:
        users = [m["content"] for m in self.conversation if m["role"] == "user"]
        return users[-1] if users else ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


class FakeLLMServer:
    """Scripted OpenAI + Anthropic endpoint on 127.0.0.1; a context manager."""

    def __init__(self, replies: Iterable[Reply] = (),
                 responder: Callable[[RecordedRequest], Reply] | None = None) -> None:
        self._script: deque[Reply] = deque(replies)
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeLLMServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                path = self.path.split("?")[0]
                if path.endswith("/chat/completions"):
                    api = "openai"
                elif path.endswith("/messages"):
                    api = "anthropic"
                else:
                    self._send(404, {"error": {"message": f"no route {path}"}}, {})
                    return
                req = RecordedRequest(api=api, path=path, headers={k.lower(): v for k, v in self.headers.items()},
                                      body=body, ts=time.monotonic())
                reply = server._next(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                status, payload = server._shape(api, reply, body)
                self._send(status, payload, reply.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- script -------------------------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _next(self, req: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(req)
            if self._script:
                return self._script.popleft()
        if self.responder is not None:
            return self.responder(req)
        return Reply(status=400, error_message="fake server: script exhausted")

    @staticmethod
    def _shape(api: str, reply: Reply, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("model", "fake-model")
        if reply.status != 200:
            kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(reply.status, "api_error")
            msg = reply.error_message or f"HTTP {reply.status}"
            if api == "anthropic":
                return reply.status, {"type": "error", "error": {"type": kind, "message": msg}}
            return reply.status, {"error": {"message": msg, "type": kind, "code": None}}
        if api == "anthropic":
            return 200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                         "content": [{"type": "text", "text": reply.text}], "stop_reason": "end_turn",
                         "stop_sequence": None,
                         "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}}
        return 200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                     "model": model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": reply.text}}],
                     "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                               "total_tokens": reply.prompt_tokens + reply.completion_tokens}}


_ROLE_RE = re.compile(r"You are the (?:implementation )?(proposer|reviewer|planner|coder|observer)\b")


def role_of(request: RecordedRequest) -> str | None:
    """The agent role that sent ``request``, read from the shipped system prompts' first sentence."""
    m = _ROLE_RE.search(request.system)
    return m.group(1) if m else None


class RoleScript:
    """A ``responder`` answering each role from its own queue (order across roles is free).

    ``RoleScript({"proposer": [Reply.json(p)], "coder": [Reply.json(broken), Reply.json(good)]})``;
    ``calls`` counts requests per role. An exhausted role answers HTTP 400 (not retried), so a
    flow that asks more than scripted fails with a clear message.
    """

    def __init__(self, replies: dict[str, Iterable[Reply]]) -> None:
        self.queues: dict[str, deque[Reply]] = {role: deque(r) for role, r in replies.items()}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        role = role_of(request) or "unknown"
        with self._lock:
            self.calls[role] = self.calls.get(role, 0) + 1
            queue = self.queues.get(role)
            if queue:
                return queue.popleft()
        return Reply(status=400, error_message=f"fake server: no scripted answer left for role {role}")

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {role: len(q) for role, q in self.queues.items() if q}


def spec_for(server: FakeLLMServer, role: str, provider: str = "openai", model: str | None = None,
             **overrides: Any) -> AgentSpec:
    """An :class:`AgentSpec` for ``role`` pointed at ``server`` (fast retries for tests)."""
    base = server.anthropic_base_url if provider == "anthropic" else server.openai_base_url
    default_model = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o"}.get(provider, "local-model")
    data: dict[str, Any] = {"role": role, "provider": provider, "model": model or default_model,
                            "base_url": base, "retries": 3, "backoff_s": 0.01, "max_backoff_s": 0.05,
                            "timeout_s": 10, "max_repairs": 2, "max_rounds": 3}
    data.update(overrides)
    return AgentSpec.model_validate(data)
