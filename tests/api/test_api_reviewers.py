"""GET /api/reviewers (the veto ledger with who answered) and GET /api/reviewers/in-use."""

from __future__ import annotations

from typing import Any

from test_api_runs import client_for, decision_row

from store.journal import Journal

RULE = {"groq_check": "rule-based", "ollama_check": "rule-based", "sizing": "rule-based"}
NONE = {"groq_check": None, "ollama_check": None, "sizing": None}


def proposal(run_id: str, minute: int, labels: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    verdict = {"verdict": "buy", "reviewer": labels["groq_check"]}
    return decision_row(
        run_id,
        minute,
        action="buy",
        market="KRW-BTC",
        reason="agreed",
        reviewer_labels=labels,
        nodes={
            "input": {"closes": {"KRW-BTC": 100.0 + minute}},
            "ml_signal": {"proposal": {"action": "buy", "market": "KRW-BTC"}},
        },
        verdicts={"groq": verdict, "ollama": verdict},
        **overrides,
    )


async def test_in_use_names_the_latest_reviewer_of_each_node_and_whether_it_is_an_llm(
    journal: Journal,
) -> None:
    journal.record_decision(proposal("old", 0, RULE))
    llm = {"groq_check": "groq:llama-3.1-8b-instant", "ollama_check": None, "sizing": "rule-based"}
    journal.record_decision(proposal("new", 1, llm))
    journal.record_decision(decision_row("hold", 2, reviewer_labels=NONE))
    journal.record_decision(decision_row("other", 3, session_id="session-b", reviewer_labels=NONE))
    async with client_for(journal) as client:
        body = (await client.get("/api/reviewers/in-use", params={"session": "session-a"})).json()
        latest = (await client.get("/api/reviewers/in-use")).json()
    nodes = body["nodes"]
    assert nodes["groq_check"]["reviewer"] == "groq:llama-3.1-8b-instant"
    assert nodes["groq_check"]["llm"] is True and nodes["groq_check"]["run_id"] == "new"
    # Ollama was not asked in the newest run: the one before says who answered it.
    assert nodes["ollama_check"] == {
        **nodes["ollama_check"],
        "reviewer": "rule-based",
        "llm": False,
        "run_id": "old",
    }
    assert nodes["ollama_check"]["setting"] == "LXA_OLLAMA_HOST"
    assert nodes["sizing"]["llm"] is False
    # Without a session: this server's (none here), else the journal's latest, which asked no one.
    assert latest["session_id"] == "session-b"
    assert latest["nodes"]["groq_check"]["reviewer"] is None
    assert latest["nodes"]["groq_check"]["llm"] is None


async def test_the_ledger_counts_who_answered_each_reviewer(journal: Journal) -> None:
    journal.record_decision(proposal("a", 0, RULE))
    journal.record_decision(proposal("b", 1, RULE))
    journal.record_decision(decision_row("c", 2, reviewer_labels=NONE))
    async with client_for(journal) as client:
        body = (await client.get("/api/reviewers")).json()
    assert body["labels"] == {"groq": {"rule-based": 2}, "ollama": {"rule-based": 2}}
    assert body["reviewers"]["groq"]["asked"] == 2
    assert "rows" not in body
