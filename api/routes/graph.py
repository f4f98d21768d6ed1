"""The decision graph's shape, read from the compiled LangGraph graph."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter, Depends

from api.deps import require_read_access
from api.schemas import GraphEdge, GraphOut
from graph.builder import build_graph, graph_mermaid

router = APIRouter(prefix="/api/graph", tags=["graph"], dependencies=[Depends(require_read_access)])

_TERMINALS = frozenset({"__start__", "__end__"})


@cache
def describe_graph() -> GraphOut:
    """Describe the compiled graph once per process (compiling takes a while)."""
    drawable = build_graph().get_graph()
    nodes = [name for name in drawable.nodes if name not in _TERMINALS]
    edges = [
        GraphEdge(source=edge.source, target=edge.target, conditional=edge.conditional)
        for edge in drawable.edges
    ]
    return GraphOut(mermaid=graph_mermaid(), nodes=nodes, edges=edges)


@router.get("", response_model=GraphOut)
def get_graph() -> GraphOut:
    """Return the graph as Mermaid text and as node and edge lists."""
    return describe_graph()
