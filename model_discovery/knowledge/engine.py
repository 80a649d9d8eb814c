"""One search entry point over the local library, arXiv and Semantic Scholar."""

from __future__ import annotations

from collections.abc import Iterable

from model_discovery.gau.library import library_root
from model_discovery.knowledge.library_index import LibraryIndex
from model_discovery.knowledge.remote import ArxivSearch, JsonCache, SemanticScholarSearch
from model_discovery.knowledge.types import ALL_SOURCES, KnowledgeConfig, Snippet


class KnowledgeEngine:
    """``search(query, k, sources)``: the best ``k`` snippets over the chosen sources.

    Each source returns up to ``k`` hits; scores are normalised per source (best hit = 1.0) and the
    merged list is ordered by normalised score, ties broken by source order, so every source gets
    its best hits in. Remote failures give no hits from that source, never an exception.
    """

    def __init__(self, config: KnowledgeConfig | None = None) -> None:
        self.config = config or KnowledgeConfig()
        cache = JsonCache(self.config.cache_dir)
        self.arxiv = ArxivSearch(self.config, cache)
        self.s2 = SemanticScholarSearch(self.config, cache)
        self._library: LibraryIndex | None = None

    @property
    def library(self) -> LibraryIndex:
        if self._library is None:
            root = self.config.library_root
            if root is None:
                root = library_root()
            self._library = LibraryIndex(root)
        return self._library

    def search(self, query: str, k: int = 5, sources: Iterable[str] | None = None) -> list[Snippet]:
        """The best ``k`` snippets over ``sources`` (default: the configured ones), one per text."""
        sources = tuple(self.config.sources if sources is None else sources)
        unknown = [s for s in sources if s not in ALL_SOURCES]
        if unknown:
            raise ValueError(f"unknown knowledge source(s) {unknown}; choose from {list(ALL_SOURCES)}")
        if k <= 0 or not query.strip():
            return []
        ranked: list[tuple[float, int, int, Snippet]] = []
        for si, source in enumerate(sources):
            if source == "library":
                hits = self.library.search(query, k)
            elif source == "arxiv":
                hits = self.arxiv.search(query, k)
            else:
                hits = self.s2.search(query, k)
            top = max((h.score for h in hits), default=0.0) or 1.0
            for rank, hit in enumerate(hits):
                ranked.append((hit.score / top, si, rank, hit))
        ranked.sort(key=lambda t: (-t[0], t[2], t[1]))
        out: list[Snippet] = []
        seen: set[str] = set()
        for *_, hit in ranked:  # the same paper from two services, or a note indexed twice
            key = " ".join(hit.text.lower().split())[:200] or hit.title.lower()
            if key not in seen:
                seen.add(key)
                out.append(hit)
        return out[:k]
