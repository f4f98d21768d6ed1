"""The news features for training: each bar's sentiment index and item count from a journal.

`with_news_columns` puts `ml.data.NEWS_COLUMNS` on candles, point in time: for each market and
bar close (the bar's open time plus one bar), the values `app.news.index_from_journal(...)
.index_at(market, close)` gives, the live engine's reading at that close (`news_sentiment`:
the index, NaN where no item counts; `news_count`: the items counted in it). Only items first
seen by the close and with a usable time count (the backtest view), so a bar never reads an
item first seen after it.

The index is a decayed sum, so it is computed per item over the closes it reaches (first seen
.. event time plus the index's horizon) instead of one `index_at` call per bar: the same
values up to rounding. Bars that close before the journal's first item (of any of the
markets) are taken as "no news collected yet": both columns NaN there, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from app.news import index_from_journal
from ml.data import BAR, NEWS_COLUMNS
from news.index import ScorePoint
from store.journal import Journal

# Items older than this many half-lives are not summed (as `news.index`: `_HORIZON_HALF_LIVES`).
HORIZON_HALF_LIVES = 10
_ROUND = 6  # the index's rounding, as `news.index.sentiment_at`


@dataclass(frozen=True)
class NewsColumnsSummary:
    """What `with_news_columns` put on the candles, for the set's meta.json."""

    half_life_minutes: float
    items: int  # score points (item x coin) that reached at least one bar
    collected_since: str | None  # the first item's first seen time (ISO), None: no news
    bars: int
    bars_with_count: int  # bars with a news_count (news collected by their close)
    bars_with_index: int  # bars where at least one item counted

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON."""
        return {
            "source": "journal",
            "half_life_minutes": self.half_life_minutes,
            "items": self.items,
            "collected_since": self.collected_since,
            "bars": self.bars,
            "bars_with_count": self.bars_with_count,
            "bars_with_index": self.bars_with_index,
        }


def _ns(value: datetime) -> int:
    return int(pd.Timestamp(value).tz_convert("UTC").value)


def news_series(
    points: Sequence[ScorePoint], closes_ns: np.ndarray, half_life: timedelta
) -> tuple[np.ndarray, np.ndarray, int]:
    """The index and item count at each close (sorted int64 ns, UTC), backtest view.

    Returns (index, count, items used): index NaN where no item counts, count 0 there.
    """
    half_life_ns = half_life.total_seconds() * 1e9
    if half_life_ns <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    closes_ns = np.asarray(closes_ns, dtype="int64")
    if len(closes_ns) > 1 and np.any(np.diff(closes_ns) < 0):
        raise ValueError("news_series needs the closes sorted")
    horizon_ns = HORIZON_HALF_LIVES * half_life_ns
    total = np.zeros(len(closes_ns))
    weighted = np.zeros(len(closes_ns))
    count = np.zeros(len(closes_ns))
    used = 0
    for point in points:
        if point.event_time is None or point.relevance <= 0.0:
            continue  # no usable time: never in training (the backtest view)
        event_ns = _ns(point.event_time)
        start = int(np.searchsorted(closes_ns, _ns(point.first_seen_at), side="left"))
        stop = int(np.searchsorted(closes_ns, event_ns + horizon_ns, side="right"))
        if stop <= start:
            continue
        age = np.maximum(closes_ns[start:stop] - event_ns, 0) / half_life_ns
        weight = point.relevance * np.power(0.5, age)
        total[start:stop] += weight
        weighted[start:stop] += weight * point.score
        count[start:stop] += 1.0
        used += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(count > 0, weighted / np.maximum(total, 1.0), np.nan)
    return np.round(index, _ROUND), count, used


def with_news_columns(
    candles: pd.DataFrame,
    journal: Journal,
    *,
    half_life: timedelta,
    until: datetime | None = None,
    bar: pd.Timedelta = BAR,
) -> tuple[pd.DataFrame, NewsColumnsSummary]:
    """`candles` with `news_sentiment` and `news_count` from the journal (module docstring).

    `until`: read no item first seen after it (default: the last bar's close).
    """
    closes = pd.DatetimeIndex(candles["ts"]).tz_convert("UTC") + pd.Timedelta(bar)
    last_close = closes.max() if len(closes) else None
    if last_close is None:
        raise ValueError("no candles to put news on")
    cutoff = last_close.to_pydatetime()
    if until is not None:
        cutoff = min(cutoff, pd.Timestamp(until).tz_convert("UTC").to_pydatetime())
    markets = sorted(str(m) for m in pd.unique(candles["market"]))
    index = index_from_journal(journal, markets, until=cutoff, half_life=half_life)
    by_market = {m: index.points(m) for m in markets}
    first_seen = [p.first_seen_at for pts in by_market.values() for p in pts if p.event_time]
    collected_since = min(first_seen) if first_seen else None
    sentiment = np.full(len(candles), np.nan)
    count = np.full(len(candles), np.nan)
    close_ns = closes.as_unit("ns").asi8
    market_of = candles["market"].astype(str).to_numpy()
    used = 0
    for market, points in by_market.items():
        rows = np.flatnonzero(market_of == market)
        order = rows[np.argsort(close_ns[rows], kind="stable")]
        values, counted, n = news_series(points, close_ns[order], half_life)
        sentiment[order], count[order] = values, counted
        used += n
    collecting = (
        np.zeros(len(candles), dtype=bool)
        if collected_since is None
        else close_ns >= _ns(collected_since)
    )
    sentiment[~collecting] = np.nan
    count[~collecting] = np.nan
    out = candles.assign(**dict(zip(NEWS_COLUMNS, (sentiment, count), strict=True)))
    summary = NewsColumnsSummary(
        half_life_minutes=half_life.total_seconds() / 60,
        items=used,
        collected_since=None if collected_since is None else collected_since.isoformat(),
        bars=len(candles),
        bars_with_count=int(np.count_nonzero(collecting)),
        bars_with_index=int(np.count_nonzero(~np.isnan(sentiment))),
    )
    return out, summary
