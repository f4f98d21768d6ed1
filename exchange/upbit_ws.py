"""Upbit's public WebSocket (trades, orderbooks): keep-alive, stale alarm, reconnect, backfill.

The client subscribes to `trade` and `orderbook` for the configured markets, parses each
binary frame (JSON, Upbit's DEFAULT format) into a `Trade`, an `OrderbookSnapshot` or a
`Status`, and hands data to async callbacks. It keeps the connection alive inside Upbit's
~120 s idle limit (WebSocket pings plus a text "PING" that Upbit answers with
`{"status":"UP"}`), reconnects with exponential backoff and jitter, and raises a `stale` alarm
when status messages keep arriving but no trade or orderbook has for `stale_after_s` (a
connection that is alive but carries no market data is not a live feed). After every
reconnect it backfills the gap from `GET /v1/trades/ticks`, de-duplicating by
`sequential_id`, which is unique but not ordered. A malformed or unknown message is logged,
counted and skipped; it never stops the stream.

Prices and volumes are floats here: this is the market-data path into bars, features and the
watchdog, not the order boundary (orders use `Decimal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://api.upbit.com/websocket/v1"
DEFAULT_REST_URL = "https://api.upbit.com"
TICKS_PATH = "/v1/trades/ticks"
MAX_TICKS_PER_PAGE = 500  # Upbit's limit for `count`

Loads = Callable[[bytes | str], Any]


class MessageError(ValueError):
    """A WebSocket message that is not valid JSON or lacks a field of the right type."""


class UnknownMessage(MessageError):
    """A well-formed message of a type the client does not handle."""


class BackfillError(RuntimeError):
    """The REST backfill of a reconnect gap failed (network, HTTP status or response shape)."""


@dataclass(frozen=True, slots=True)
class Trade:
    """One executed trade; `ask_bid` is the taker side (`BID`: a buyer lifted the ask)."""

    market: str
    ts_ms: int  # trade_timestamp, epoch milliseconds (UTC)
    price: float
    volume: float
    ask_bid: str  # "ASK" | "BID"
    sequential_id: int

    @property
    def ts(self) -> datetime:
        """Return the trade time as timezone-aware UTC."""
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)


class OrderbookUnit(NamedTuple):
    """One level of the book: the ask and bid at the same depth."""

    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


@dataclass(frozen=True, slots=True)
class OrderbookSnapshot:
    """The top of one market's book at `ts_ms`; `units[0]` is the best bid and ask."""

    market: str
    ts_ms: int
    total_ask_size: float
    total_bid_size: float
    units: tuple[OrderbookUnit, ...]

    @property
    def spread_bps(self) -> float:
        """Return (best ask - best bid) / mid in basis points, NaN for an empty or crossed book."""
        if not self.units:
            return math.nan
        best = self.units[0]
        mid = (best.ask_price + best.bid_price) / 2
        if mid <= 0 or best.ask_price < best.bid_price:
            return math.nan
        return (best.ask_price - best.bid_price) / mid * 10_000

    def depth_krw(self) -> tuple[float, float]:
        """Return the KRW resting on the bid side and on the ask side of the levels sent."""
        bid = sum(u.bid_price * u.bid_size for u in self.units)
        ask = sum(u.ask_price * u.ask_size for u in self.units)
        return bid, ask


@dataclass(frozen=True, slots=True)
class Status:
    """A `{"status": "UP"}` keep-alive (or any other status word)."""

    status: str


Message = Trade | OrderbookSnapshot | Status


def _field(msg: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = msg.get(name)
    if value is None:
        raise MessageError(f"{msg.get('type', 'message')} lacks {name!r}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MessageError(f"{name!r} has the wrong type: {type(value).__name__}")
    return value


def _number(msg: dict[str, Any], name: str, *, positive: bool) -> float:
    value = float(_field(msg, name, (int, float)))
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise MessageError(f"{name!r} out of range: {value}")
    return value


_INF = math.inf


def _parse_trade(msg: dict[str, Any]) -> Trade:
    """Build a Trade; the fast path checks types inline, the slow one names what is wrong."""
    market = msg.get("code")
    ts_ms = msg.get("trade_timestamp")
    price = msg.get("trade_price")
    volume = msg.get("trade_volume")
    ask_bid = msg.get("ask_bid")
    sequential_id = msg.get("sequential_id")
    if (
        type(market) is str
        and type(ts_ms) is int
        and type(sequential_id) is int
        and (type(price) is float or type(price) is int)
        and (type(volume) is float or type(volume) is int)
        and (ask_bid == "BID" or ask_bid == "ASK")
        and 0 < price < _INF
        and 0 <= volume < _INF
    ):
        return Trade(market, ts_ms, float(price), float(volume), ask_bid, sequential_id)
    return _parse_trade_checked(msg)


def _parse_trade_checked(msg: dict[str, Any]) -> Trade:
    ask_bid = _field(msg, "ask_bid", str)
    if ask_bid not in ("ASK", "BID"):
        raise MessageError(f"'ask_bid' must be ASK or BID, got {ask_bid!r}")
    return Trade(
        market=_field(msg, "code", str),
        ts_ms=_field(msg, "trade_timestamp", int),
        price=_number(msg, "trade_price", positive=True),
        volume=_number(msg, "trade_volume", positive=False),
        ask_bid=ask_bid,
        sequential_id=_field(msg, "sequential_id", int),
    )


def _parse_orderbook(msg: dict[str, Any]) -> OrderbookSnapshot:
    raw_units = _field(msg, "orderbook_units", list)
    units = []
    for raw in raw_units:
        if type(raw) is dict:  # fast path: four finite numbers, prices positive
            ask = raw.get("ask_price")
            bid = raw.get("bid_price")
            ask_size = raw.get("ask_size")
            bid_size = raw.get("bid_size")
            if (
                (type(ask) is float or type(ask) is int)
                and (type(bid) is float or type(bid) is int)
                and (type(ask_size) is float or type(ask_size) is int)
                and (type(bid_size) is float or type(bid_size) is int)
                and 0 < ask < _INF
                and 0 < bid < _INF
                and 0 <= ask_size < _INF
                and 0 <= bid_size < _INF
            ):
                units.append(
                    OrderbookUnit(float(ask), float(bid), float(ask_size), float(bid_size))
                )
                continue
        if not isinstance(raw, dict):
            raise MessageError("'orderbook_units' holds a non-object")
        units.append(
            OrderbookUnit(
                ask_price=_number(raw, "ask_price", positive=True),
                bid_price=_number(raw, "bid_price", positive=True),
                ask_size=_number(raw, "ask_size", positive=False),
                bid_size=_number(raw, "bid_size", positive=False),
            )
        )
    return OrderbookSnapshot(
        market=_field(msg, "code", str),
        ts_ms=_field(msg, "timestamp", int),
        total_ask_size=_number(msg, "total_ask_size", positive=False),
        total_bid_size=_number(msg, "total_bid_size", positive=False),
        units=tuple(units),
    )


def parse_message(raw: bytes | str, loads: Loads = orjson.loads) -> Message:
    """Parse one frame; raise `MessageError` if malformed, `UnknownMessage` if of another type."""
    try:
        msg = loads(raw)
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MessageError(f"expected a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind == "trade":
        return _parse_trade(msg)
    if kind == "orderbook":
        return _parse_orderbook(msg)
    if kind is None and isinstance(msg.get("status"), str):
        return Status(msg["status"])
    if kind is None and "error" in msg:
        raise UnknownMessage(f"error from the server: {msg['error']!r}")
    raise UnknownMessage(f"unknown message type {kind!r}")


def parse_rest_trade(row: Any) -> Trade:
    """Parse one row of `GET /v1/trades/ticks` (REST field names) into a `Trade`."""
    if not isinstance(row, dict):
        raise MessageError(f"expected a JSON object, got {type(row).__name__}")
    ask_bid = _field(row, "ask_bid", str)
    if ask_bid not in ("ASK", "BID"):
        raise MessageError(f"'ask_bid' must be ASK or BID, got {ask_bid!r}")
    return Trade(
        market=_field(row, "market", str),
        ts_ms=_field(row, "timestamp", int),
        price=_number(row, "trade_price", positive=True),
        volume=_number(row, "trade_volume", positive=False),
        ask_bid=ask_bid,
        sequential_id=_field(row, "sequential_id", int),
    )


def subscription(markets: Sequence[str], *, orderbook: bool = True, ticket: str = "") -> bytes:
    """Build Upbit's subscription request for trades (and orderbooks) of `markets`."""
    request: list[dict[str, Any]] = [
        {"ticket": ticket or f"lxa-{secrets.token_hex(8)}"},
        {"type": "trade", "codes": list(markets)},
    ]
    if orderbook:
        request.append({"type": "orderbook", "codes": list(markets)})
    request.append({"format": "DEFAULT"})
    return orjson.dumps(request)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """Something the operator should see: connected, disconnected, stale, recovered, backfill."""

    kind: str
    detail: dict[str, Any]
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class FeedStats:
    """Counters of what the client has seen since it started."""

    messages: int = 0
    trades: int = 0
    orderbooks: int = 0
    statuses: int = 0
    malformed: int = 0
    unknown: int = 0
    duplicates: int = 0
    backfilled: int = 0
    connects: int = 0
    reconnects: int = 0
    stale_alarms: int = 0
    backfill_failures: int = 0


class SeenIds:
    """Remember the last `capacity` sequential ids per market (ids are unique, not ordered)."""

    def __init__(self, capacity: int = 100_000) -> None:
        """Keep at most `capacity` ids per market, forgetting the oldest first."""
        self._capacity = capacity
        self._ids: dict[str, set[int]] = {}
        self._order: dict[str, deque[int]] = {}

    def add(self, market: str, sequential_id: int) -> bool:
        """Remember an id; return False if it was already known (a duplicate)."""
        ids = self._ids.setdefault(market, set())
        if sequential_id in ids:
            return False
        order = self._order.setdefault(market, deque())
        ids.add(sequential_id)
        order.append(sequential_id)
        if len(order) > self._capacity:
            ids.discard(order.popleft())
        return True

    def __contains__(self, key: tuple[str, int]) -> bool:
        """Return whether (market, sequential_id) was seen."""
        return key[1] in self._ids.get(key[0], ())


TradeHandler = Callable[[Trade], Awaitable[None]]
OrderbookHandler = Callable[[OrderbookSnapshot], Awaitable[None]]
StatusHandler = Callable[[Status], Awaitable[None]]
EventHandler = Callable[[FeedEvent], None]


async def _ignore(_: Any) -> None:
    return None


class UpbitWebSocket:
    """Keep one subscription to Upbit's public stream alive and deliver every trade once.

    `clock` (seconds, monotonic) times keep-alives and the stale check, so a test can drive
    them with a simulated clock; reconnect backoff sleeps in real time. `run()` returns when
    `stop()` is called; a connection that stays silent (not even a status) for `idle_timeout_s`
    real seconds is treated as dropped.
    """

    def __init__(
        self,
        url: str,
        markets: Sequence[str],
        *,
        on_trade: TradeHandler = _ignore,
        on_orderbook: OrderbookHandler = _ignore,
        on_status: StatusHandler = _ignore,
        on_event: EventHandler | None = None,
        rest_url: str | None = DEFAULT_REST_URL,
        http: httpx.AsyncClient | None = None,
        orderbook: bool = True,
        stale_after_s: float = 30.0,
        keepalive_s: float = 60.0,
        idle_timeout_s: float = 90.0,
        check_interval_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        backfill_margin_ms: int = 5_000,
        backfill_page: int = MAX_TICKS_PER_PAGE,
        backfill_max_pages: int = 40,
        clock: Callable[[], float] = time.monotonic,
        loads: Loads = orjson.loads,
        seed: int | None = None,
    ) -> None:
        """Configure the stream; nothing connects until `run()`."""
        if not markets:
            raise ValueError("at least one market is required")
        if stale_after_s <= 0 or keepalive_s <= 0 or idle_timeout_s <= 0:
            raise ValueError("stale_after_s, keepalive_s and idle_timeout_s must be positive")
        if keepalive_s >= 120:
            raise ValueError("keepalive_s must be under Upbit's 120 s idle limit")
        if not 1 <= backfill_page <= MAX_TICKS_PER_PAGE:
            raise ValueError(f"backfill_page must be 1..{MAX_TICKS_PER_PAGE}")
        self.url = url
        self.markets = list(markets)
        self.rest_url = rest_url.rstrip("/") if rest_url else None
        self._on_trade = on_trade
        self._on_orderbook = on_orderbook
        self._on_status = on_status
        self._on_event = on_event
        self._http = http
        self._orderbook = orderbook
        self.stale_after_s = stale_after_s
        self.keepalive_s = keepalive_s
        self.idle_timeout_s = idle_timeout_s
        self.check_interval_s = check_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.backfill_margin_ms = backfill_margin_ms
        self.backfill_page = backfill_page
        self.backfill_max_pages = backfill_max_pages
        self._clock = clock
        self._loads = loads
        self._random = random.Random(seed)
        self.stats = FeedStats()
        self.seen = SeenIds()
        self.stale = False
        self.last_trade_ms: int | None = None  # newest trade time delivered, any market
        self._last_data_at = clock()
        self._last_ping_at = clock()
        self._needs_backfill = False
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None

    # Control ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run()` to close the connection and return."""
        self._stop.set()

    def _emit(self, kind: str, **detail: Any) -> None:
        log.log(
            logging.WARNING if kind in ("stale", "disconnected") else logging.INFO,
            "upbit feed %s %s",
            kind,
            detail,
        )
        if self._on_event is not None:
            try:
                self._on_event(FeedEvent(kind, detail))
            except Exception:  # an observer must never stop the feed
                log.exception("feed event handler failed on %s", kind)

    def backoff_delay(self, attempt: int) -> float:
        """Return the wait before reconnect `attempt` (0-based): exponential, jittered 50-100%."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * self._random.random())

    # The connection loop ----------------------------------------------------------------
    async def run(self) -> None:
        """Connect, read and reconnect until `stop()`; never raises for a network failure."""
        owns_http = self._http is None and self.rest_url is not None
        if owns_http:
            self._http = httpx.AsyncClient(timeout=10.0)
        attempt = 0
        try:
            while not self._stop.is_set():
                delivered_before = self.stats.trades + self.stats.orderbooks
                try:
                    await self._connect_and_read()
                except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                    self._emit("disconnected", error=f"{type(exc).__name__}: {exc}")
                except InvalidURI:
                    raise
                if self._stop.is_set():
                    break
                if self.stats.trades + self.stats.orderbooks > delivered_before:
                    attempt = 0  # the last connection carried data: start the backoff over
                delay = self.backoff_delay(attempt)
                attempt += 1
                self.stats.reconnects += 1
                self._emit("reconnecting", in_s=round(delay, 3), attempt=attempt)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
        finally:
            if owns_http and self._http is not None:
                await self._http.aclose()
                self._http = None

    async def _connect_and_read(self) -> None:
        async with connect(
            self.url,
            ping_interval=self.keepalive_s,
            ping_timeout=self.keepalive_s,
            open_timeout=10,
            close_timeout=2,
            max_size=2**22,
        ) as ws:
            self._ws = ws
            try:
                await ws.send(subscription(self.markets, orderbook=self._orderbook))
                self.stats.connects += 1
                self._needs_backfill = self.last_trade_ms is not None
                self._last_data_at = self._clock()
                self._last_ping_at = self._clock()
                self._emit("connected", url=self.url, markets=self.markets)
                await self._read(ws)
            finally:
                self._ws = None

    async def _read(self, ws: ClientConnection) -> None:
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            silent_since = asyncio.get_running_loop().time()
            while not self._stop.is_set():
                recv = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {recv, stop_wait},
                    timeout=self.check_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                loop_now = asyncio.get_running_loop().time()
                if recv not in done:
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await recv
                    if self._stop.is_set():
                        return
                    if loop_now - silent_since >= self.idle_timeout_s:
                        raise TimeoutError(f"no message for {self.idle_timeout_s} s")
                else:
                    silent_since = loop_now
                    await self._handle(ws, recv.result())
                await self._keepalive(ws)
                if self._check_stale():
                    await ws.close(code=1000, reason="stale")
                    return
        finally:
            stop_wait.cancel()

    async def _keepalive(self, ws: ClientConnection) -> None:
        now = self._clock()
        if now - self._last_ping_at >= self.keepalive_s:
            self._last_ping_at = now
            await ws.send("PING")

    def _check_stale(self) -> bool:
        """Raise the stale alarm once per episode; return True to drop the connection."""
        idle = self._clock() - self._last_data_at
        if idle < self.stale_after_s:
            return False
        if not self.stale:  # still stale after a reconnect: reconnect again, no second alarm
            self.stale = True
            self.stats.stale_alarms += 1
            self._emit(
                "stale",
                seconds_without_data=round(idle, 3),
                last_trade_ms=self.last_trade_ms,
                statuses=self.stats.statuses,
            )
        return True

    async def _handle(self, ws: ClientConnection, raw: bytes | str) -> None:
        self.stats.messages += 1
        try:
            message = parse_message(raw, self._loads)
        except UnknownMessage as exc:
            self.stats.unknown += 1
            log.warning("skipped an unknown message: %s (%.200r)", exc, raw)
            return
        except MessageError as exc:
            self.stats.malformed += 1
            log.warning("skipped a malformed message: %s (%.200r)", exc, raw)
            return
        is_status = isinstance(message, Status)
        if self._needs_backfill or (self.stale and not is_status):
            # After a reconnect, the first message shows the subscription is in force, so the
            # REST history now covers everything before it; after a stale spell, the first
            # data may follow a gap on this very connection. Fill it before going on.
            self._needs_backfill = False
            # Later trades come on the stream (the subscription is in force), so the REST
            # history is cut at this message: markets fetched a moment later must not run
            # ahead of the others and close minutes early.
            until_ms = None if is_status else getattr(message, "ts_ms", None)
            await self.backfill(until_ms=until_ms)
        if isinstance(message, Status):
            self.stats.statuses += 1
            await self._on_status(message)
            return
        self._last_data_at = self._clock()
        if self.stale:
            self.stale = False
            self._emit("recovered", last_trade_ms=self.last_trade_ms)
        if isinstance(message, Trade):
            await self._deliver(message)
        else:
            self.stats.orderbooks += 1
            await self._on_orderbook(message)

    async def _deliver(self, trade: Trade) -> None:
        if not self.seen.add(trade.market, trade.sequential_id):
            self.stats.duplicates += 1
            return
        self.stats.trades += 1
        if self.last_trade_ms is None or trade.ts_ms > self.last_trade_ms:
            self.last_trade_ms = trade.ts_ms
        await self._on_trade(trade)

    # Backfill ----------------------------------------------------------------------------
    async def backfill(self, until_ms: int | None = None) -> int:
        """Fetch the trades missed since the last one delivered and deliver the unseen ones.

        Every market's history is read back from the newest trade until a page reaches
        `backfill_margin_ms` before the last delivered trade; the unseen trades of all markets
        up to `until_ms` (all when None) are delivered oldest first. Returns how many were
        delivered. A failure is reported as a `backfill_failed` event (the feed goes on; the
        gap stays a gap and is said to).
        """
        if self.last_trade_ms is None or self.rest_url is None or self._http is None:
            return 0
        since_ms = self.last_trade_ms - self.backfill_margin_ms
        missed: list[Trade] = []
        try:
            for market in self.markets:
                missed.extend(await self._fetch_since(market, since_ms))
        except BackfillError as exc:
            self.stats.backfill_failures += 1
            self._emit("backfill_failed", error=str(exc), since_ms=since_ms)
            return 0
        missed.sort(key=lambda t: t.ts_ms)  # stable: keeps the server's order within a ms
        delivered = 0
        for trade in missed:
            if (trade.market, trade.sequential_id) in self.seen:
                continue
            if until_ms is not None and trade.ts_ms > until_ms:
                continue  # it happened after the subscription: it comes on the stream
            delivered += 1
            await self._deliver(trade)
        self.stats.backfilled += delivered
        self._emit(
            "backfill", trades=delivered, fetched=len(missed), since_ms=since_ms, until_ms=until_ms
        )
        return delivered

    async def _fetch_since(self, market: str, since_ms: int) -> list[Trade]:
        """Page back through `/v1/trades/ticks` until trades older than `since_ms` appear."""
        assert self._http is not None and self.rest_url is not None
        collected: list[Trade] = []
        cursor: int | None = None
        for _ in range(self.backfill_max_pages):
            params: dict[str, Any] = {"market": market, "count": self.backfill_page}
            if cursor is not None:
                params["cursor"] = cursor
            rows = await self._get_ticks(params)
            page = []
            for row in rows:
                try:
                    page.append(parse_rest_trade(row))
                except MessageError as exc:
                    self.stats.malformed += 1
                    log.warning("skipped a malformed backfill row for %s: %s", market, exc)
            collected.extend(t for t in page if t.ts_ms >= since_ms)
            if len(rows) < self.backfill_page or not page or page[-1].ts_ms < since_ms:
                collected.reverse()  # newest-first pages -> oldest first
                return collected
            cursor = page[-1].sequential_id
        raise BackfillError(
            f"{market}: the gap is longer than {self.backfill_max_pages} pages of "
            f"{self.backfill_page} trades; older trades were not recovered"
        )

    async def _get_ticks(self, params: dict[str, Any]) -> list[Any]:
        assert self._http is not None
        url = f"{self.rest_url}{TICKS_PATH}"
        for attempt in range(4):
            try:
                response = await self._http.get(url, params=params)
            except httpx.HTTPError as exc:
                raise BackfillError(f"GET {TICKS_PATH} failed: {exc!r}") from None
            if response.status_code == 429 and attempt < 3:
                await asyncio.sleep(0.25 * 2**attempt)  # quotation group: 10 per second
                continue
            if response.status_code != 200:
                raise BackfillError(
                    f"GET {TICKS_PATH} answered {response.status_code}: {response.text[:200]}"
                )
            try:
                rows = response.json()
            except json.JSONDecodeError as exc:
                raise BackfillError(f"GET {TICKS_PATH} returned no JSON: {exc}") from None
            if not isinstance(rows, list):
                raise BackfillError(f"GET {TICKS_PATH} returned {type(rows).__name__}, not a list")
            return rows
        raise BackfillError(f"GET {TICKS_PATH} still rate-limited after retries")
