"""GET /api/prices over a real journal: the closes the runs were given, one point per bar."""

from __future__ import annotations

from typing import Any

from test_api_account import client_for
from test_api_runs import T0, decision_row

from store.journal import Journal


def priced(run_id: str, minute: int, closes: dict[str, Any], **overrides: Any) -> Any:
    return decision_row(
        run_id, minute, nodes={"input": {"account": {}, "closes": closes}}, **overrides
    )


async def test_prices_are_the_journaled_closes_oldest_first_one_per_bar(
    journal: Journal,
) -> None:
    journal.record_decision(priced("b0", 0, {"KRW-BTC": 100.5, "KRW-ETH": 10.0}))
    journal.record_decision(priced("b1", 1, {"KRW-BTC": 101.25, "KRW-ETH": 11.0}))
    # A manual run on the same bar, created later: the bar run's close is the point.
    journal.record_decision(
        priced("m1", 1, {"KRW-BTC": 999.0}, trigger="manual", created_at=T0.replace(minute=5))
    )
    journal.record_decision(priced("b2", 2, {"KRW-ETH": 12.0}))  # no BTC close: skipped
    journal.record_decision(priced("b3", 3, {"KRW-BTC": 103.0}))
    journal.record_decision(decision_row("old", 4))  # closes not journaled: skipped

    async with client_for(journal) as client:
        btc = await client.get("/api/prices", params={"market": "KRW-BTC"})
        newest = await client.get("/api/prices", params={"market": "KRW-BTC", "limit": 2})
        window = await client.get(
            "/api/prices",
            params={
                "market": "KRW-ETH",
                "since": "2026-03-01T09:01:00",
                "until": "2026-03-01T09:03:00Z",
            },
        )

    assert btc.status_code == 200
    body = btc.json()
    assert body["market"] == "KRW-BTC"
    assert [(p["ts"], p["close"]) for p in body["points"]] == [
        ("2026-03-01T09:00:00Z", "100.5"),
        ("2026-03-01T09:01:00Z", "101.25"),
        ("2026-03-01T09:03:00Z", "103.0"),
    ]
    assert [p["close"] for p in newest.json()["points"]] == ["101.25", "103.0"]
    assert [p["close"] for p in window.json()["points"]] == ["11.0", "12.0"]


async def test_a_manual_run_alone_on_its_bar_gives_the_point(journal: Journal) -> None:
    journal.record_decision(priced("m0", 0, {"KRW-BTC": 50.0}, trigger="manual"))
    journal.record_decision(
        priced("m0b", 0, {"KRW-BTC": 50.0}, trigger="manual", created_at=T0.replace(minute=3))
    )

    async with client_for(journal) as client:
        response = await client.get("/api/prices", params={"market": "KRW-BTC"})

    assert [p["close"] for p in response.json()["points"]] == ["50.0"]


async def test_prices_skip_closes_that_are_not_positive_finite_numbers(journal: Journal) -> None:
    bad: list[Any] = [None, "abc", True, -1.0, 0, "NaN", "Infinity", [1.0], {"close": 1.0}]
    for minute, close in enumerate(bad):
        journal.record_decision(priced(f"bad{minute}", minute, {"KRW-BTC": close}))
    journal.record_decision(priced("good", 30, {"KRW-BTC": "123.45"}))

    async with client_for(journal) as client:
        response = await client.get("/api/prices", params={"market": "KRW-BTC"})

    assert response.status_code == 200
    assert [p["close"] for p in response.json()["points"]] == ["123.45"]


async def test_prices_without_data_are_an_empty_list(journal: Journal) -> None:
    journal.record_decision(priced("b0", 0, {"KRW-BTC": 100.0}))

    async with client_for(journal) as client:
        other = await client.get("/api/prices", params={"market": "KRW-XRP"})
        later = await client.get(
            "/api/prices", params={"market": "KRW-BTC", "since": "2026-03-02T00:00:00Z"}
        )

    assert other.status_code == 200
    assert other.json() == {"market": "KRW-XRP", "points": [], "bars": 0}
    assert later.status_code == 200
    assert later.json()["points"] == []


async def test_prices_refuse_bad_queries_with_a_message(journal: Journal) -> None:
    async with client_for(journal) as client:
        lowercase = await client.get("/api/prices", params={"market": "btc"})
        missing = await client.get("/api/prices")
        reversed_range = await client.get(
            "/api/prices",
            params={
                "market": "KRW-BTC",
                "since": "2026-03-02T00:00:00Z",
                "until": "2026-03-01T00:00:00Z",
            },
        )
        number_time = await client.get(
            "/api/prices", params={"market": "KRW-BTC", "since": "1772355600"}
        )
        zero_limit = await client.get("/api/prices", params={"market": "KRW-BTC", "limit": 0})

    assert lowercase.status_code == 422
    assert lowercase.json()["detail"][0]["loc"] == ["query", "market"]
    assert "pattern" in lowercase.json()["detail"][0]["msg"]
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "market"]
    assert reversed_range.status_code == 422
    assert reversed_range.json()["detail"].startswith(
        "since (2026-03-02T00:00:00+00:00) must be before until"
    )
    assert number_time.status_code == 422
    assert "ISO 8601" in number_time.json()["detail"][0]["msg"]
    assert zero_limit.status_code == 422
    assert zero_limit.json()["detail"][0]["loc"] == ["query", "limit"]
