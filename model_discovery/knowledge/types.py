"""Knowledge results and configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.paths import cache_root

Source = Literal["library", "arxiv", "s2"]
ALL_SOURCES: tuple[Source, ...] = ("library", "arxiv", "s2")


class Snippet(BaseModel):
    """One search hit: where it came from, a title, a short text and a link."""

    model_config = ConfigDict(extra="forbid")
    source: Source
    title: str
    text: str
    url: str = ""
    score: float = 0.0

    def render(self, max_chars: int = 800) -> str:
        """``[source] title (url)\\ntext`` for prompts."""
        text = self.text if len(self.text) <= max_chars else self.text[:max_chars] + " …"
        link = f" ({self.url})" if self.url else ""
        return f"[{self.source}] {self.title}{link}\n{text}"


def default_cache_dir() -> Path:
    """``knowledge/`` under the project's cache root (:func:`model_discovery.paths.cache_root`)."""
    return cache_root() / "knowledge"


class KnowledgeConfig(BaseModel):
    """Where to search: endpoints, cache, library root; ``offline`` skips the network."""

    model_config = ConfigDict(extra="forbid")
    cache_dir: Path = Field(default_factory=default_cache_dir)
    library_root: Path | None = Field(None, description="default: the project's library/")
    s2_base_url: str = Field("https://api.semanticscholar.org",
                             description="Semantic Scholar API root (the client appends /graph/v1)")
    s2_api_key_env: str = "S2_API_KEY"
    arxiv_base_url: str = Field("https://export.arxiv.org/api/query", description="arXiv Atom API endpoint")
    timeout_s: float = Field(15.0, gt=0)
    retry_after_s: float = Field(600.0, ge=0, description="after a failed remote search, seconds before "
                                 "that service is asked again")
    sources: list[Source] = Field(default_factory=lambda: list(ALL_SOURCES),
                                  description="sources searched when a caller names none")
    offline: bool = Field(default_factory=lambda: os.environ.get("MODIS_OFFLINE", "") not in ("", "0"),
                          description="no network searches (default: set when $MODIS_OFFLINE is neither empty nor 0)")
