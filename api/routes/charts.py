"""Candles for the charts: a market's OHLCV over a range, folded into buckets that fit a screen.

The bucket size is chosen from the range's span and `max_points` (1, 2, 3, 5, 10, 15, 30
minutes, hours, days), so the whole range is always returned, never cut off; a zoomed-in range
asks again and gets finer buckets. Buckets are aligned to KST (a day's candle starts at
midnight in Seoul). The bars come from the engine (a replay's candles) where it has them,
else from the closes the journaled runs were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import CandleSource, JournalDep, ServicesDep, error, require_read_access
from api.routes.runs import Time, as_utc
from api.schemas import MARKET_PATTERN, CandleOut, CandlePoint

router = APIRouter(prefix="/api", tags=["account"], dependencies=[Depends(require_read_access)])

BUCKET_MINUTES = (1, 2, 3, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440, 2880, 10080)
KST_MINUTES = 9 * 60  # buckets start at KST boundaries (a day at midnight in Seoul)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (time, open, high, low, close, volume or None)
Bar = tuple[datetime, float, float, float, float, float | None]


def bucket_for(span_minutes: int, max_points: int) -> int:
    """The smallest bucket (minutes) that shows `span_minutes` in at most `max_points` candles."""
    for size in BUCKET_MINUTES:
        if -(-span_minutes // size) <= max_points:
            return size
    return -(-span_minutes // max_points)


def _minute(ts: datetime) -> int:
    return int((ts - _EPOCH).total_seconds() // 60)


def fold(bars: Sequence[Bar], size: int) -> list[CandlePoint]:
    """Fold consecutive bars (oldest first) into candles of `size` minutes, KST-aligned."""
    candles: list[CandlePoint] = []
    key: int | None = None
    opened = high = low = close = 0.0
    volume: float | None = None
    count = 0
    started: datetime | None = None

    def flush() -> None:
        assert started is not None
        candles.append(
            CandlePoint(
                ts=started,
                open=_dec(opened),
                high=_dec(high),
                low=_dec(low),
                close=_dec(close),
                volume=None if volume is None else _dec(volume),
                bars=count,
            )
        )

    for ts, o, h, lo, c, v in bars:
        minute = _minute(ts)
        bucket = (minute + KST_MINUTES) // size
        if bucket != key:
            if key is not None:
                flush()
            key, count = bucket, 0
            started = _EPOCH + timedelta(minutes=bucket * size - KST_MINUTES)
            opened, high, low, volume = o, h, lo, None
        high, low, close = max(high, h), min(low, lo), c
        if v is not None:
            volume = v if volume is None else volume + v
        count += 1
    if key is not None:
        flush()
    return candles


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def from_closes(rows: Sequence[tuple[datetime, float]]) -> list[Bar]:
    """Bars from closes alone: each opens at the previous close; no volume."""
    bars: list[Bar] = []
    previous: float | None = None
    for ts, close in rows:
        opened = close if previous is None else previous
        bars.append((ts, opened, max(opened, close), min(opened, close), close, None))
        previous = close
    return bars


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


@router.get(
    "/candles",
    response_model=CandleOut,
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: error("a filter is malformed", unprocessable=True)
    },
)
def candles(
    journal: JournalDep,
    services: ServicesDep,
    market: Annotated[str, Query(max_length=32, pattern=MARKET_PATTERN, examples=["KRW-BTC"])],
    since: Annotated[
        Time | None, Query(description="bar time from (inclusive; no zone = UTC)")
    ] = None,
    until: Annotated[
        Time | None, Query(description="bar time until (exclusive; no zone = UTC)")
    ] = None,
    max_points: Annotated[
        int, Query(ge=10, le=5_000, description="at most this many candles")
    ] = 600,
) -> CandleOut:
    """Return a market's candles over the range (default: the whole session), oldest first.

    The bucket grows with the span so that the whole range fits `max_points`; `first_bar` and
    `last_bar` are the session's own, for zooming back out. `source` says whether the OHLCV
    are the bars the engine was given, or only the journaled closes (no volume).
    """
    since_utc, until_utc = as_utc(since, "since"), as_utc(until, "until")
    if since_utc is not None and until_utc is not None and since_utc >= until_utc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"since ({since_utc.isoformat()}) must be before until ({until_utc.isoformat()})",
        )
    session = services.session_id or journal.latest_session_id()
    first = _utc(journal.first_bar_ts(session)) if session else None
    last = _utc(journal.last_bar_ts(session)) if session else None
    source = services.account
    found = (
        source.candles(market, since_utc, until_utc) if isinstance(source, CandleSource) else None
    )
    kind = "bars"
    bars: list[Bar]
    if found is None:
        kind = "closes"
        rows = journal.price_history(market, since=since_utc, until=until_utc, limit=10**9)
        bars = from_closes([(row["bar_ts"].astimezone(UTC), float(row["close"])) for row in rows])
    else:
        bars = [(ts.astimezone(UTC), o, h, lo, c, v) for ts, o, h, lo, c, v in found]
    span = _minute(bars[-1][0]) - _minute(bars[0][0]) + 1 if bars else 1
    size = bucket_for(span, max_points)
    return CandleOut(
        market=market,
        source=kind,  # type: ignore[arg-type]
        bucket_minutes=size,
        bars=len(bars),
        since=since_utc,
        until=until_utc,
        first_bar=first,
        last_bar=last,
        candles=fold(bars, size),
    )
