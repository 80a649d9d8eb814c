"""Semantic Scholar and arXiv search with an on-disk JSON cache.

Cache entries are keyed by (source, query, k); a hit never touches the network. A failed lookup
(no network, HTTP error, bad payload) returns an empty list with one logged warning line; the
failure is cached too: the service is not asked again for ``KnowledgeConfig.retry_after_s``
seconds (one warning, not one per agent call), and the query itself is retried after that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path

from model_discovery.knowledge.types import KnowledgeConfig, Snippet
from model_discovery.safe_io import write_text

log = logging.getLogger("model_discovery.knowledge")


class JsonCache:
    """One JSON file per key under ``root/<namespace>/``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, namespace: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / namespace / f"{digest}.json"

    def get(self, namespace: str, key: str) -> list[dict] | None:
        path = self._path(namespace, key)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return data.get("results")

    def put(self, namespace: str, key: str, results: list[dict]) -> None:
        write_text(self._path(namespace, key), json.dumps({"key": key, "results": results}, indent=1))


class RemoteSearch(ABC):
    """A cached literature search: ``search(query, k) -> list[Snippet]``, never raising."""

    name: str = ""

    def __init__(self, config: KnowledgeConfig, cache: JsonCache | None = None) -> None:
        self.config = config
        self.cache = cache if cache is not None else JsonCache(config.cache_dir)
        self.network_calls = 0
        self.down_until = 0.0  # monotonic time before which the service is not asked again

    @abstractmethod
    def _fetch(self, query: str, k: int) -> list[Snippet]:
        """Query the service (may raise)."""

    def cache_key(self, query: str, k: int) -> str:
        return f"{' '.join(query.lower().split())}|k={k}"

    def search(self, query: str, k: int = 5) -> list[Snippet]:
        key = self.cache_key(query, k)
        cached = self.cache.get(self.name, key)
        if cached is not None:
            return [Snippet.model_validate(s) for s in cached]
        if self.config.offline or time.monotonic() < self.down_until:
            return []
        try:
            self.network_calls += 1
            results = self._fetch(query, k)
        except Exception as exc:  # noqa: BLE001 - offline or service errors must not stop discovery
            msg = " ".join(str(exc).split())[:200] or type(exc).__name__
            self.down_until = time.monotonic() + self.config.retry_after_s
            log.warning("knowledge: %s search for %r failed (%s: %s); continuing without it for %.0f s",
                        self.name, query[:80], type(exc).__name__, msg, self.config.retry_after_s)
            return []
        self.cache.put(self.name, key, [s.model_dump() for s in results])
        return results


class SemanticScholarSearch(RemoteSearch):
    """Paper search through the ``semanticscholar`` client (``/graph/v1/paper/search``)."""

    name = "s2"
    FIELDS = ["title", "abstract", "url", "year", "externalIds", "tldr"]

    def _fetch(self, query: str, k: int) -> list[Snippet]:
        from semanticscholar import SemanticScholar

        client = SemanticScholar(timeout=int(max(1, self.config.timeout_s)),
                                 api_key=os.environ.get(self.config.s2_api_key_env) or None,
                                 api_url=self.config.s2_base_url.rstrip("/"), retry=False)
        page = client.search_paper(query, limit=max(1, min(k, 100)), fields=self.FIELDS)
        out: list[Snippet] = []
        for rank, paper in enumerate(page.items[:k]):
            raw = getattr(paper, "raw_data", None) or {}
            title = raw.get("title") or getattr(paper, "title", "") or ""
            tldr = (raw.get("tldr") or {}).get("text") if isinstance(raw.get("tldr"), dict) else None
            text = raw.get("abstract") or tldr or ""
            year = raw.get("year")
            if year:
                title = f"{title} ({year})"
            arxiv_id = (raw.get("externalIds") or {}).get("ArXiv")
            url = raw.get("url") or (f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else "")
            out.append(Snippet(source="s2", title=title, text=text, url=url, score=1.0 / (1 + rank)))
        return out


class ArxivSearch(RemoteSearch):
    """Atom API search through the ``arxiv`` client, with a configurable endpoint."""

    name = "arxiv"

    def _fetch(self, query: str, k: int) -> list[Snippet]:
        import arxiv

        client = arxiv.Client(page_size=max(1, min(k, 100)), delay_seconds=0.0, num_retries=0)
        client.query_url_format = self.config.arxiv_base_url.rstrip("?") + "?{}"
        search = arxiv.Search(query=query, max_results=k)
        return [Snippet(source="arxiv", title=" ".join(result.title.split())
                        + (f" ({result.published.year})" if getattr(result, "published", None) else ""),
                        text=" ".join(result.summary.split()), url=result.entry_id, score=1.0 / (1 + rank))
                for rank, result in enumerate(client.results(search))]
