"""Account routes over a real journal: positions, balances, orders, fills, equity, watchdog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from test_api_runs import decision_row

from api.app import create_app
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def client_for(journal: Journal, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def order_row(identifier: str, minute: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "identifier": identifier,
        "run_id": None,
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "price",
        "price": Decimal("50000"),
        "state": "done",
        "created_at": T0 + timedelta(minutes=minute),
        "updated_at": T0 + timedelta(minutes=minute),
        "executed_volume": Decimal("0.0005"),
        "paid_fee": Decimal("25"),
    }
    row.update(overrides)
    return row


def equity_decision(run_id: str, minute: int, equity: str, closes: dict[str, float]) -> Any:
    return decision_row(
        run_id,
        minute,
        nodes={"input": {"account": {"equity": equity, "krw": equity}, "closes": closes}},
    )


async def test_orders_are_paged_newest_first_and_filtered(journal: Journal) -> None:
    for minute in range(5):
        journal.record_order(order_row(f"o{minute}", minute))
    journal.record_order(order_row("eth", 9, market="KRW-ETH", state="cancel"))

    async with client_for(journal) as client:
        page = await client.get("/api/orders", params={"limit": 2, "offset": 1})
        eth = await client.get("/api/orders", params={"market": "KRW-ETH"})
        cancelled = await client.get("/api/orders", params={"state": "cancel"})
        bad = await client.get("/api/orders", params={"market": "btc"})

    assert [o["identifier"] for o in page.json()["orders"]] == ["o4", "o3"]
    assert page.json()["total"] == 6
    assert page.json()["orders"][0]["price"] == "50000"  # exact decimals as text
    assert [o["identifier"] for o in eth.json()["orders"]] == ["eth"]
    assert cancelled.json()["total"] == 1
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "market"]


async def test_fills_filter_by_time_and_refuse_a_number_for_a_time(journal: Journal) -> None:
    for minute in range(3):
        journal.record_fill(
            {
                "order_identifier": f"o{minute}",
                "market": "KRW-BTC",
                "side": "bid",
                "price": Decimal("100000000"),
                "volume": Decimal("0.001"),
                "fee": Decimal("50"),
                "ts": T0 + timedelta(minutes=minute),
            }
        )

    async with client_for(journal) as client:
        window = await client.get(
            "/api/fills", params={"since": "2026-03-01T09:01:00", "until": "2026-03-01T09:02:00Z"}
        )
        number = await client.get("/api/fills", params={"until": "1772355600"})

    assert [f["order_identifier"] for f in window.json()["fills"]] == ["o1"]
    assert number.status_code == 422
    assert "ISO 8601" in number.json()["detail"][0]["msg"]


async def test_runs_refuse_since_after_until_with_a_message(journal: Journal) -> None:
    async with client_for(journal) as client:
        response = await client.get(
            "/api/runs", params={"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
        )

    assert response.status_code == 422
    assert response.json()["detail"].startswith("since (2026-03-02T00:00:00+00:00) must be before")


async def test_runs_filter_by_bar_time(journal: Journal) -> None:
    for minute in range(4):
        journal.record_decision(decision_row(f"r{minute}", minute))

    async with client_for(journal) as client:
        response = await client.get(
            "/api/runs", params={"since": "2026-03-01T09:01:00Z", "until": "2026-03-01T09:03:00Z"}
        )

    assert [r["run_id"] for r in response.json()["runs"]] == ["r2", "r1"]
    assert response.json()["total"] == 2


async def test_equity_follows_the_decisions_with_buy_and_hold_beside_it(journal: Journal) -> None:
    journal.record_decision(
        equity_decision("e0", 0, "1000000", {"KRW-BTC": 100.0, "KRW-ETH": 10.0})
    )
    journal.record_decision(
        equity_decision("e1", 1, "1010000", {"KRW-BTC": 110.0, "KRW-ETH": 10.0})
    )

    async with client_for(journal) as client:
        response = await client.get("/api/equity")

    body = response.json()
    assert body["session_id"] == "session-a"
    assert [p["equity"] for p in body["points"]] == ["1000000", "1010000"]
    # Half the first equity in each market after the fee; BTC then rises 10%.
    half = Decimal("1000000") * Decimal("0.9995") / 2
    assert Decimal(body["points"][0]["buy_and_hold"]) == (2 * half).quantize(Decimal("0.01"))
    assert Decimal(body["points"][1]["buy_and_hold"]) == (half * Decimal("1.1") + half).quantize(
        Decimal("0.01")
    )


async def test_equity_without_journaled_closes_says_why_there_is_no_benchmark(
    journal: Journal,
) -> None:
    journal.record_decision(equity_decision("e0", 0, "1000000", {}))

    async with client_for(journal) as client:
        response = await client.get("/api/equity", params={"session_id": "session-a"})
        empty = await client.get("/api/equity", params={"session_id": "nobody"})

    assert response.json()["points"][0]["buy_and_hold"] is None
    assert "no buy-and-hold" in response.json()["note"]
    assert empty.json()["points"] == []


async def test_watchdog_from_the_journal_shows_the_last_trigger_per_market(
    journal: Journal,
) -> None:
    journal.record_event(None, "watchdog_trigger", {"market": "KRW-BTC", "detector": "drop"}, T0)
    journal.record_event(
        None, "watchdog_trigger", {"market": "KRW-BTC", "detector": "volume_spike"}, T0
    )

    async with client_for(journal, markets=["KRW-BTC", "KRW-ETH"]) as client:
        response = await client.get("/api/watchdog")

    body = response.json()
    assert body["source"] == "journal"
    by_market = {m["market"]: m for m in body["markets"]}
    assert by_market["KRW-BTC"]["last_trigger"]["payload"]["detector"] == "volume_spike"
    assert by_market["KRW-ETH"]["last_trigger"] is None
    assert [t["payload"]["detector"] for t in body["recent_triggers"]] == ["volume_spike", "drop"]


async def test_positions_come_from_the_journal_without_an_engine(journal: Journal) -> None:
    journal.upsert_position(
        {"market": "KRW-XRP", "volume": Decimal("10.5"), "avg_buy_price": Decimal("812.3")}
    )

    async with client_for(journal) as client:
        positions = await client.get("/api/positions")
        balances = await client.get("/api/balances")

    assert positions.json()["source"] == "journal"
    assert positions.json()["positions"][0]["volume"] == "10.5"
    assert balances.status_code == 503
    assert balances.json()["detail"].startswith("no engine here")


async def test_run_detail_carries_fills_clamps_and_prompt_refs(journal: Journal) -> None:
    sizing = {"investment_ratio": 0.2, "clamps": [{"field": "stop_loss_pct", "to": 3.0}]}
    journal.record_decision(decision_row("r1", 1, action="buy", market="KRW-BTC", sizing=sizing))
    journal.record_llm_call(
        {
            "run_id": "r1",
            "node": "groq_check",
            "provider": "groq",
            "model": "m",
            "prompt_ref": "groq_check@abcd1234",
            "request": {"system": "s", "user": "u"},
            "response": {"raw": "{}"},
            "latency_ms": 5.0,
        }
    )
    journal.record_order(order_row("lxa-r1-bid", 1, run_id="r1"))
    journal.record_fill(
        {
            "order_identifier": "lxa-r1-bid",
            "market": "KRW-BTC",
            "side": "bid",
            "price": Decimal("100000000"),
            "volume": Decimal("0.0005"),
            "fee": Decimal("25"),
            "ts": T0,
        }
    )

    async with client_for(journal) as client:
        body = (await client.get("/api/runs/r1")).json()

    assert body["clamps"] == [{"field": "stop_loss_pct", "to": 3.0}]
    assert body["prompt_refs"] == {"groq_check": "groq_check@abcd1234"}
    assert [f["order_identifier"] for f in body["fills"]] == ["lxa-r1-bid"]
    assert body["llm_calls"][0]["response"]["raw"] == "{}"


@pytest.mark.parametrize("path", ["/api/halt", "/api/auth/check"])
async def test_get_on_a_post_only_route_is_405_naming_the_method(
    journal: Journal, path: str
) -> None:
    async with client_for(journal) as client:
        response = await client.get(path)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
