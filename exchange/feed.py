"""Market feeds that deliver closed 1-minute bars, one `BarClose` per minute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from exchange.types import Bar

_COLUMNS = ("market", "ts", "open", "high", "low", "close", "volume")
# Live-only values that bars recorded by `lxa record` carry (the ML feature slots of the same
# names, `ml.data.LIVE_COLUMNS`); a replay hands them on with each bar.
LIVE_VALUE_COLUMNS = ("trade_intensity", "spread_bps")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BarClose:
    """The bars that closed together: `ts` is their OPEN time (UTC).

    A market with no candle that minute (Upbit emits none for a minute without trades) is
    simply absent from `bars`. `live_values` holds, per market, the live-only feature values
    a replayed recording has (`LIVE_VALUE_COLUMNS`; NaN where missing); candles have none.
    """

    ts: datetime
    bars: dict[str, Bar]
    live_values: dict[str, dict[str, float]] = field(default_factory=dict)


TICK_OFFSETS_S = (0, 15, 30, 59)


def bar_to_ticks(bar: Bar) -> list[tuple[datetime, float, float]]:
    """Derive four trades from a 1-minute candle: (time, price, volume).

    No real ticks exist yet, so a replay derives them: the open at +0 s, then the low and the
    high (low first when the candle closed up, high first when it closed down) at +15 s and
    +30 s, and the close at +59 s, each carrying a quarter of the volume. This keeps the
    candle's extremes and volume but invents their timing inside the minute.
    """
    first, second = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
    prices = (bar.open, first, second, bar.close)
    quarter = bar.volume / 4
    return [
        (bar.ts + timedelta(seconds=offset), price, quarter)
        for offset, price in zip(TICK_OFFSETS_S, prices, strict=True)
    ]


class ReplayFeed:
    """Replay stored candles as bar closes, in time order (`async for close in feed`).

    `candles` has the shared data schema (market, ts in UTC, open, high, low, close, volume).
    `start` skips minutes before it; `minutes` caps how many bar closes are yielded;
    `pace_seconds` sleeps between bar closes (0 replays at full speed, still yielding control
    to the event loop once per bar). Within a minute, bars are ordered by market name; if a
    market has two candles for one minute, the later row wins. Candles with the
    `LIVE_VALUE_COLUMNS` (recorded bars) give each close their `live_values`.
    """

    def __init__(
        self,
        candles: pd.DataFrame,
        *,
        pace_seconds: float = 0.0,
        start: datetime | None = None,
        minutes: int | None = None,
    ) -> None:
        missing = [column for column in _COLUMNS if column not in candles.columns]
        if missing:
            raise ValueError(f"candles lack the column(s) {', '.join(missing)}")
        if pace_seconds < 0:
            raise ValueError(f"pace_seconds must not be negative, got {pace_seconds}")
        if minutes is not None and minutes < 0:
            raise ValueError(f"minutes must not be negative, got {minutes}")
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._pace_seconds = pace_seconds

        ts = pd.to_datetime(candles["ts"], utc=True).dt.as_unit("us").to_numpy(dtype=np.int64)
        keys = pd.DataFrame({"ts": ts, "market": candles["market"].to_numpy(dtype=object)})
        # Minutes in time order, markets by name within a minute; stable, so of two rows for the
        # same market and minute the later one stays later and wins.
        order = keys.sort_values(["ts", "market"], kind="stable").index.to_numpy()
        self._ts_us = ts[order]
        self._markets: list[str] = keys["market"].to_numpy()[order].tolist()
        self._open: list[float] = candles["open"].to_numpy(dtype=np.float64)[order].tolist()
        self._high: list[float] = candles["high"].to_numpy(dtype=np.float64)[order].tolist()
        self._low: list[float] = candles["low"].to_numpy(dtype=np.float64)[order].tolist()
        self._close: list[float] = candles["close"].to_numpy(dtype=np.float64)[order].tolist()
        self._volume: list[float] = candles["volume"].to_numpy(dtype=np.float64)[order].tolist()
        live_columns = [c for c in LIVE_VALUE_COLUMNS if c in candles.columns]
        self._live: list[dict[str, float]] | None = None
        if live_columns:
            values = {c: candles[c].to_numpy(dtype=np.float64)[order] for c in live_columns}
            self._live = [
                {c: float(values[c][row]) for c in live_columns} for row in range(len(order))
            ]

        # Row ranges [bounds[i], bounds[i + 1]) hold the candles of the i-th distinct minute.
        minute_us, first_row = np.unique(self._ts_us, return_index=True)
        bounds = np.append(first_row, len(self._ts_us))
        first = 0
        if start is not None:
            start_us = (start.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
            first = int(np.searchsorted(minute_us, start_us, side="left"))
        last = len(minute_us) if minutes is None else min(len(minute_us), first + minutes)
        self._minute_us: list[int] = minute_us[first:last].tolist()
        self._bounds: list[int] = bounds[first : last + 1].tolist()

    def __len__(self) -> int:
        """Return the number of bar closes the feed yields."""
        return len(self._minute_us)

    def __aiter__(self) -> AsyncIterator[BarClose]:
        """Iterate over the bar closes, oldest first."""
        return self._replay()

    async def _replay(self) -> AsyncIterator[BarClose]:
        """Yield each minute's bars, pausing `pace_seconds` between minutes."""
        for index, minute_us in enumerate(self._minute_us):
            if index > 0 and self._pace_seconds > 0:
                await asyncio.sleep(self._pace_seconds)
            else:
                await asyncio.sleep(0)
            yield self._bar_close(index, minute_us)

    def _bar_close(self, index: int, minute_us: int) -> BarClose:
        """Build the `BarClose` of the index-th minute from its row range."""
        ts = _EPOCH + timedelta(microseconds=minute_us)
        bars: dict[str, Bar] = {}
        live_values: dict[str, dict[str, float]] = {}
        for row in range(self._bounds[index], self._bounds[index + 1]):
            market = self._markets[row]
            bars[market] = Bar(
                market=market,
                ts=ts,
                open=self._open[row],
                high=self._high[row],
                low=self._low[row],
                close=self._close[row],
                volume=self._volume[row],
            )
            if self._live is not None:
                live_values[market] = self._live[row]
        return BarClose(ts=ts, bars=bars, live_values=live_values)
