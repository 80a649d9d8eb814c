"""Lineage: the edges between designs, walked one step or transitively, and the whole graph.

* 'parent' edges mirror ``design.parents``; 'reference' edges name designs a proposal consulted
  (never a parent or itself). Edges are written only with their child, whose parents exist
  already, so parent edges form no cycle and every walk ends at the seeds.
* Walks run in the database (a recursive CTE) and list designs nearest first, then oldest first.
"""

from __future__ import annotations

from sqlalchemy import func, literal, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from model_discovery.evolution.schema import DesignRow, EdgeRow, ResultRow
from model_discovery.evolution.store import TreeStore, _pairs, _scale_rank
from model_discovery.records import EdgeRecord, Graph, GraphNode, Lineage


def _ends(up: bool) -> tuple[InstrumentedAttribute[int], InstrumentedAttribute[int]]:
    """(this design's end, the other end) of an edge, walking towards the parents when ``up``."""
    return (EdgeRow.child_id, EdgeRow.parent_id) if up else (EdgeRow.parent_id, EdgeRow.child_id)


class LineageMixin(TreeStore):
    """Parents, children, references, ancestors, descendants and the whole graph."""

    def _neighbours(self, name: str, kind: str, up: bool) -> list[str]:
        me, other = _ends(up)
        with self._tx() as s:
            did = self._id(s, name)
            q = (select(DesignRow.name).join(EdgeRow, DesignRow.id == other)
                 .where(me == did, EdgeRow.kind == kind).order_by(DesignRow.id))
            return list(s.scalars(q))

    def parents(self, name: str) -> list[str]:
        """Names of the design's parents (empty for a seed)."""
        return self._neighbours(name, "parent", up=True)

    def children(self, name: str) -> list[str]:
        """Names of the designs that have ``name`` as a parent."""
        return self._neighbours(name, "parent", up=False)

    def references(self, name: str) -> list[str]:
        """Designs the proposal of ``name`` consulted as references."""
        return self._neighbours(name, "reference", up=True)

    @staticmethod
    def _closure(s: Session, did: int, up: bool) -> list[tuple[int, str, int]]:
        """(id, name, depth) of every design reachable through parent edges, nearest first."""
        me, other = _ends(up)
        base = (select(other.label("id"), literal(1).label("depth"))
                .where(me == did, EdgeRow.kind == "parent").cte("closure", recursive=True))
        prev = base.alias("prev")
        closure = base.union(select(other, prev.c.depth + 1)
                             .where(me == prev.c.id, EdgeRow.kind == "parent"))
        q = (select(DesignRow.id, DesignRow.name, func.min(closure.c.depth))
             .join(closure, DesignRow.id == closure.c.id)
             .group_by(DesignRow.id, DesignRow.name).order_by(func.min(closure.c.depth), DesignRow.id))
        return [(i, n, int(d)) for i, n, d in s.execute(q)]

    def lineage(self, name: str) -> Lineage:
        """The design, its ancestors and descendants, and the parent edges between them."""
        with self._tx() as s:
            did = self._id(s, name)
            anc = self._closure(s, did, up=True)
            desc = self._closure(s, did, up=False)
            ids = {did} | {i for i, _, _ in anc} | {i for i, _, _ in desc}
            q = (select(EdgeRow.child_id, EdgeRow.parent_id).where(
                EdgeRow.kind == "parent", EdgeRow.child_id.in_(ids), EdgeRow.parent_id.in_(ids))
                .order_by(EdgeRow.child_id, EdgeRow.parent_id))
            names = _pairs(s.execute(select(DesignRow.id, DesignRow.name).where(DesignRow.id.in_(ids))))
            edges = [EdgeRecord(child=names[c], parent=names[p], kind="parent") for c, p in s.execute(q)]
        return Lineage(design=name, ancestors=[n for _, n, _ in anc], descendants=[n for _, n, _ in desc],
                       edges=edges)

    def edges(self, kind: str | None = None) -> list[EdgeRecord]:
        """Every edge (or every edge of one kind), by child then parent in insertion order."""
        child = DesignRow.__table__.alias("c")
        parent = DesignRow.__table__.alias("p")
        q = (select(child.c.name, parent.c.name, EdgeRow.kind)
             .join(child, child.c.id == EdgeRow.child_id).join(parent, parent.c.id == EdgeRow.parent_id)
             .order_by(EdgeRow.child_id, EdgeRow.parent_id))
        if kind is not None:
            q = q.where(EdgeRow.kind == kind)
        with self._tx() as s:
            return [EdgeRecord(child=c, parent=p, kind=k) for c, p, k in s.execute(q)]

    def graph(self) -> Graph:
        """Plain nodes (with the best-rung fitness) and edges, ready for any plotting library."""
        with self._tx() as s:
            best: dict[int, tuple[str, float | None]] = {}
            for did, sc, fit in s.execute(select(ResultRow.design_id, ResultRow.scale, ResultRow.fitness)):
                if did not in best or _scale_rank(sc) > _scale_rank(best[did][0]):
                    best[did] = (sc, fit)
            nodes = [GraphNode(name=r.name, status=r.status, operator=r.operator, generation=r.generation,
                               seed=r.n_parents == 0, best_scale=best.get(r.id, (None, None))[0],
                               fitness=best.get(r.id, (None, None))[1])
                     for r in s.scalars(select(DesignRow).order_by(DesignRow.id))]
        return Graph(nodes=nodes, edges=self.edges())
