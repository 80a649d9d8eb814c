"""Knowledge engine: recorded Semantic Scholar / arXiv answers over a local server, the on-disk
cache, offline failures, and BM25 search over the library."""

from __future__ import annotations

import logging
import socket

import pytest

from model_discovery.knowledge import BM25, KnowledgeConfig, KnowledgeEngine, LibraryIndex, tokenize
from tests.knowledge.fake_scholar_server import FakeScholarServer


def _config(tmp_path, server: FakeScholarServer | None = None, **kw) -> KnowledgeConfig:
    urls = {"s2_base_url": server.s2_url, "arxiv_base_url": server.arxiv_url} if server else {}
    return KnowledgeConfig(cache_dir=tmp_path / "cache", offline=False, timeout_s=5, **{**urls, **kw})


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_semantic_scholar_recorded_and_cached(tmp_path):
    with FakeScholarServer() as server:
        engine = KnowledgeEngine(_config(tmp_path, server))
        hits = engine.search("linear attention", k=2, sources=("s2",))
        assert [h.source for h in hits] == ["s2", "s2"]
        assert hits[0].title == "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention (2020)"
        assert "kernel feature maps" in hits[0].text and hits[0].url.startswith("https://www.semanticscholar.org/")
        assert hits[1].text == "Data-dependent gates make linear attention competitive."  # tldr when no abstract
        assert hits[1].url == "https://arxiv.org/abs/2312.06635"
        path, query = server.requests[0]
        assert path == "/graph/v1/paper/search" and query["query"] == ["linear attention"]
        again = KnowledgeEngine(_config(tmp_path, server)).search("Linear  Attention", k=2, sources=("s2",))
        assert again == hits and len(server.requests) == 1  # cache hit: no second request


def test_arxiv_recorded_and_cached(tmp_path):
    with FakeScholarServer() as server:
        engine = KnowledgeEngine(_config(tmp_path, server))
        hits = engine.search("linear attention", k=2, sources=("arxiv",))
        assert [h.title for h in hits] == [
            "Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention (2020)",
            "Gated Linear Attention Transformers with Hardware-Efficient Training (2023)"]
        assert hits[0].url == "http://arxiv.org/abs/2006.16236v3" and "associativity" in hits[0].text
        path, query = server.requests[0]
        assert path == "/api/query" and query["search_query"] == ["linear attention"]
        assert engine.search("linear attention", k=2, sources=("arxiv",)) == hits
        assert engine.arxiv.network_calls == 1 and len(server.requests) == 1


def test_cache_hits_never_touch_the_network(tmp_path):
    with FakeScholarServer() as server:
        KnowledgeEngine(_config(tmp_path, server)).search("linear attention", 2, sources=("arxiv", "s2"))
    cfg = _config(tmp_path, s2_base_url=_dead_url(), arxiv_base_url=_dead_url() + "/api/query")
    engine = KnowledgeEngine(cfg)
    hits = engine.search("linear attention", 2, sources=("arxiv", "s2"))
    assert len(hits) == 2 and {h.source for h in hits} == {"arxiv", "s2"}
    assert engine.arxiv.network_calls == 0 and engine.s2.network_calls == 0


def test_network_failures_give_empty_results_and_one_warning(tmp_path, caplog):
    cfg = _config(tmp_path, s2_base_url=_dead_url(), arxiv_base_url=_dead_url() + "/api/query")
    engine = KnowledgeEngine(cfg)
    with caplog.at_level(logging.WARNING, logger="model_discovery.knowledge"):
        assert engine.search("state space models", 3, sources=("arxiv", "s2")) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in ln and "continuing without it" in ln for ln in lines)
    with FakeScholarServer(fail_with=500) as server:
        engine = KnowledgeEngine(_config(tmp_path, server))
        assert engine.search("state space models", 3, sources=("s2", "arxiv")) == []
    assert not list((tmp_path / "cache").rglob("*.json"))  # failures are not cached


def test_a_failed_service_is_not_asked_again_for_a_while(tmp_path, caplog):
    cfg = _config(tmp_path, s2_base_url=_dead_url(), arxiv_base_url=_dead_url() + "/api/query", retry_after_s=600)
    engine = KnowledgeEngine(cfg)
    with caplog.at_level(logging.WARNING, logger="model_discovery.knowledge"):
        for query in ("state space models", "linear attention", "gated convolutions"):
            engine.search(query, 2, sources=("s2",))
    assert engine.s2.network_calls == 1 and len(caplog.records) == 1  # one failure, one warning
    assert "for 600 s" in caplog.records[0].getMessage()
    engine.s2.down_until = 0.0  # the window has passed: asked again
    engine.search("state space models", 2, sources=("s2",))
    assert engine.s2.network_calls == 2


def test_configured_sources_and_one_snippet_per_text(tmp_path):
    with FakeScholarServer() as server:
        engine = KnowledgeEngine(_config(tmp_path, server, sources=["library"]))
        hits = engine.search("gated linear attention", k=4)  # no sources named: the configured ones
        assert hits and {h.source for h in hits} == {"library"} and engine.s2.network_calls == 0
        both = KnowledgeEngine(_config(tmp_path, server)).search("gated linear attention", k=6,
                                                                 sources=("arxiv", "s2"))
    texts = [" ".join(h.text.lower().split())[:200] for h in both]
    assert len(texts) == len(set(texts))


def test_offline_mode_and_library_only_defaults(tmp_path):
    engine = KnowledgeEngine(KnowledgeConfig(cache_dir=tmp_path / "c", offline=True,
                                             s2_base_url=_dead_url(), arxiv_base_url=_dead_url()))
    hits = engine.search("causal softmax attention heads", k=3)
    assert hits and all(h.source == "library" for h in hits)
    assert engine.s2.network_calls == 0 and engine.arxiv.network_calls == 0
    with pytest.raises(ValueError, match="unknown knowledge source"):
        engine.search("x", sources=("google",))


def test_merge_interleaves_sources(tmp_path):
    with FakeScholarServer() as server:
        engine = KnowledgeEngine(_config(tmp_path, server))
        hits = engine.search("gated linear attention", k=3)
    assert {h.source for h in hits} == {"library", "arxiv", "s2"}  # each source's best hit first


@pytest.fixture
def small_library(tmp_path):
    root = tmp_path / "lib"
    (root / "notes").mkdir(parents=True)
    (root / "units" / "mixer").mkdir(parents=True)
    (root / "units" / "norm").mkdir(parents=True)
    (root / "notes" / "retnet.md").write_text(
        "# RetNet\n\nRetentive network, arXiv 2307.08621.\n\n## Idea\n\nMulti-scale retention replaces "
        "softmax attention with exponentially decaying recurrence.\n\n## Units\n\nMultiScaleRetention mixer.\n")
    (root / "notes" / "hyena.md").write_text("# Hyena\n\nLong convolutions with implicit filters and gating.\n")
    (root / "units" / "mixer" / "DecayMixer.py").write_text(
        '"""Exponential decay recurrence over the sequence (retention-like)."""\n'
        "from model_discovery.gau.runtime import GAUBase\n\n\nclass DecayMixer(GAUBase):\n"
        "    def _forward(self, X, **Z):\n        return X, {}\n")
    (root / "units" / "norm" / "RMSNormUnit.py").write_text(
        '"""Root mean square normalisation."""\nfrom model_discovery.gau.runtime import GAUBase\n\n\n'
        "class RMSNormUnit(GAUBase):\n    def _forward(self, X, **Z):\n        return X, {}\n")
    return root


def test_library_index_bm25(small_library):
    index = LibraryIndex(small_library)
    assert len(index) == 6  # retnet: intro + two sections; hyena: one; two units
    hits = index.search("retention replaces softmax attention", k=3)
    assert hits[0].title == "RetNet — Idea" and hits[0].url == "library/notes/retnet.md"
    assert hits[0].score >= hits[1].score > 0 and hits[0].source == "library"
    assert index.search("decay recurrence", k=1)[0].title == "unit mixer/DecayMixer"
    assert index.search("rms normalisation", 1)[0].url == "library/units/norm/RMSNormUnit.py"
    assert index.search("zebra quantum", 3) == []


def test_tokenize_and_bm25():
    assert tokenize("MultiScaleRetention uses d_model heads") == ["multi", "scale", "retention", "uses",
                                                                 "model", "heads"]
    bm = BM25([["a1", "b1"], ["b1", "b1", "c1"], ["d1"]])
    s = bm.scores(["b1"])
    assert s[1] > s[0] > 0 and s[2] == 0


def test_real_library_finds_catalogue_units():
    hits = LibraryIndex(__import__("model_discovery.gau.library", fromlist=["x"]).library_root()).search(
        "causal self attention", 5)
    assert any("CausalSelfAttention" in h.title for h in hits)
