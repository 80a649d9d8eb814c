"""Knowledge: literature search (Semantic Scholar, arXiv) with an on-disk cache, and offline
BM25 search over the seed library's paper notes and unit sources."""

from model_discovery.knowledge.engine import KnowledgeEngine
from model_discovery.knowledge.library_index import BM25, LibraryIndex, tokenize
from model_discovery.knowledge.types import ALL_SOURCES, KnowledgeConfig

__all__ = ["KnowledgeEngine", "KnowledgeConfig", "ALL_SOURCES", "LibraryIndex", "BM25", "tokenize"]
