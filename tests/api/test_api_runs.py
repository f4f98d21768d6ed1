"""GET /api/runs (list, filters, paging, validation), GET /api/runs/{id}, POST /api/runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import TOKEN_NOT_SET, Runner
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TOKEN = "s3cret-token"


def decision_row(run_id: str, minute: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run_id,
        "session_id": "session-a",
        "bar_ts": T0 + timedelta(minutes=minute),
        "created_at": T0 + timedelta(minutes=minute, seconds=2),
        "trigger": "bar",
        "action": "hold",
        "market": None,
        "reason": "no candidate above threshold",
        "reviewer_labels": {"groq_check": None, "ollama_check": None, "sizing": None},
        "nodes": {"ml_signal": {"proposal": {"action": "hold", "market": None}}},
        "ml": {"model_id": "lgbm-20260301", "signals": {"KRW-BTC": {"p_buy": 0.41}}},
        "verdicts": {"groq": None, "ollama": None},
        "sizing": None,
        "duration_ms": 12.5,
    }
    row.update(overrides)
    return row


def seed(journal: Journal) -> None:
    """Five runs a minute apart: two sessions, buys, sells and holds on two markets."""
    journal.record_decision(decision_row("r0", 0))
    journal.record_decision(decision_row("r1", 1, action="buy", market="KRW-BTC", reason="edge"))
    journal.record_decision(decision_row("r2", 2, action="sell", market="KRW-ETH", reason="tp"))
    journal.record_decision(decision_row("r3", 3, action="buy", market="KRW-ETH", reason="edge"))
    journal.record_decision(decision_row("r4", 4, session_id="session-b"))


def run_ids(body: dict[str, Any]) -> list[str]:
    return [run["run_id"] for run in body["runs"]]


def client_for(journal: Journal, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_health_says_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_list_runs_on_empty_journal_returns_no_rows(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/runs")

    assert response.status_code == 200
    assert response.json() == {"runs": [], "limit": 50, "offset": 0, "total": 0}


async def test_list_runs_returns_summaries_newest_first(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    seed(journal)

    response = await client.get("/api/runs")

    body = response.json()
    assert run_ids(body) == ["r4", "r3", "r2", "r1", "r0"]
    assert body["total"] == 5
    r3 = body["runs"][1]
    assert set(r3) == {
        "run_id",
        "session_id",
        "bar_ts",
        "created_at",
        "trigger",
        "action",
        "market",
        "reason",
        "duration_ms",
        "reviewer_labels",
    }
    assert r3["action"] == "buy"
    assert r3["market"] == "KRW-ETH"
    assert r3["reason"] == "edge"
    assert datetime.fromisoformat(r3["bar_ts"]) == T0 + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("market=KRW-ETH", ["r3", "r2"]),
        ("action=buy", ["r3", "r1"]),
        ("action=buy&market=KRW-BTC", ["r1"]),
        ("session_id=session-b", ["r4"]),
        ("action=sell&session_id=session-b", []),
    ],
)
async def test_list_runs_filters_by_market_action_and_session(
    client: httpx.AsyncClient, journal: Journal, query: str, expected: list[str]
) -> None:
    seed(journal)

    response = await client.get(f"/api/runs?{query}")

    assert response.status_code == 200
    assert run_ids(response.json()) == expected
    assert response.json()["total"] == len(expected)


async def test_list_runs_pages_with_limit_and_offset(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    seed(journal)

    first = (await client.get("/api/runs?limit=2")).json()
    second = (await client.get("/api/runs?limit=2&offset=2")).json()
    last = (await client.get("/api/runs?limit=2&offset=4")).json()

    assert (run_ids(first), run_ids(second), run_ids(last)) == (["r4", "r3"], ["r2", "r1"], ["r0"])
    assert (second["limit"], second["offset"], second["total"]) == (2, 2, 5)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("action=moon", "action"),
        ("market=btc", "market"),
    ],
)
async def test_list_runs_rejects_bad_query_with_422_naming_the_field(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/api/runs?{query}")

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


async def test_list_runs_accepts_the_largest_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/runs?limit=500")

    assert response.status_code == 200
    assert response.json()["limit"] == 500


async def test_get_run_unknown_id_is_404_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/runs/nope-123")

    assert response.status_code == 404
    assert response.json() == {"detail": "run nope-123 not found"}


async def test_get_run_returns_nodes_verdicts_events_orders_and_llm_calls(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    verdict = {"verdict": "buy", "agrees": True, "reasoning": "trend intact", "reviewer": "groq"}
    sizing = {"investment_ratio": 0.2, "order_krw": "20000", "reviewer": "deterministic"}
    decision = decision_row(
        "run-buy",
        5,
        action="buy",
        market="KRW-BTC",
        reason="all checks agreed",
        nodes={"groq_check": verdict, "sizing": sizing},
        verdicts={"groq": verdict, "ollama": verdict},
        sizing=sizing,
        reviewer_labels={"groq_check": "groq", "ollama_check": "ollama", "sizing": "deterministic"},
    )
    journal.record_run(
        decision,
        llm_calls=[
            {
                "node": "groq_check",
                "provider": "groq",
                "model": "llama-3.1-8b",
                "request": {"proposal": "buy"},
                "response": verdict,
                "verdict": "buy",
                "latency_ms": 210.0,
                "created_at": T0,
            },
        ],
        events=[
            {"type": "node_finished", "payload": {"node": "ml_signal"}, "ts": T0},
            {"type": "verdict", "payload": {"node": "groq_check", "agrees": True}, "ts": T0},
        ],
    )
    journal.record_order(
        {
            "identifier": "lxa-run-buy-1",
            "run_id": "run-buy",
            "market": "KRW-BTC",
            "side": "bid",
            "ord_type": "price",
            "price": Decimal("20000"),
            "volume": None,
            "state": "done",
            "created_at": T0,
            "executed_volume": Decimal("0.00012345"),
        }
    )

    response = await client.get("/api/runs/run-buy")

    assert response.status_code == 200
    body = response.json()
    assert body["run_id"] == "run-buy"
    assert body["nodes"]["groq_check"]["reasoning"] == "trend intact"
    assert body["verdicts"]["ollama"]["agrees"] is True
    assert body["sizing"] == sizing
    assert body["ml"]["model_id"] == "lgbm-20260301"
    assert [event["type"] for event in body["events"]] == ["node_finished", "verdict"]
    assert body["events"][1]["payload"] == {"node": "groq_check", "agrees": True}
    assert [(call["node"], call["verdict"]) for call in body["llm_calls"]] == [
        ("groq_check", "buy")
    ]
    [order] = body["orders"]
    assert (order["identifier"], order["price"], order["executed_volume"]) == (
        "lxa-run-buy-1",
        "20000",
        "0.00012345",
    )


class FakeRunner:
    """Our Runner protocol: hands out run ids, or refuses like an engine before the first bar."""

    def __init__(self, refusal: str | None = None) -> None:
        self.refusal = refusal
        self.calls = 0
        self.markets: list[str | None] = []

    async def evaluate_now(self, market: str | None = None) -> str:
        self.calls += 1
        self.markets.append(market)
        if self.refusal is not None:
            raise RuntimeError(self.refusal)
        return f"session-a-manual{self.calls}"


def test_fake_runner_satisfies_the_runner_protocol() -> None:
    assert isinstance(FakeRunner(), Runner)


async def test_post_run_without_configured_token_is_403_even_with_a_header(
    journal: Journal,
) -> None:
    runner = FakeRunner()
    async with client_for(journal, runner=runner) as client:
        response = await client.post("/api/runs", headers={"Authorization": "Bearer anything"})

    assert response.status_code == 403
    assert response.json() == {"detail": TOKEN_NOT_SET}
    assert runner.calls == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
async def test_post_run_without_the_right_bearer_token_is_401(
    journal: Journal, headers: dict[str, str]
) -> None:
    runner = FakeRunner()
    async with client_for(journal, runner=runner, api_token=TOKEN) as client:
        response = await client.post("/api/runs", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert runner.calls == 0


async def test_post_run_with_token_starts_a_run_and_answers_202(journal: Journal) -> None:
    runner = FakeRunner()
    async with client_for(journal, runner=runner, api_token=TOKEN) as client:
        response = await client.post("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 202
    assert response.json() == {
        "run_id": "session-a-manual1",
        "market": None,
        "stream_url": "/api/runs/session-a-manual1/stream",
    }
    assert response.headers["Location"] == "/api/runs/session-a-manual1"
    assert runner.markets == [None]


async def test_post_run_for_one_market_hands_the_market_to_the_runner(journal: Journal) -> None:
    runner = FakeRunner()
    async with client_for(journal, runner=runner, api_token=TOKEN) as client:
        response = await client.post(
            "/api/runs", json={"market": "KRW-ETH"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        bad = await client.post(
            "/api/runs", json={"market": "eth"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )

    assert (response.status_code, response.json()["market"]) == (202, "KRW-ETH")
    assert runner.markets == ["KRW-ETH"]
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "market"]
    assert runner.calls == 1


async def test_post_run_when_runner_cannot_evaluate_is_409_with_its_message(
    journal: Journal,
) -> None:
    runner = FakeRunner(refusal="no bar has closed yet: nothing to evaluate")
    async with client_for(journal, runner=runner, api_token=TOKEN) as client:
        response = await client.post("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 409
    assert response.json() == {"detail": "no bar has closed yet: nothing to evaluate"}


async def test_post_run_without_runner_is_503(journal: Journal) -> None:
    async with client_for(journal, api_token=TOKEN) as client:
        response = await client.post("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 503


def test_create_app_refuses_an_empty_token(journal: Journal) -> None:
    with pytest.raises(ValueError, match="api_token"):
        create_app(journal=journal, bus=InProcessBus(), api_token="")
