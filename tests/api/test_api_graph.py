"""GET /api/graph describes the compiled LangGraph graph."""

from __future__ import annotations

import httpx

NODES = ["ml_signal", "groq_check", "ollama_check", "sizing", "trade", "hold"]


async def test_graph_lists_the_six_nodes_in_order(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/graph")

    assert response.status_code == 200
    assert response.json()["nodes"] == NODES


async def test_graph_edges_mark_each_check_as_a_conditional_fork_to_hold(
    client: httpx.AsyncClient,
) -> None:
    edges = (await client.get("/api/graph")).json()["edges"]

    conditional = {(e["source"], e["target"]) for e in edges if e["conditional"]}
    plain = {(e["source"], e["target"]) for e in edges if not e["conditional"]}
    assert conditional == {
        ("ml_signal", "groq_check"),
        ("ml_signal", "hold"),
        ("groq_check", "ollama_check"),
        ("groq_check", "hold"),
        ("ollama_check", "sizing"),
        ("ollama_check", "hold"),
        ("sizing", "trade"),
        ("sizing", "hold"),
    }
    assert plain == {("__start__", "ml_signal"), ("trade", "__end__"), ("hold", "__end__")}


async def test_graph_includes_mermaid_text_naming_every_node(client: httpx.AsyncClient) -> None:
    mermaid = (await client.get("/api/graph")).json()["mermaid"]

    assert mermaid.lstrip().startswith(("graph", "---", "%%", "flowchart"))
    assert all(node in mermaid for node in NODES)
