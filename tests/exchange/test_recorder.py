"""The parquet recorder: partitioned by market and day, buffered, flushed, nothing lost."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from exchange.bars import BarBuilder, LiveBarClose
from exchange.recorder import ParquetRecorder
from exchange.upbit_ws import OrderbookSnapshot, OrderbookUnit, Trade

T0 = 1_758_326_340_000  # 2025-09-19T23:59:00Z: one minute before midnight UTC


class FakeClock:
    def __init__(self) -> None:
        self.value = 0.0

    def now(self) -> float:
        return self.value


def trades() -> list[Trade]:
    rows = []
    for i in range(8):  # 23:59:00 .. 00:00:45 across midnight, two markets
        for j, market in enumerate(("KRW-BTC", "KRW-ETH")):
            ts = T0 + i * 15_000
            rows.append(
                Trade(market, ts, 100.0 + i + j, 0.5 + i, "BID" if i % 2 else "ASK", ts * 10 + j)
            )
    return rows


def book(market: str, ts_ms: int) -> OrderbookSnapshot:
    units = (
        OrderbookUnit(101.0, 99.0, 1.5, 2.5),
        OrderbookUnit(102.0, 98.0, 3.0, 4.0),
    )
    return OrderbookSnapshot(market, ts_ms, 4.5, 6.5, units)


def test_roundtrip_trades_are_partitioned_by_market_and_day_and_read_back_equal(
    tmp_path: Path,
) -> None:
    recorder = ParquetRecorder(tmp_path, flush_interval_s=3600)
    source = trades()
    for item in source:
        recorder.add_trade(item)

    written = recorder.close()

    assert written == len(source)
    folders = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "trades").glob("*/*"))
    assert folders == [
        "trades/market=KRW-BTC/date=2025-09-19",
        "trades/market=KRW-BTC/date=2025-09-20",
        "trades/market=KRW-ETH/date=2025-09-19",
        "trades/market=KRW-ETH/date=2025-09-20",
    ]
    back = pd.read_parquet(tmp_path / "trades")
    back = back.sort_values(["trade_timestamp", "sequential_id"]).reset_index(drop=True)
    assert back["market"].astype(str).tolist() == [t.market for t in source]
    assert back["trade_timestamp"].tolist() == [t.ts_ms for t in source]
    assert back["trade_price"].tolist() == [t.price for t in source]
    assert back["trade_volume"].tolist() == [t.volume for t in source]
    assert back["ask_bid"].tolist() == [t.ask_bid for t in source]
    assert back["sequential_id"].tolist() == [t.sequential_id for t in source]
    assert back["ts"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")


def test_roundtrip_orderbooks_keep_every_level(tmp_path: Path) -> None:
    recorder = ParquetRecorder(tmp_path)
    recorder.add_orderbook(book("KRW-XRP", T0))
    recorder.close()

    back = pd.read_parquet(tmp_path / "orderbooks")

    assert len(back) == 1
    units = list(back["orderbook_units"].iloc[0])
    assert [dict(u) for u in units] == [
        {"ask_price": 101.0, "bid_price": 99.0, "ask_size": 1.5, "bid_size": 2.5},
        {"ask_price": 102.0, "bid_price": 98.0, "ask_size": 3.0, "bid_size": 4.0},
    ]
    assert back["total_bid_size"].iloc[0] == 6.5


def test_bars_are_recorded_with_their_live_features(tmp_path: Path) -> None:
    builder = BarBuilder(grace_ms=0)
    builder.add_orderbook(book("KRW-BTC", T0 + 1_000))
    closes: list[LiveBarClose] = []
    for item in trades():
        closes.extend(builder.add_trade(item, 0.0))
    recorder = ParquetRecorder(tmp_path)
    for close in closes:
        recorder.add_bars(close)
    recorder.close()

    back = pd.read_parquet(tmp_path / "bars").sort_values(["ts", "market"]).reset_index(drop=True)

    first = closes[0].live["KRW-BTC"]
    assert len(back) == sum(len(c.bars) for c in closes) == 2
    row = back[back["market"] == "KRW-BTC"].iloc[0]
    assert row["close"] == closes[0].bars["KRW-BTC"].close
    assert row["trade_intensity"] == pytest.approx(first.trade_intensity)
    assert row["spread_bps"] == pytest.approx(200.0)
    eth = back[back["market"] == "KRW-ETH"].iloc[0]
    assert math.isnan(eth["spread_bps"])  # no ETH orderbook seen: missing, not zero


def test_rows_stay_buffered_until_the_flush_interval_then_are_written(tmp_path: Path) -> None:
    clock = FakeClock()
    recorder = ParquetRecorder(tmp_path, flush_interval_s=10.0, clock=clock.now)
    source = trades()
    for item in source[:5]:
        recorder.add_trade(item)
    assert recorder.buffered == 5 and not (tmp_path / "trades").exists()

    clock.value = 10.0
    recorder.add_trade(source[5])

    assert recorder.buffered == 0
    assert recorder.written["trades"] == 6
    assert len(pd.read_parquet(tmp_path / "trades")) == 6


def test_a_full_buffer_is_written_at_once(tmp_path: Path) -> None:
    recorder = ParquetRecorder(tmp_path, flush_interval_s=3600, max_buffered_rows=4)
    for item in trades()[:9]:
        recorder.add_trade(item)

    assert recorder.written["trades"] == 8 and recorder.buffered == 1


def test_each_flush_adds_new_parts_and_never_rewrites_old_ones(tmp_path: Path) -> None:
    recorder = ParquetRecorder(tmp_path)
    source = trades()
    recorder.add_trade(source[0])
    recorder.flush()
    first_parts = list(recorder.files)
    stamps = {p: p.stat().st_mtime_ns for p in first_parts}
    recorder.add_trade(source[2])
    recorder.close()

    assert all(p.stat().st_mtime_ns == stamps[p] for p in first_parts)
    assert len(recorder.files) == 2
    assert len(pd.read_parquet(tmp_path / "trades")) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_closed_recorder_refuses_rows(tmp_path: Path) -> None:
    recorder = ParquetRecorder(tmp_path)
    recorder.close()

    with pytest.raises(RuntimeError, match="closed"):
        recorder.add_trade(trades()[0])
