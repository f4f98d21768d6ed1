"""1-minute bars and live-only features built from trades and orderbook snapshots."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from fake_upbit_ws import candles_to_events

from exchange.bars import BarBuilder, LiveBarClose
from exchange.upbit_ws import OrderbookSnapshot, OrderbookUnit, Trade

T0 = 1_758_240_000_000  # 2025-09-19T00:00:00Z, a minute boundary
REAL_1M = Path(__file__).resolve().parents[2] / "app" / "demo" / "candles_upbit_1m_demo.parquet"


def trade(market: str, offset_ms: int, price: float, volume: float, side: str = "BID") -> Trade:
    return Trade(
        market, T0 + offset_ms, price, volume, side, (T0 + offset_ms) * 10 + len(market) % 10
    )


def book(
    market: str, offset_ms: int, bid: float, ask: float, size: float = 1.0
) -> OrderbookSnapshot:
    units = (OrderbookUnit(ask, bid, size, 2 * size),)
    return OrderbookSnapshot(market, T0 + offset_ms, size, 2 * size, units)


def feed(builder: BarBuilder, trades: list[Trade]) -> list[LiveBarClose]:
    closes: list[LiveBarClose] = []
    for item in trades:
        closes.extend(builder.add_trade(item, 0.0))
    return closes


def test_a_minute_closes_once_a_trade_is_grace_past_its_end() -> None:
    builder = BarBuilder(grace_ms=2_000)

    early = feed(
        builder, [trade("KRW-BTC", 1_000, 100.0, 1.0), trade("KRW-BTC", 61_000, 101.0, 1.0)]
    )
    late = feed(builder, [trade("KRW-BTC", 62_000, 102.0, 1.0)])

    assert early == []
    assert [c.ts for c in late] == [pd.Timestamp(T0, unit="ms", tz="UTC").to_pydatetime()]
    assert late[0].bars["KRW-BTC"].close == 100.0


def test_trades_out_of_order_within_a_minute_give_open_and_close_by_trade_time() -> None:
    builder = BarBuilder(grace_ms=0)
    trades = [
        trade("KRW-BTC", 30_000, 105.0, 1.0),
        trade("KRW-BTC", 5_000, 100.0, 2.0),  # earlier, arrives later: it is the open
        trade("KRW-BTC", 59_000, 103.0, 1.0, "ASK"),
        trade("KRW-BTC", 50_000, 99.0, 1.0, "ASK"),  # not the close: 59 s came before it
        trade("KRW-BTC", 60_000, 104.0, 1.0),
    ]

    (close,) = feed(builder, trades)

    bar = close.bars["KRW-BTC"]
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (100.0, 105.0, 99.0, 103.0, 5.0)
    features = close.live["KRW-BTC"]
    assert (features.buy_volume, features.sell_volume, features.trades) == (3.0, 2.0, 4)
    assert features.trade_intensity == pytest.approx(0.2)


def test_a_late_trade_for_a_closed_minute_is_counted_and_left_out() -> None:
    builder = BarBuilder(grace_ms=0)
    (first,) = feed(
        builder, [trade("KRW-BTC", 0, 100.0, 1.0), trade("KRW-BTC", 60_000, 101.0, 1.0)]
    )

    again = feed(builder, [trade("KRW-BTC", 30_000, 500.0, 9.0)])

    assert again == []
    assert builder.late_trades == 1
    assert first.bars["KRW-BTC"].high == 100.0  # a closed bar never changes


def test_a_minute_without_trades_gives_no_bar_and_a_quiet_market_is_absent() -> None:
    builder = BarBuilder(grace_ms=0)
    trades = [
        trade("KRW-BTC", 0, 100.0, 1.0),
        trade("KRW-ETH", 10_000, 10.0, 1.0),
        trade("KRW-BTC", 120_000, 102.0, 1.0),  # minute 1: nothing traded anywhere
        trade("KRW-BTC", 180_000, 103.0, 1.0),
    ]

    closes = feed(builder, trades)

    assert [(c.ts.minute, sorted(c.bars)) for c in closes] == [
        (0, ["KRW-BTC", "KRW-ETH"]),
        (2, ["KRW-BTC"]),
    ]


def test_spread_is_the_minutes_mean_and_depth_the_last_snapshot() -> None:
    builder = BarBuilder(grace_ms=0)
    builder.add_orderbook(book("KRW-XRP", 10_000, bid=999.0, ask=1001.0, size=1.0))  # 20 bps
    builder.add_orderbook(book("KRW-XRP", 40_000, bid=999.5, ask=1000.5, size=3.0))  # 10 bps
    feed(builder, [trade("KRW-XRP", 20_000, 1000.0, 1.0)])
    (close,) = feed(builder, [trade("KRW-XRP", 60_000, 1000.0, 1.0)])

    features = close.live["KRW-XRP"]

    assert features.spread_bps == pytest.approx(15.0)
    assert features.orderbooks == 2
    assert features.bid_depth_krw == pytest.approx(999.5 * 6.0)
    assert features.ask_depth_krw == pytest.approx(1000.5 * 3.0)
    assert features.as_features() == {
        "trade_intensity": 1.0,
        "spread_bps": pytest.approx(15.0),
    }


def test_a_minute_without_snapshots_uses_a_recent_one_else_nan() -> None:
    builder = BarBuilder(grace_ms=0, orderbook_max_age_ms=60_000)
    builder.add_orderbook(book("KRW-XRP", 30_000, bid=999.0, ask=1001.0))
    closes = feed(
        builder,
        [
            trade("KRW-XRP", 31_000, 1000.0, 1.0),
            trade("KRW-XRP", 61_000, 1000.0, 1.0),  # minute 1: book from 0:30 is fresh enough
            trade("KRW-XRP", 300_000, 1000.0, 1.0),  # minute 5: that book is too old
            trade("KRW-XRP", 360_000, 1000.0, 1.0),
        ],
    )

    assert [c.ts.minute for c in closes] == [0, 1, 5]
    assert closes[1].live["KRW-XRP"].spread_bps == pytest.approx(20.0)
    assert closes[1].live["KRW-XRP"].orderbooks == 0
    assert math.isnan(closes[2].live["KRW-XRP"].spread_bps)
    assert math.isnan(closes[2].live["KRW-XRP"].bid_depth_krw)


def test_flush_idle_closes_the_last_minute_after_the_idle_time_only() -> None:
    builder = BarBuilder(grace_ms=2_000, idle_close_ms=30_000)
    builder.add_trade(trade("KRW-BTC", 50_000, 100.0, 1.0), now_s=1000.0)

    assert builder.flush_idle(1035.0) == []  # 0:50 + 35 s = 1:25, not yet 1:00 + 30 s
    closed = builder.flush_idle(1041.0)

    assert [c.bars["KRW-BTC"].close for c in closed] == [100.0]


def test_markets_outside_the_builders_list_are_ignored() -> None:
    builder = BarBuilder(["KRW-BTC"], grace_ms=0)

    closes = feed(builder, [trade("KRW-DOGE", 0, 1.0, 1.0), trade("KRW-BTC", 60_000, 2.0, 1.0)])

    assert closes == []
    assert builder.watermark_ms == T0 + 60_000


def test_bars_from_trades_derived_from_real_candles_equal_the_candles() -> None:
    candles = pd.read_parquet(REAL_1M)
    candles = candles[candles["ts"] < candles["ts"].min() + pd.Timedelta(hours=6)]
    markets = sorted(candles["market"].unique())
    trades, _ = candles_to_events(candles, markets)
    trades.sort(key=lambda t: (t["trade_timestamp"], t["code"]))
    builder = BarBuilder(markets)

    closes: list[LiveBarClose] = []
    for t in trades:
        closes.extend(
            builder.add_trade(
                Trade(
                    t["code"],
                    t["trade_timestamp"],
                    t["trade_price"],
                    t["trade_volume"],
                    t["ask_bid"],
                    t["sequential_id"],
                ),
                0.0,
            )
        )
    closes.extend(builder.flush_idle(1e9))

    built = {(m, c.ts): b for c in closes for m, b in c.bars.items()}
    assert len(built) == len(candles)
    for row in candles.itertuples(index=False):
        bar = built[(row.market, pd.Timestamp(row.ts).to_pydatetime())]
        assert (bar.open, bar.high, bar.low, bar.close) == (row.open, row.high, row.low, row.close)
        assert bar.volume == pytest.approx(row.volume, rel=1e-12)
    assert builder.late_trades == 0
