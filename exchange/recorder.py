"""Record live trades, orderbook snapshots and closed bars to parquet, by market and UTC day.

Layout (hive-style, readable with `pandas.read_parquet(<dir>/trades)`):

    <dir>/trades/market=KRW-BTC/date=2026-11-25/part-<utc stamp>-<seq>.parquet
    <dir>/orderbooks/market=.../date=.../part-*.parquet
    <dir>/bars/market=.../date=.../part-*.parquet  (bars with their live-only features)

Rows are buffered in memory and written when `flush_interval_s` has passed (checked on each
add, or by `maybe_flush`) or `max_buffered_rows` is reached, and on `close()`. Each part is
written to a temporary name and renamed, so a kill mid-write never leaves a broken file; a
part is never appended to or rewritten.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from exchange.bars import LiveBarClose
from exchange.upbit_ws import OrderbookSnapshot, Trade

TRADE_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("trade_timestamp", pa.int64()),
        ("trade_price", pa.float64()),
        ("trade_volume", pa.float64()),
        ("ask_bid", pa.string()),
        ("sequential_id", pa.int64()),
    ]
)
_UNIT = pa.struct(
    [
        ("ask_price", pa.float64()),
        ("bid_price", pa.float64()),
        ("ask_size", pa.float64()),
        ("bid_size", pa.float64()),
    ]
)
ORDERBOOK_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("timestamp", pa.int64()),
        ("total_ask_size", pa.float64()),
        ("total_bid_size", pa.float64()),
        ("orderbook_units", pa.list_(_UNIT)),
    ]
)
BAR_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("trades", pa.int64()),
        ("buy_volume", pa.float64()),
        ("sell_volume", pa.float64()),
        ("trade_intensity", pa.float64()),
        ("spread_bps", pa.float64()),
        ("bid_depth_krw", pa.float64()),
        ("ask_depth_krw", pa.float64()),
    ]
)
_SCHEMAS = {"trades": TRADE_SCHEMA, "orderbooks": ORDERBOOK_SCHEMA, "bars": BAR_SCHEMA}


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


class ParquetRecorder:
    """Buffer market data and write it to partitioned parquet files."""

    def __init__(
        self,
        directory: Path,
        *,
        flush_interval_s: float = 60.0,
        max_buffered_rows: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Record under `directory` (created on the first flush)."""
        if flush_interval_s <= 0 or max_buffered_rows < 1:
            raise ValueError("flush_interval_s must be positive and max_buffered_rows >= 1")
        self.directory = Path(directory)
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self._clock = clock
        self._buffers: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._buffered = 0
        self._last_flush = clock()
        self._sequence = itertools.count()
        self.written: dict[str, int] = {"trades": 0, "orderbooks": 0, "bars": 0}
        self.files: list[Path] = []
        self._closed = False

    @property
    def buffered(self) -> int:
        """Return the number of rows waiting to be written."""
        return self._buffered

    def _add(self, kind: str, market: str, ts_ms: int, row: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("the recorder is closed")
        self._buffers.setdefault((kind, market, _day(ts_ms)), []).append(row)
        self._buffered += 1
        if self._buffered >= self.max_buffered_rows:
            self.flush()
        else:
            self.maybe_flush()

    def add_trade(self, trade: Trade) -> None:
        """Buffer one trade."""
        self._add(
            "trades",
            trade.market,
            trade.ts_ms,
            {
                "ts": trade.ts_ms,
                "trade_timestamp": trade.ts_ms,
                "trade_price": trade.price,
                "trade_volume": trade.volume,
                "ask_bid": trade.ask_bid,
                "sequential_id": trade.sequential_id,
            },
        )

    def add_orderbook(self, snapshot: OrderbookSnapshot) -> None:
        """Buffer one orderbook snapshot."""
        self._add(
            "orderbooks",
            snapshot.market,
            snapshot.ts_ms,
            {
                "ts": snapshot.ts_ms,
                "timestamp": snapshot.ts_ms,
                "total_ask_size": snapshot.total_ask_size,
                "total_bid_size": snapshot.total_bid_size,
                "orderbook_units": [
                    {
                        "ask_price": u.ask_price,
                        "bid_price": u.bid_price,
                        "ask_size": u.ask_size,
                        "bid_size": u.bid_size,
                    }
                    for u in snapshot.units
                ],
            },
        )

    def add_bars(self, close: LiveBarClose) -> None:
        """Buffer the bars of one closed minute with their live-only features."""
        ts_ms = int(close.ts.timestamp() * 1000)
        for market, bar in close.bars.items():
            live = close.live.get(market)
            self._add(
                "bars",
                market,
                ts_ms,
                {
                    "ts": ts_ms,
                    "open": bar.open,
                    "high": bar.high,
                    "low": bar.low,
                    "close": bar.close,
                    "volume": bar.volume,
                    "trades": live.trades if live else None,
                    "buy_volume": live.buy_volume if live else None,
                    "sell_volume": live.sell_volume if live else None,
                    "trade_intensity": live.trade_intensity if live else None,
                    "spread_bps": live.spread_bps if live else None,
                    "bid_depth_krw": live.bid_depth_krw if live else None,
                    "ask_depth_krw": live.ask_depth_krw if live else None,
                },
            )

    def maybe_flush(self) -> int:
        """Flush if `flush_interval_s` has passed since the last flush; return rows written."""
        if self._clock() - self._last_flush >= self.flush_interval_s:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Write every buffered row now, one new part per (kind, market, day); return the rows."""
        rows_written = 0
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        for key in list(self._buffers):
            rows = self._buffers[key]
            if not rows:
                continue
            kind, market, day = key
            folder = self.directory / kind / f"market={market}" / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{stamp}-{next(self._sequence):06d}.parquet"
            table = pa.Table.from_pylist(rows, schema=_SCHEMAS[kind])
            temporary = folder / f".{path.name}.tmp"  # dot-files are skipped by readers
            pq.write_table(table, temporary, compression="zstd")
            os.replace(temporary, path)
            # Only now are the rows safe: drop them from the buffer.
            del self._buffers[key]
            self._buffered -= len(rows)
            self.written[kind] += len(rows)
            rows_written += len(rows)
            self.files.append(path)
        self._last_flush = self._clock()
        return rows_written

    def close(self) -> int:
        """Flush what is left and refuse further rows; return the rows written by this flush."""
        if self._closed:
            return 0
        written = self.flush()
        self._closed = True
        return written
