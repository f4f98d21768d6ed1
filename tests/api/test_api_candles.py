"""GET /api/candles: OHLCV folded into buckets chosen from the span, the whole range, never cut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.routes.charts import bucket_for, fold, from_closes
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 09:00 KST


class Bars:
    """An engine's bars: one per minute, price rising by one each minute, volume 2."""

    def __init__(self, minutes: int) -> None:
        self.rows = [
            (T0 + timedelta(minutes=i), 100.0 + i, 101.5 + i, 99.5 + i, 100.5 + i, 2.0)
            for i in range(minutes)
        ]
        self.asked: list[tuple[str, datetime | None, datetime | None]] = []

    async def account(self) -> dict[str, Any]:
        return {"krw": "0", "equity": "0", "balances": [], "as_of": None, "positions": {}}

    def watchdog_state(self) -> dict[str, Any]:
        return {}

    def candles(
        self, market: str, since: datetime | None, until: datetime | None
    ) -> list[tuple[datetime, float, float, float, float, float]] | None:
        self.asked.append((market, since, until))
        return [
            row
            for row in self.rows
            if (since is None or row[0] >= since) and (until is None or row[0] < until)
        ]


def client_for(journal: Journal, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("span", "max_points", "bucket"),
    [(300, 600, 1), (601, 600, 2), (1440, 600, 3), (10_000, 600, 30), (600_000, 600, 1440)],
)
def test_the_bucket_is_the_smallest_that_fits_the_span(
    span: int, max_points: int, bucket: int
) -> None:
    assert bucket_for(span, max_points) == bucket
    assert -(-span // bucket) <= max_points


def test_fold_keeps_open_high_low_close_and_sums_volume_per_bucket() -> None:
    bars = [
        (T0 + timedelta(minutes=i), 10.0 + i, 12.0 + i, 9.0 - i, 11.0 + i, 1.5) for i in range(7)
    ]

    candles = fold(bars, 5)

    assert [c.bars for c in candles] == [5, 2]
    first = candles[0]
    assert first.ts == T0
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("10.0"),
        Decimal("16.0"),
        Decimal("5.0"),
        Decimal("15.0"),
    )
    assert first.volume == Decimal("7.5")
    assert candles[1].ts == T0 + timedelta(minutes=5)


def test_day_buckets_start_at_midnight_in_seoul() -> None:
    bars = [(T0 + timedelta(hours=h), 1.0, 1.0, 1.0, 1.0, 1.0) for h in range(0, 48, 6)]

    candles = fold(bars, 1440)

    # 2026-03-01 00:00 UTC is 09:00 KST: that day's candle began at 15:00 UTC the day before.
    assert [c.ts for c in candles] == [
        datetime(2026, 2, 28, 15, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 15, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
    ]
    assert [c.bars for c in candles] == [3, 4, 1]


def test_closes_alone_open_at_the_previous_close_without_volume() -> None:
    bars = from_closes([(T0, 10.0), (T0 + timedelta(minutes=1), 12.0)])

    assert bars == [(T0, 10.0, 10.0, 10.0, 10.0, None), (bars[1][0], 10.0, 12.0, 10.0, 12.0, None)]


async def test_the_whole_session_is_folded_to_fit_max_points(journal: Journal) -> None:
    source = Bars(1_000)
    async with client_for(journal, account_source=source) as client:
        response = await client.get("/api/candles?market=KRW-BTC&max_points=100")

    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "bars"
    assert body["bucket_minutes"] == 10
    assert body["bars"] == 1_000
    assert len(body["candles"]) == 100
    assert sum(c["bars"] for c in body["candles"]) == 1_000
    assert body["candles"][0]["open"] == "100.0"
    assert body["candles"][-1]["close"] == "1099.5"
    assert Decimal(body["candles"][0]["volume"]) == Decimal(20)


async def test_a_zoomed_range_gets_finer_candles(journal: Journal) -> None:
    source = Bars(1_000)
    since = (T0 + timedelta(minutes=200)).isoformat()
    until = (T0 + timedelta(minutes=260)).isoformat()
    async with client_for(journal, account_source=source) as client:
        response = await client.get(
            "/api/candles",
            params={"market": "KRW-BTC", "since": since, "until": until, "max_points": 100},
        )

    body = response.json()
    assert body["bucket_minutes"] == 1
    assert len(body["candles"]) == 60
    assert body["candles"][0]["ts"].startswith("2026-03-01T03:20:00")
    assert source.asked[-1][1] == T0 + timedelta(minutes=200)


async def test_without_an_engine_the_journaled_closes_make_the_candles(journal: Journal) -> None:
    for minute, close in enumerate([100, 103, 101]):
        journal.record_decision(
            {
                "run_id": f"r{minute}",
                "session_id": "s",
                "bar_ts": T0 + timedelta(minutes=minute),
                "created_at": T0 + timedelta(minutes=minute, seconds=1),
                "trigger": "bar",
                "action": "hold",
                "market": None,
                "reason": "no_signal",
                "reviewer_labels": {},
                "nodes": {"input": {"closes": {"KRW-BTC": close}}},
                "ml": {},
                "verdicts": {},
                "sizing": None,
                "duration_ms": 1.0,
            }
        )
    async with client_for(journal) as client:
        response = await client.get("/api/candles?market=KRW-BTC")

    body = response.json()
    assert body["source"] == "closes"
    assert [c["close"] for c in body["candles"]] == ["100.0", "103.0", "101.0"]
    assert [c["open"] for c in body["candles"]] == ["100.0", "100.0", "103.0"]
    assert all(c["volume"] is None for c in body["candles"])
    assert body["first_bar"].startswith("2026-03-01T00:00:00")
    assert body["last_bar"].startswith("2026-03-01T00:02:00")


@pytest.mark.parametrize(
    "query",
    [
        "market=btc",
        "market=KRW-BTC&max_points=1",
        "market=KRW-BTC&since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z",
    ],
)
async def test_a_malformed_request_is_422(journal: Journal, query: str) -> None:
    async with client_for(journal) as client:
        response = await client.get(f"/api/candles?{query}")

    assert response.status_code == 422
