"""The per-coin sentiment index: scored items combined with exponential time decay.

Each scored item weighs `relevance * 0.5 ** (age / half_life)`, its age counted from its
`event_time` (the published time, never after first seen) or, live only, from first seen.
The index at `t` is `sum(weight * score) / max(sum(weight), 1)`: the weighted mean while
there is plenty of fresh news, shrinking toward 0 as the news goes stale, so one old item
cannot hold the index at its score forever. None when no item counts (not 0: no news is not
neutral news; features take it as NaN).

Point in time: `index_at(market, t)` uses only items first seen at or before `t`. The
`"backtest"` view also leaves out items without a usable time (`NewsItem.event_time` is
None); the `"live"` view keeps them, aged from first seen.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from news.items import utc

__all__ = ["IndexView", "ScorePoint", "SentimentIndex", "SentimentReading", "sentiment_at"]

IndexView = Literal["live", "backtest"]
# Items older than this many half-lives weigh under 0.1% and are not summed.
_HORIZON_HALF_LIVES = 10


@dataclass(frozen=True, slots=True)
class ScorePoint:
    """One item's score for one market, with the times the index needs."""

    market: str
    score: float
    relevance: float
    first_seen_at: datetime
    event_time: datetime | None  # None: no usable time (live use only)
    title: str = ""
    source: str = ""
    scorer: str = ""
    notice_kind: str | None = None


@dataclass(frozen=True, slots=True)
class SentimentReading:
    """The index of one market at one time, and what it was made of."""

    market: str
    at: datetime
    index: float | None  # None: no item counted
    items: int  # items that counted (first seen by `at`, within the horizon)
    weight: float  # their summed decayed relevance


def _weight(point: ScorePoint, at: datetime, half_life_s: float, view: IndexView) -> float:
    origin = point.event_time
    if origin is None:
        if view == "backtest":
            return 0.0
        origin = point.first_seen_at
    age = max(0.0, (at - origin).total_seconds())
    if age > _HORIZON_HALF_LIVES * half_life_s:
        return 0.0
    return point.relevance * math.pow(0.5, age / half_life_s)


def sentiment_at(
    points: Iterable[ScorePoint],
    market: str,
    at: datetime,
    *,
    half_life: timedelta,
    view: IndexView = "backtest",
) -> SentimentReading:
    """The index of `market` at `at` from `points` (module docstring); no point after `at`."""
    at = utc(at)
    half_life_s = half_life.total_seconds()
    if half_life_s <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    total = weighted = 0.0
    count = 0
    for point in points:
        if point.market != market or point.first_seen_at > at:
            continue
        weight = _weight(point, at, half_life_s, view)
        if weight <= 0.0:
            continue
        total += weight
        weighted += weight * point.score
        count += 1
    index = None if count == 0 else round(weighted / max(total, 1.0), 6)
    return SentimentReading(market, at, index, count, round(total, 6))


@dataclass
class SentimentIndex:
    """Score points per market, kept sorted by first seen; `index_at` reads them point in time.

    The live service adds to it as items arrive; a backtest builds one from the journal's rows.
    """

    half_life: timedelta
    _points: dict[str, list[ScorePoint]] = field(default_factory=dict)
    _seen: dict[str, list[datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.half_life.total_seconds() <= 0:
            raise ValueError(f"half_life must be positive, got {self.half_life}")

    def add(self, point: ScorePoint) -> None:
        """Add one point (in any order)."""
        seen = self._seen.setdefault(point.market, [])
        position = bisect.bisect_right(seen, point.first_seen_at)
        seen.insert(position, point.first_seen_at)
        self._points.setdefault(point.market, []).insert(position, point)

    def extend(self, points: Iterable[ScorePoint]) -> None:
        """Add many points."""
        for point in points:
            self.add(point)

    def points(self, market: str, at: datetime | None = None) -> list[ScorePoint]:
        """The market's points first seen at or before `at` (all without `at`), oldest first."""
        points = self._points.get(market, [])
        if at is None:
            return list(points)
        return points[: bisect.bisect_right(self._seen.get(market, []), utc(at))]

    def index_at(
        self, market: str, at: datetime, *, view: IndexView = "backtest"
    ) -> SentimentReading:
        """The index of `market` at `at`, from points first seen at or before `at` only."""
        earliest = utc(at) - self.half_life * _HORIZON_HALF_LIVES
        visible = self.points(market, at)
        start = bisect.bisect_left(self._seen.get(market, [])[: len(visible)], earliest)
        return sentiment_at(visible[start:], market, at, half_life=self.half_life, view=view)

    def prune(self, before: datetime) -> int:
        """Forget points first seen before `before` (a long-running service); how many went."""
        removed = 0
        for market, seen in self._seen.items():
            cut = bisect.bisect_left(seen, utc(before))
            if cut:
                del seen[:cut]
                del self._points[market][:cut]
                removed += cut
        return removed
