"""Build closed 1-minute bars from live trades, with the features only a live feed has.

A minute closes for every market at once when the newest trade seen (any market) is at least
`grace_ms` past the minute's end, or, when trades stop, when `flush_idle` estimates that much
time has passed. A minute in which a market did not trade gives that market no bar, and a
minute with no trade at all gives no `LiveBarClose` (as Upbit emits no candle for it).

A trade for a minute that already closed (a late trade) is counted in `late_trades` and left
out: a closed bar never changes, so the engine sees each minute once and a replay of the same
trades in the same order always gives the same bars. Within an open minute, trades may arrive
in any order: the open is the earliest trade by `trade_timestamp` (the first to arrive of
equal times), the close the latest (the last to arrive of equal times).

Live-only features per bar (`LiveBarFeatures`): buy and sell volume from `ask_bid` (a `BID`
trade is a buyer taking the ask), trade intensity = (buy - sell) / (buy + sell), the mean
orderbook spread in basis points over the minute's snapshots, and the KRW depth on each side
of the last snapshot. Candles cannot provide them; `ml.features` keeps the slots
`trade_intensity` and `spread_bps` (NaN from candles) that `as_features()` fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from exchange.feed import BarClose
from exchange.types import Bar
from exchange.upbit_ws import OrderbookSnapshot, Trade

MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LiveBarFeatures:
    """What one market's trades and orderbooks said during one minute."""

    trades: int
    buy_volume: float  # taker buys (ask_bid == "BID")
    sell_volume: float  # taker sells (ask_bid == "ASK")
    spread_bps: float  # mean over the minute's snapshots; else the last earlier one; else NaN
    bid_depth_krw: float  # KRW on the bid side of the last snapshot (NaN without one)
    ask_depth_krw: float
    orderbooks: int  # snapshots seen during the minute

    @property
    def trade_intensity(self) -> float:
        """Return (buy - sell) / (buy + sell) in [-1, 1]; NaN when nothing traded."""
        total = self.buy_volume + self.sell_volume
        if total <= 0:
            return math.nan
        return (self.buy_volume - self.sell_volume) / total

    def as_features(self) -> dict[str, float]:
        """Return the values of the ML feature slots candles leave missing."""
        return {"trade_intensity": self.trade_intensity, "spread_bps": self.spread_bps}


@dataclass(frozen=True)
class LiveBarClose(BarClose):
    """Bars built from live trades; their ticks already went to the watchdog one by one."""

    live: dict[str, LiveBarFeatures] = field(default_factory=dict)


@dataclass(slots=True)
class _BarAccumulator:
    first_ms: int
    last_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    sell_volume: float
    trades: int

    @classmethod
    def start(cls, trade: Trade) -> _BarAccumulator:
        buy = trade.volume if trade.ask_bid == "BID" else 0.0
        return cls(
            trade.ts_ms,
            trade.ts_ms,
            trade.price,
            trade.price,
            trade.price,
            trade.price,
            trade.volume,
            buy,
            trade.volume - buy,
            1,
        )

    def add(self, trade: Trade) -> None:
        price = trade.price
        if trade.ts_ms < self.first_ms:
            self.first_ms, self.open = trade.ts_ms, price
        if trade.ts_ms >= self.last_ms:
            self.last_ms, self.close = trade.ts_ms, price
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.volume += trade.volume
        if trade.ask_bid == "BID":
            self.buy_volume += trade.volume
        else:
            self.sell_volume += trade.volume
        self.trades += 1


@dataclass(slots=True)
class _BookAccumulator:
    spread_sum: float = 0.0
    spreads: int = 0
    snapshots: int = 0
    last: OrderbookSnapshot | None = None


class BarBuilder:
    """Turn trades (and orderbook snapshots) into `LiveBarClose`s, oldest minute first.

    `markets` limits the bars to those markets (None keeps every market seen).
    `idle_close_ms` is how long past a minute's end `flush_idle` waits while no trade comes;
    keep it at least the feed's stale timeout, so a stalled stream's backfill still lands in
    its minutes instead of arriving late.
    """

    def __init__(
        self,
        markets: list[str] | None = None,
        *,
        grace_ms: int = 2_000,
        idle_close_ms: int = 30_000,
        orderbook_max_age_ms: int = 60_000,
    ) -> None:
        """Start with no open minute."""
        if grace_ms < 0 or idle_close_ms < 0 or orderbook_max_age_ms < 0:
            raise ValueError("grace_ms, idle_close_ms and orderbook_max_age_ms must be >= 0")
        self.markets = set(markets) if markets is not None else None
        self.grace_ms = grace_ms
        self.idle_close_ms = idle_close_ms
        self.orderbook_max_age_ms = orderbook_max_age_ms
        self.watermark_ms: int | None = None  # newest trade time seen
        self.last_closed_minute_ms: int | None = None
        self.late_trades = 0
        self.late_orderbooks = 0
        self.closed_bars = 0
        self._watermark_seen_at: float | None = None
        self._open: dict[int, dict[str, _BarAccumulator]] = {}
        self._books: dict[int, dict[str, _BookAccumulator]] = {}
        self._last_book: dict[str, OrderbookSnapshot] = {}  # newest one of a closed minute

    def _wanted(self, market: str) -> bool:
        return self.markets is None or market in self.markets

    def add_trade(self, trade: Trade, now_s: float | None = None) -> list[LiveBarClose]:
        """Add a trade; return the minutes it closed (usually none, at most a few)."""
        if not self._wanted(trade.market):
            return []
        minute = trade.ts_ms - trade.ts_ms % MINUTE_MS
        if self.last_closed_minute_ms is not None and minute <= self.last_closed_minute_ms:
            self.late_trades += 1
            return []
        bars = self._open.setdefault(minute, {})
        bar = bars.get(trade.market)
        if bar is None:
            bars[trade.market] = _BarAccumulator.start(trade)
        else:
            bar.add(trade)
        if self.watermark_ms is None or trade.ts_ms > self.watermark_ms:
            self.watermark_ms = trade.ts_ms
            self._watermark_seen_at = now_s
        return self._close_until(self.watermark_ms - self.grace_ms)

    def add_orderbook(self, snapshot: OrderbookSnapshot) -> None:
        """Add an orderbook snapshot to the spread and depth of its minute."""
        if not self._wanted(snapshot.market):
            return
        minute = snapshot.ts_ms - snapshot.ts_ms % MINUTE_MS
        if self.last_closed_minute_ms is not None and minute <= self.last_closed_minute_ms:
            self.late_orderbooks += 1
            return
        book = self._books.setdefault(minute, {}).setdefault(snapshot.market, _BookAccumulator())
        spread = snapshot.spread_bps
        if math.isfinite(spread):
            book.spread_sum += spread
            book.spreads += 1
        book.snapshots += 1
        if book.last is None or snapshot.ts_ms >= book.last.ts_ms:
            book.last = snapshot

    def flush_idle(self, now_s: float) -> list[LiveBarClose]:
        """Close minutes that ended `idle_close_ms` ago by the trade clock run on since."""
        if self.watermark_ms is None or self._watermark_seen_at is None:
            return []
        elapsed_ms = max(0, int((now_s - self._watermark_seen_at) * 1000))
        return self._close_until(self.watermark_ms + elapsed_ms - self.idle_close_ms)

    def _close_until(self, event_ms: int) -> list[LiveBarClose]:
        """Close every open minute that ended at or before `event_ms`."""
        first = min(min(self._open, default=event_ms), min(self._books, default=event_ms))
        if first + MINUTE_MS > event_ms:  # the common case: nothing is due yet
            return []
        due = sorted(m for m in {*self._open, *self._books} if m + MINUTE_MS <= event_ms)
        closed = []
        for minute in due:  # in time order, so a quiet minute's book is known to the next bar
            if minute in self._open:
                closed.append(self._close(minute))
            else:
                self._retire_books(minute)
        return closed

    def _retire_books(self, minute: int) -> None:
        for market, book in self._books.pop(minute, {}).items():
            if book.last is not None:
                previous = self._last_book.get(market)
                if previous is None or book.last.ts_ms >= previous.ts_ms:
                    self._last_book[market] = book.last
        if self.last_closed_minute_ms is None or minute > self.last_closed_minute_ms:
            self.last_closed_minute_ms = minute

    def _close(self, minute: int) -> LiveBarClose:
        bars_acc = self._open.pop(minute)
        books = self._books.get(minute, {})
        ts = _EPOCH + timedelta(milliseconds=minute)
        bars: dict[str, Bar] = {}
        live: dict[str, LiveBarFeatures] = {}
        for market in sorted(bars_acc):
            acc = bars_acc[market]
            bars[market] = Bar(market, ts, acc.open, acc.high, acc.low, acc.close, acc.volume)
            live[market] = self._features(minute, acc, books.get(market), market)
        self._retire_books(minute)
        self.closed_bars += len(bars)
        return LiveBarClose(ts=ts, bars=bars, live=live)

    def _features(
        self, minute: int, acc: _BarAccumulator, book: _BookAccumulator | None, market: str
    ) -> LiveBarFeatures:
        last = book.last if book is not None else None
        if book is not None and book.spreads:
            spread = book.spread_sum / book.spreads
        else:
            earlier = self._last_book.get(market)
            fresh = earlier is not None and minute - earlier.ts_ms <= self.orderbook_max_age_ms
            spread = earlier.spread_bps if fresh and earlier is not None else math.nan
            last = last or (earlier if fresh else None)
        bid_depth, ask_depth = last.depth_krw() if last is not None else (math.nan, math.nan)
        return LiveBarFeatures(
            trades=acc.trades,
            buy_volume=acc.buy_volume,
            sell_volume=acc.sell_volume,
            spread_bps=spread,
            bid_depth_krw=bid_depth,
            ask_depth_krw=ask_depth,
            orderbooks=book.snapshots if book is not None else 0,
        )
