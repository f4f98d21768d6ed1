"""A decision's outcome window, read without hindsight: the closes at its bar and its horizon.

A decision made at the close of the bar opened at `bar_ts` is judged on the close of the bar
opened `horizon` minutes later (the same forward return as `ml.labels`). That bar has closed,
and so the outcome is known, at `window_end` = bar_ts + horizon + one bar; before then no
outcome exists. `forward_return` reads exactly two closes, the one at the decision's bar and
the one at its horizon, and never a bar after it: a test poisons every later candle and gets
the same figures.

The closes come either from candles (`CloseBook.from_candles`) or from the closes the runs
journaled (`CloseBook.from_series`, with `store.reviewer_ledger.decision_closes`). How a
forward return becomes a proposal's net result and a verdict's right or wrong is the veto
ledger's rule (`store.reviewer_ledger`), applied by the outcome job in `app/outcomes.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

BAR = timedelta(minutes=1)


def window_end(bar_ts: datetime, horizon_minutes: int, bar: timedelta = BAR) -> datetime:
    """When a decision's outcome becomes known: its horizon's bar has closed."""
    return bar_ts + horizon_minutes * bar + bar


def _ns(value: datetime) -> int:
    return int(pd.Timestamp(value).tz_convert("UTC").value)


@dataclass(frozen=True)
class CloseBook:
    """Each market's closes by bar open time (int64 UTC nanoseconds, sorted)."""

    series: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_candles(cls, candles: pd.DataFrame) -> CloseBook:
        """From candles in the shared schema (market, ts, close)."""
        series = {}
        for market, one in candles.groupby("market", sort=True):
            ts = np.asarray(
                pd.DatetimeIndex(pd.to_datetime(one["ts"], utc=True)).as_unit("ns").asi8
            )
            order = np.argsort(ts, kind="stable")
            series[str(market)] = (ts[order], one["close"].to_numpy(dtype="float64")[order])
        return cls(series)

    @classmethod
    def from_series(cls, closes: Mapping[str, Mapping[datetime, float]]) -> CloseBook:
        """From closes per market and bar time (`store.reviewer_ledger.decision_closes`)."""
        series = {}
        for market, by_ts in closes.items():
            ts = np.array([_ns(t) for t in by_ts], dtype="int64")
            values = np.array(list(by_ts.values()), dtype="float64")
            order = np.argsort(ts, kind="stable")
            series[market] = (ts[order], values[order])
        return cls(series)

    def close(self, market: str, at: datetime) -> float | None:
        """The close of the bar opened at `at`; None when there is none or it is not a price."""
        found = self.series.get(market)
        if found is None:
            return None
        ts, values = found
        target = _ns(at)
        index = int(np.searchsorted(ts, target))
        if index >= len(ts) or ts[index] != target:
            return None
        value = float(values[index])
        return value if math.isfinite(value) and value > 0 else None


def forward_return(
    book: CloseBook,
    market: str,
    bar_ts: datetime,
    horizon_minutes: int,
    *,
    now: datetime,
    bar: timedelta = BAR,
) -> float | None:
    """close(bar_ts + horizon) / close(bar_ts) - 1, or None while the window is open or a
    close is missing. Reads those two bars only."""
    if window_end(bar_ts, horizon_minutes, bar) > now:
        return None
    start = book.close(market, bar_ts)
    end = book.close(market, bar_ts + horizon_minutes * bar)
    if start is None or end is None:
        return None
    return end / start - 1.0
