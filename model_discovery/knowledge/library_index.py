"""Offline search over the seed library: paper notes (``library/notes/*.md``, one document per
``##`` section) and unit docstrings and sources (``library/units/<role>/<Unit>.py``), ranked with
Okapi BM25 implemented on the standard library.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from model_discovery.knowledge.types import Snippet

_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+")
_STOP = frozenset("""a an and are as at be by for from has have in is it its of on or that the this to
was were with we our not can which into than then self def return import none true false""".split())


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; CamelCase and snake_case identifiers are split into words."""
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1]


@dataclass
class Document:
    title: str
    text: str
    url: str
    tokens: list[str]


class BM25:
    """Okapi BM25 over a fixed list of token lists."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = [len(d) for d in docs]
        self.avgdl = (sum(self.len) / len(docs)) if docs else 0.0
        df = Counter(t for d in docs for t in set(d))
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        norm = self.avgdl or 1
        return [sum((self.idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + self.k1 * (1 - self.b + self.b * dl / norm))
                     for t in query if tf.get(t, 0)), 0.0)
                for tf, dl in zip(self.tf, self.len)]


def _note_documents(root: Path) -> list[Document]:
    docs: list[Document] = []
    for path in sorted((root / "notes").glob("*.md")):
        text = path.read_text(errors="replace")
        title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("# ")), path.stem)
        sections = re.split(r"(?m)^(?=## )", text)
        for i, section in enumerate(sections):
            section = section.strip()
            if not section:
                continue
            head = section.splitlines()[0].lstrip("# ").strip() if section.startswith("## ") else ""
            name = f"{title} — {head}" if head and i else title
            # the note title is repeated in every section so that section matches the paper name
            docs.append(Document(title=name, text=section, url=f"library/notes/{path.name}",
                                 tokens=tokenize(f"{title} {title} {section}")))
    return docs


def _unit_documents(root: Path) -> list[Document]:
    docs: list[Document] = []
    for path in sorted((root / "units").glob("*/*.py")):
        source = path.read_text(errors="replace")
        try:
            tree = ast.parse(source)
            cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == path.stem), None)
            doc = (ast.get_docstring(tree) or (ast.get_docstring(cls) if cls else None) or "").strip()
        except SyntaxError:
            doc = ""
        role = path.parent.name
        text = f"{path.stem} ({role}): {doc}" if doc else f"{path.stem} ({role})"
        tokens = tokenize(f"{path.stem} {path.stem} {role} {doc} {doc}") + tokenize(source)
        docs.append(Document(title=f"unit {role}/{path.stem}", text=f"{text}\n\n{source}",
                             url=f"library/units/{role}/{path.name}", tokens=tokens))
    return docs


class LibraryIndex:
    """BM25 index over one library root (notes sections and unit files)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.documents = _note_documents(self.root) + _unit_documents(self.root)
        self._bm25 = BM25([d.tokens for d in self.documents])

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, query: str, k: int = 5, max_chars: int = 1200) -> list[Snippet]:
        """Best ``k`` documents with a positive score, best first."""
        q = tokenize(query)
        if not q or not self.documents:
            return []
        scores = self._bm25.scores(q)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        out: list[Snippet] = []
        for i in order[:k]:
            if scores[i] <= 0:
                break
            d = self.documents[i]
            text = d.text if len(d.text) <= max_chars else d.text[:max_chars].rsplit("\n", 1)[0] + "\n…"
            out.append(Snippet(source="library", title=d.title, text=text, url=d.url, score=round(scores[i], 4)))
        return out
