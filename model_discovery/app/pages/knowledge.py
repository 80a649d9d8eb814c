"""Knowledge: search the seed library's paper notes and unit sources (offline by default)."""

from __future__ import annotations

import re

import streamlit as st

from model_discovery.knowledge import ALL_SOURCES, KnowledgeConfig, KnowledgeEngine

st.title("Knowledge")
st.caption("BM25 search over the library's paper notes and unit sources. Turn on online search to "
           "also ask arXiv and Semantic Scholar (cached on disk).")


@st.cache_resource(show_spinner=False)
def _engine(online: bool) -> KnowledgeEngine:
    return KnowledgeEngine(KnowledgeConfig(offline=not online))


c1, c2 = st.columns([4, 1])
query = c1.text_input("Search", placeholder="e.g. linear attention with gating, state space model",
                      key="knowledge_query")
k = c2.number_input("Results", min_value=1, max_value=50, value=8)
c3, c4 = st.columns([3, 1])
online = c4.toggle("Online search", value=False, help="query arXiv and Semantic Scholar too")
sources = c3.multiselect("Sources", list(ALL_SOURCES), default=list(ALL_SOURCES) if online else ["library"],
                         disabled=not online)
if not online:
    sources = ["library"]

if not query.strip():
    st.info("Type a query to search the library.", icon=":material/search:")
    st.stop()

with st.spinner("Searching…"):
    hits = _engine(online).search(query, k=int(k), sources=sources or ["library"])
if not hits:
    st.warning(f"No results for “{query}”.")
st.caption(f"{len(hits)} results for “{query}”")
for hit in hits:
    with st.container(border=True):
        link = f" · [{hit.url}]({hit.url})" if hit.url.startswith(("http://", "https://")) else \
            (f" · `{hit.url}`" if hit.url else "")
        st.markdown(f"**{hit.title}**  \n:gray[{hit.source} · score {hit.score:.3f}]{link}")
        text = hit.text if len(hit.text) <= 1200 else hit.text[:1200] + " …"
        if hit.url.endswith(".py"):  # a unit's source: shown as code, never as Markdown
            st.code(text, language="python")
        else:
            st.markdown(re.sub(r"^#+\s*(.+)$", r"**\1**", text, flags=re.M))  # notes' headings as bold lines
