"""`graph`: the trading graph as Mermaid."""

from __future__ import annotations

from app.cli.common import out


def graph() -> None:
    """Print the trading graph as Mermaid (drawn from the compiled graph)."""
    from graph.builder import graph_mermaid

    out.print(graph_mermaid(), markup=False, highlight=False)
