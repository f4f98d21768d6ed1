"""A live session's charts: the bars the engine was given (warm-up, then live closes) as OHLCV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx

from api.app import create_app
from app.serve import EngineBridge, LiveBars
from exchange.feed import BarClose
from exchange.types import Bar
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def close(minute: int, volume: float = 3.0) -> BarClose:
    ts = T0 + timedelta(minutes=minute)
    price = 100.0 + minute
    return BarClose(
        ts=ts,
        bars={"KRW-BTC": Bar("KRW-BTC", ts, price, price + 2, price - 1, price + 1, volume)},
    )


def test_live_bars_keep_each_minute_once_and_read_a_range() -> None:
    bars = LiveBars(kept=3)
    bars.extend([close(0), close(1), close(2)])
    bars.record(close(2, volume=99.0))  # the same minute again: kept once
    bars.record(close(3))

    rows = bars.candles("KRW-BTC", None, None)

    assert [row[0] for row in rows] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert rows[1][5] == 3.0
    assert bars.candles("KRW-BTC", T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)) == [
        rows[1]
    ]
    assert bars.candles("KRW-ETH", None, None) == []


async def test_live_charts_show_candles_with_volume_up_to_the_engines_last_bar(
    journal: Journal,
) -> None:
    bars = LiveBars()
    bars.extend([close(m) for m in range(5)])
    engine = SimpleNamespace(last_bar_ts=T0 + timedelta(minutes=3))  # minute 4 not traded yet
    bridge = EngineBridge(engine, settings=None, live_bars=bars)  # type: ignore[arg-type]
    app = create_app(journal=journal, bus=InProcessBus(), account_source=bridge)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        body = (await client.get("/api/candles", params={"market": "KRW-BTC"})).json()

    assert body["source"] == "bars"
    assert body["bars"] == 4
    first = body["candles"][0]
    assert (float(first["open"]), float(first["high"]), float(first["volume"])) == (
        100.0, 102.0, 3.0,
    )  # fmt: skip
    assert body["candles"][-1]["ts"].startswith("2026-03-01T00:03")
