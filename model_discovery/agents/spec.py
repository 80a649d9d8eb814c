"""Agent specs: one YAML file per role under ``etc/agent_spec/``, validated by :class:`AgentSpec`.

A spec names the role, the backend (``openai``, ``anthropic``, ``openai_compatible`` for vLLM /
Ollama / any server speaking the OpenAI API, or ``symbolic`` for the genetic-programming agents
that need no LLM), the model, sampling settings and the system prompt file (a path relative to
the spec). Loading never half-succeeds: a bad spec raises :class:`AgentSpecError` with one line
naming the file and the field::

    etc/agent_spec/reviewer.yaml: field temperature: Input should be less than or equal to 2

:func:`resolve_provider` makes the offline default work: an LLM spec whose API key (or base URL)
is not available becomes a symbolic spec, with one logged notice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from model_discovery.agents.types import AgentRole
from model_discovery.errors import field_error

log = logging.getLogger("model_discovery.agents")

Provider = Literal["openai", "anthropic", "openai_compatible", "symbolic"]
LLM_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "openai_compatible")
DEFAULT_KEY_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
                                   "openai_compatible": "OPENAI_API_KEY"}
#: hosts of the providers' own APIs: the only ones the default key variables are sent to
OFFICIAL_HOSTS: dict[str, tuple[str, ...]] = {"openai": ("api.openai.com",), "anthropic": ("api.anthropic.com",)}


class AgentSpecError(ValueError):
    """A spec file is unreadable or invalid; the message is one line naming the file and field."""


class AgentSpec(BaseModel):
    """Everything needed to build one role's agent."""

    model_config = ConfigDict(extra="forbid")

    role: AgentRole
    provider: Provider
    model: str = Field("", validate_default=True, description="model name; required for LLM providers")
    base_url: str | None = Field(None, validate_default=True,
                                 description="API base URL; required for openai_compatible")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    temperature: float | None = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(4096, gt=0, le=200_000)
    system_prompt_file: str | None = Field(None, description="path relative to the spec file")
    retries: int = Field(4, ge=0, le=20, description="retries on 429 / 5xx / timeouts")
    timeout_s: float = Field(120.0, gt=0)
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry")
    max_backoff_s: float = Field(60.0, ge=0)
    max_repairs: int = Field(2, ge=0, le=10, description="re-asks after malformed structured output")
    max_rounds: int | None = Field(None, ge=1, le=50,
                                   description="reviewer: review rounds; coder: debug tries")
    knowledge_k: int = Field(4, ge=0, le=50, description="knowledge snippets put in the prompt")
    json_mode: bool = Field(True, description="ask OpenAI-style servers for a JSON object reply")
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings")
    source_path: Path | None = Field(None, exclude=True, description="the file this spec came from")
    fallback_from: str | None = Field(None, exclude=True,
                                      description="original provider when resolved to symbolic")

    @field_validator("model")
    @classmethod
    def _model_named(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("provider") in LLM_PROVIDERS and not v.strip():
            raise ValueError(f"required for provider {info.data.get('provider')!r}")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("provider") == "openai_compatible" and not v:
            raise ValueError("required for provider 'openai_compatible' (e.g. http://localhost:8000/v1)")
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    # -- derived ----------------------------------------------------------------------------
    @property
    def is_llm(self) -> bool:
        return self.provider in LLM_PROVIDERS

    def key_env(self) -> str | None:
        """The environment variable that holds this spec's API key: ``api_key_env`` when set;
        else the provider's default (``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``) only when the
        requests go to that provider's own API, so a key is never sent to a foreign server
        (an ``openai_compatible`` server, or a ``base_url`` elsewhere) unless the spec asks."""
        if self.api_key_env:
            return self.api_key_env
        if self.provider == "openai_compatible" or (self.base_url and urlparse(self.base_url).hostname
                                                    not in OFFICIAL_HOSTS.get(self.provider, ())):
            return None
        return DEFAULT_KEY_ENV.get(self.provider)

    def api_key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The API key from the environment, or None."""
        env = os.environ if env is None else env
        name = self.key_env()
        value = env.get(name, "") if name else ""
        return value or None

    def prompt_path(self) -> Path | None:
        """Absolute path of the system prompt file (relative paths resolve against the spec)."""
        if not self.system_prompt_file:
            return None
        path = Path(self.system_prompt_file)
        if not path.is_absolute() and self.source_path is not None:
            path = self.source_path.parent / path
        return path

    def label(self) -> str:
        where = f" ({self.source_path})" if self.source_path else ""
        return f"{self.role} [{self.provider}{':' + self.model if self.model else ''}]{where}"


def default_spec_dir() -> Path:
    """``$MODIS_AGENT_SPECS`` or ``etc/agent_spec`` at the repository root."""
    env = os.environ.get("MODIS_AGENT_SPECS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "etc" / "agent_spec"


def load_agent_spec(path: str | Path) -> AgentSpec:
    """Read and validate one spec; errors are one line naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise AgentSpecError(f"{path}: cannot read agent spec: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise AgentSpecError(f"{path}: invalid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise AgentSpecError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise AgentSpecError(f"{path}: {field_error(exc)}") from exc
    spec = spec.model_copy(update={"source_path": path.resolve()})
    prompt = spec.prompt_path()
    if prompt is not None and not prompt.is_file():
        raise AgentSpecError(f"{path}: field system_prompt_file: no such file {prompt}")
    return spec


def load_agent_specs(directory: str | Path | None = None) -> dict[str, AgentSpec]:
    """All ``*.yaml`` specs directly in ``directory`` (default :func:`default_spec_dir`), by role."""
    directory = Path(directory) if directory is not None else default_spec_dir()
    if not directory.is_dir():
        raise AgentSpecError(f"{directory}: agent spec directory does not exist")
    specs: dict[str, AgentSpec] = {}
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        spec = load_agent_spec(path)
        if spec.role in specs:
            raise AgentSpecError(f"{path}: field role: {spec.role!r} is also defined in "
                                 f"{specs[spec.role].source_path}")
        specs[spec.role] = spec
    if not specs:
        raise AgentSpecError(f"{directory}: no agent specs (*.yaml) found")
    return specs


def resolve_provider(spec: AgentSpec, env: Mapping[str, str] | None = None) -> AgentSpec:
    """The spec to actually use: an LLM spec with no reachable endpoint falls back to symbolic.

    ``openai`` / ``anthropic`` need an API key, unless the spec names its own ``base_url`` (a
    local server). ``openai_compatible`` always has a ``base_url`` and needs no key.
    """
    if not spec.is_llm:
        return spec
    if spec.api_key(env) or spec.base_url:
        return spec
    log.warning("agent %s: no %s and no base_url; FALLING BACK to the symbolic %s",
                spec.label(), spec.key_env(), spec.role)
    return spec.model_copy(update={"provider": "symbolic", "fallback_from": spec.provider})
