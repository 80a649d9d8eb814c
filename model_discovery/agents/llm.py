"""Chat backends over the official SDKs, with retries and usage accounting.

* :class:`OpenAIChat` — ``openai.OpenAI(base_url=..., api_key=...)`` chat completions; also used for
  ``openai_compatible`` servers (vLLM, Ollama, llama.cpp ...).
* :class:`AnthropicChat` — ``anthropic.Anthropic(base_url=..., api_key=...)`` messages.

Both retry 408/409/429/5xx answers, timeouts and connection errors with exponential backoff
(``backoff_s * 2**n`` capped at ``max_backoff_s``); a ``Retry-After`` / ``retry-after-ms`` header
overrides the computed delay. The SDKs' own retries are switched off so every attempt is
visible here. Each completed call is recorded in the :class:`~model_discovery.agents.usage.UsageLedger`.
"""

from __future__ import annotations

import email.utils
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from model_discovery.agents.spec import AgentSpec, AgentSpecError
from model_discovery.agents.usage import UsageLedger

RETRYABLE_STATUS = frozenset({408, 409, 429})
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
MAX_RETRY_AFTER_S = 300.0


class LLMError(RuntimeError):
    """An LLM call failed for good (non-retryable answer or retries exhausted); one line."""


class ChatResponse(BaseModel):
    """The text of one completed call and its token counts."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    attempts: int = 1


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Delay asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    for key, per_second in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers.get(key) or "") / per_second)
        except ValueError:
            pass
    value = headers.get("retry-after")
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


class ChatBackend(ABC):
    """One role's connection to a chat model: ``chat(system, messages) -> ChatResponse``.

    A subclass sets ``sdk`` (the provider's SDK module, whose exception types :meth:`_classify`
    reads) and ``client``, and implements :meth:`_call`."""

    sdk: Any

    def __init__(self, spec: AgentSpec, ledger: UsageLedger | None = None,
                 sleep: Callable[[float], None] = time.sleep, env: Mapping[str, str] | None = None) -> None:
        if not spec.is_llm:
            raise AgentSpecError(f"{spec.source_path or spec.role}: field provider: "
                                 f"{spec.provider!r} is not an LLM provider")
        self.spec = spec
        self.ledger = ledger if ledger is not None else UsageLedger()
        self.sleep = sleep
        self.api_key = spec.api_key(env) or "unused"
        self.waits: list[float] = []

    # -- subclass hooks -----------------------------------------------------------------------
    @abstractmethod
    def _call(self, system: str, messages: list[dict[str, str]]) -> ChatResponse:
        """One request; raises the SDK's exceptions."""

    def _client_kwargs(self) -> dict[str, Any]:
        """The SDK client's arguments: the spec's key, timeout and server; the SDK's own retries off."""
        kwargs: dict[str, Any] = {"api_key": self.api_key, "timeout": self.spec.timeout_s, "max_retries": 0}
        return {**kwargs, "base_url": self.spec.base_url} if self.spec.base_url else kwargs

    def _classify(self, exc: Exception) -> tuple[bool, Mapping[str, str] | None, str]:
        """(retryable, response headers, one-line description) for an exception of ``self.sdk``
        (both SDKs name their timeout, connection and status errors alike)."""
        if isinstance(exc, self.sdk.APITimeoutError):
            return True, None, f"timeout after {self.spec.timeout_s}s"
        if isinstance(exc, self.sdk.APIStatusError):
            status = getattr(exc, "status_code", None)
            headers = getattr(getattr(exc, "response", None), "headers", None)
            retry = status is not None and (status in RETRYABLE_STATUS or status >= 500)
            return retry, headers, _describe(exc, status)
        return isinstance(exc, self.sdk.APIConnectionError), None, _describe(exc, None)

    # -- public -------------------------------------------------------------------------------
    def chat(self, system: str, messages: list[dict[str, str]], design: str | None = None) -> ChatResponse:
        """Send the conversation; retry transient failures; record usage; return the reply.
        Raises :class:`~model_discovery.agents.usage.BudgetExceeded` when the ledger's budget is spent."""
        self.ledger.guard()
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                resp = self._call(system, messages)
                break
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as LLMError
                retryable, headers, what = self._classify(exc)
                if not retryable or attempts > self.spec.retries:
                    tail = f" after {attempts} attempts" if attempts > 1 else ""
                    raise LLMError(f"{self.spec.label()}: call failed{tail}: {what}") from exc
                delay = retry_after_seconds(headers)
                if delay is None:
                    delay = min(self.spec.max_backoff_s, self.spec.backoff_s * 2 ** (attempts - 1))
                    delay *= 1.0 + 0.1 * random.random()
                delay = min(delay, MAX_RETRY_AFTER_S)
                self.waits.append(delay)
                self.sleep(delay)
        resp.attempts = attempts
        self.ledger.record(role=self.spec.role, provider=self.spec.provider, model=resp.model or self.spec.model,
                           prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens,
                           attempts=attempts, latency_s=time.monotonic() - started, design=design)
        return resp


def _describe(exc: Exception, status: int | None) -> str:
    msg = " ".join(str(getattr(exc, "message", None) or exc).split())[:300]
    return f"HTTP {status}: {msg}" if status else f"{type(exc).__name__}: {msg}"


class OpenAIChat(ChatBackend):
    """Chat completions through ``openai.OpenAI`` (OpenAI or any OpenAI-compatible server)."""

    def __init__(self, spec: AgentSpec, ledger: UsageLedger | None = None,
                 sleep: Callable[[float], None] = time.sleep, env: Mapping[str, str] | None = None) -> None:
        super().__init__(spec, ledger, sleep, env)
        import openai

        self.sdk = openai
        #: OpenAI reasoning models take ``max_completion_tokens`` (not ``max_tokens``) and no temperature
        self.reasoning = spec.provider == "openai" and spec.model.startswith(REASONING_PREFIXES)
        self.completion_tokens = self.reasoning
        self.client = openai.OpenAI(**self._client_kwargs())

    def _call(self, system: str, messages: list[dict[str, str]]) -> ChatResponse:
        kwargs: dict[str, Any] = {"model": self.spec.model,
                                  "messages": [{"role": "system", "content": system}, *messages]}
        if self.completion_tokens:
            kwargs["max_completion_tokens"] = self.spec.max_tokens
        else:
            kwargs["max_tokens"] = self.spec.max_tokens
        if self.spec.temperature is not None and not self.reasoning:
            kwargs["temperature"] = self.spec.temperature
        if self.spec.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            out = self.client.chat.completions.create(**kwargs)
        except self.sdk.BadRequestError as exc:
            if self.completion_tokens or "max_completion_tokens" not in str(exc):
                raise
            self.completion_tokens = True  # the server asked for the newer parameter: use it from now on
            return self._call(system, messages)
        if not out.choices:
            raise LLMError(f"{self.spec.label()}: reply has no choices")
        text = out.choices[0].message.content or ""
        usage = out.usage
        return ChatResponse(text=text, model=out.model or self.spec.model,
                            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))


class AnthropicChat(ChatBackend):
    """Messages API through ``anthropic.Anthropic``."""

    def __init__(self, spec: AgentSpec, ledger: UsageLedger | None = None,
                 sleep: Callable[[float], None] = time.sleep, env: Mapping[str, str] | None = None) -> None:
        super().__init__(spec, ledger, sleep, env)
        import anthropic

        self.sdk = anthropic
        self.client = anthropic.Anthropic(**self._client_kwargs())

    def _call(self, system: str, messages: list[dict[str, str]]) -> ChatResponse:
        kwargs: dict[str, Any] = {"model": self.spec.model, "max_tokens": self.spec.max_tokens,
                                  "system": system, "messages": messages}
        if self.spec.temperature is not None:
            # This SDK generation no longer exposes `temperature`; the API still reads it.
            kwargs["extra_body"] = {"temperature": self.spec.temperature}
        out = self.client.messages.create(**kwargs)
        text = "".join(getattr(block, "text", "") for block in out.content
                       if getattr(block, "type", "") == "text")
        usage = out.usage
        return ChatResponse(text=text, model=out.model or self.spec.model,
                            prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                            completion_tokens=int(getattr(usage, "output_tokens", 0) or 0))


def make_backend(spec: AgentSpec, ledger: UsageLedger | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 env: Mapping[str, str] | None = None) -> ChatBackend:
    """The chat backend for an LLM spec (``openai`` / ``openai_compatible`` / ``anthropic``)."""
    if spec.provider in ("openai", "openai_compatible"):
        return OpenAIChat(spec, ledger, sleep, env)
    if spec.provider == "anthropic":
        return AnthropicChat(spec, ledger, sleep, env)
    raise AgentSpecError(f"{spec.source_path or spec.role}: field provider: "
                         f"{spec.provider!r} has no chat backend")
