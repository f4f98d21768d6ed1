"""ReplayFeed: minutes in order, start/minutes, gaps, pacing, speed, and a real-data replay."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exchange.feed import BarClose, ReplayFeed
from exchange.paper import PaperExchange
from exchange.types import OrderRequest, OrderState, OrderType, Side

T0 = datetime(2025, 9, 1, tzinfo=UTC)
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
UPBIT_1M = DATA_DIR / "candles_upbit_1m.parquet"
COLUMNS = ["market", "ts", "open", "high", "low", "close", "volume"]


def synthetic_candles(
    minutes: int, markets: tuple[str, ...] = ("KRW-BTC", "KRW-XRP")
) -> pd.DataFrame:
    """Build synthetic candles (made up for the test): close = 1000 * market index + minute."""
    rows = [
        {
            "market": market,
            "ts": pd.Timestamp(T0 + timedelta(minutes=minute)),
            "open": 1000.0 * index + minute,
            "high": 1000.0 * index + minute + 0.5,
            "low": 1000.0 * index + minute - 0.5,
            "close": 1000.0 * index + minute,
            "volume": 1.0 + minute,
        }
        for index, market in enumerate(markets, start=1)
        for minute in range(minutes)
    ]
    return pd.DataFrame(rows)


async def collect(feed: ReplayFeed) -> list[BarClose]:
    return [close async for close in feed]


async def test_feed_yields_each_minute_in_order_with_its_bars() -> None:
    candles = synthetic_candles(3).sample(frac=1.0, random_state=7)  # rows shuffled

    closes = await collect(ReplayFeed(candles))

    assert [c.ts for c in closes] == [T0 + timedelta(minutes=m) for m in range(3)]
    for minute, close in enumerate(closes):
        assert list(close.bars) == ["KRW-BTC", "KRW-XRP"]
        btc = close.bars["KRW-BTC"]
        assert (btc.market, btc.ts, btc.close, btc.volume) == (
            "KRW-BTC",
            close.ts,
            1000.0 + minute,
            1.0 + minute,
        )
        assert close.bars["KRW-XRP"].high == 2000.5 + minute
        assert close.ts.tzinfo is not None and close.ts.utcoffset() == timedelta(0)


async def test_feed_length_matches_what_it_yields() -> None:
    feed = ReplayFeed(synthetic_candles(5))

    assert len(feed) == 5
    assert len(await collect(feed)) == 5
    assert len(await collect(feed)) == 5  # replayable


async def test_feed_honours_start_and_minutes() -> None:
    feed = ReplayFeed(synthetic_candles(10), start=T0 + timedelta(minutes=4), minutes=3)

    closes = await collect(feed)

    assert len(feed) == 3
    assert [c.ts for c in closes] == [T0 + timedelta(minutes=m) for m in (4, 5, 6)]


async def test_start_between_minutes_begins_at_the_next_minute() -> None:
    feed = ReplayFeed(synthetic_candles(4), start=T0 + timedelta(minutes=1, seconds=30))

    closes = await collect(feed)

    assert [c.ts for c in closes] == [T0 + timedelta(minutes=m) for m in (2, 3)]


async def test_start_after_the_data_yields_nothing() -> None:
    feed = ReplayFeed(synthetic_candles(4), start=T0 + timedelta(days=1))

    assert len(feed) == 0
    assert await collect(feed) == []


async def test_minute_without_a_candle_leaves_that_market_out() -> None:
    candles = synthetic_candles(3)
    quiet = (candles["market"] == "KRW-XRP") & (
        candles["ts"] == pd.Timestamp(T0 + timedelta(minutes=1))
    )
    candles = candles[~quiet]

    closes = await collect(ReplayFeed(candles))

    assert [sorted(c.bars) for c in closes] == [
        ["KRW-BTC", "KRW-XRP"],
        ["KRW-BTC"],
        ["KRW-BTC", "KRW-XRP"],
    ]


async def test_feed_refuses_candles_without_the_schema_columns() -> None:
    with pytest.raises(ValueError, match="volume"):
        ReplayFeed(synthetic_candles(2).drop(columns=["volume"]))


def test_feed_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone"):
        ReplayFeed(synthetic_candles(2), start=datetime(2025, 9, 1))


async def test_full_speed_replay_still_yields_to_the_event_loop() -> None:
    ticks = 0

    async def other_task() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await collect(ReplayFeed(synthetic_candles(20)))
    task.cancel()

    assert ticks >= 10


async def test_pace_sleeps_between_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("exchange.feed.asyncio.sleep", recording_sleep)

    await collect(ReplayFeed(synthetic_candles(3), pace_seconds=2.5))

    assert [d for d in slept if d > 0] == [2.5, 2.5]  # between bars, not before the first


def test_building_a_feed_of_4_markets_by_4000_bars_is_fast() -> None:
    minutes = 4000
    stamps = pd.date_range(T0, periods=minutes, freq="min", tz="UTC")
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "market": market,
                "ts": stamps,
                "open": rng.random(minutes),
                "high": rng.random(minutes),
                "low": rng.random(minutes),
                "close": rng.random(minutes),
                "volume": rng.random(minutes),
            }
        )
        for market in ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL")
    ]
    candles = pd.concat(frames, ignore_index=True)  # synthetic values, 16,000 rows

    began = time.perf_counter()
    feed = ReplayFeed(candles)
    elapsed = time.perf_counter() - began

    assert len(feed) == minutes
    assert elapsed < 0.5


@pytest.mark.skipif(not UPBIT_1M.exists(), reason=f"shared data not found at {UPBIT_1M}")
async def test_replaying_real_upbit_candles_through_the_paper_exchange() -> None:
    candles = pd.read_parquet(UPBIT_1M, columns=COLUMNS)
    begin = pd.Timestamp("2025-09-02 00:00", tz="UTC")
    window = candles[(candles["ts"] >= begin) & (candles["ts"] < begin + pd.Timedelta(hours=6))]
    expected_minutes = sorted(window["ts"].unique())
    feed = ReplayFeed(window)
    exchange = PaperExchange(None, initial_krw=Decimal(10_000_000))
    bought = False

    seen: list[datetime] = []
    async for close in feed:
        seen.append(close.ts)
        for bar in close.bars.values():
            assert bar.ts == close.ts and bar.low <= bar.close <= bar.high
            exchange.on_bar(bar)
        if not bought and "KRW-BTC" in close.bars:
            request = OrderRequest(
                "KRW-BTC", Side.BID, OrderType.PRICE, "real-b1", price=Decimal(1_000_000)
            )
            order = await exchange.place_order(request)
            bought = order.state is OrderState.DONE

    assert len(seen) == len(feed) == len(expected_minutes)
    assert seen == [pd.Timestamp(ts).to_pydatetime() for ts in expected_minutes]
    assert seen == sorted(seen)
    assert bought
    account = await exchange.get_account()
    btc = account.positions["KRW-BTC"]
    assert 0 < btc.volume < Decimal("0.01")  # 1M KRW of BTC at ~150M KRW
    assert set(exchange.marks()) == {"KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"}
    last_btc_close = window[window["market"] == "KRW-BTC"].sort_values("ts")["close"].iloc[-1]
    assert exchange.marks()["KRW-BTC"] == last_btc_close
    (fill,) = (await exchange.get_order("real-b1")).fills  # type: ignore[union-attr]
    assert account.krw == Decimal(10_000_000) - fill.funds - fill.fee
    assert fill.funds <= Decimal(1_000_000)


async def test_recorded_live_values_ride_along_and_candles_have_none() -> None:
    candles = synthetic_candles(3)
    recorded = candles.assign(
        trade_intensity=np.linspace(-0.5, 0.5, len(candles)), spread_bps=np.nan
    )

    plain = await collect(ReplayFeed(candles))
    replayed = await collect(ReplayFeed(recorded.sample(frac=1.0, random_state=3)))

    assert all(close.live_values == {} for close in plain)
    for close in replayed:
        assert set(close.live_values) == set(close.bars)
        for market, values in close.live_values.items():
            row = recorded[(recorded["market"] == market) & (recorded["ts"] == close.ts)].iloc[0]
            assert values["trade_intensity"] == row["trade_intensity"]
            assert np.isnan(values["spread_bps"])
