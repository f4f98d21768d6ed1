"""A local Upbit public WebSocket (and its REST history) that replays real candles as trades.

The WebSocket (`websockets` server on 127.0.0.1, an ephemeral port) speaks Upbit's protocol:
the client sends `[{"ticket":...},{"type":"trade","codes":[...]},{"type":"orderbook",...},
{"format":"DEFAULT"}]`, the server answers with binary frames of JSON in Upbit's DEFAULT field
names, replies `{"status":"UP"}` to a text "PING", and sends `{"status":"UP"}` every
`status_interval_s` of market time. A request that is not a valid subscription gets Upbit's
`{"error": {"name": "INVALID_PARAM", ...}}` and the connection is closed.

How candles become trades (real candles, derived trades): each 1-minute candle gives four
trades, as `exchange.feed.bar_to_ticks` does: the open at +0 s, then the low and the high (low
first when the candle closed up, high first when it closed down) at +15 s and +30 s, and the
close at +59 s, each with a quarter of the candle's volume. `ask_bid` is `BID` when the price
is at or above the market's previous trade price, else `ASK`. `sequential_id` is unique but
deliberately NOT in time order: `minute_ms * 100 + (2, 0, 3, 1)[k] * 10 + market index`.
Orderbook snapshots are INVENTED (no real orderbook data exists): one per candle per market
at +30 s, five levels one tick apart around the close (best bid = close rounded down to the
tick), sizes a tenth of the candle's volume growing with depth.

The market runs on `clock`, a simulated clock (seconds) that the producer moves to each
event's time, so a test can hand the same clock to the client and a 30 s stall costs no real
30 s. Controls: `stall_ms` (a window of market time whose trades and orderbooks happen, and
are served by the REST history, but are not sent live; status messages keep coming),
`drop_at` / `close_at` (abort / close every connection just before the event with that index),
`inject` (raw frames sent before the first event). The REST side (`rest_url`, uvicorn in a
thread) serves `GET /v1/trades/ticks` (newest first, `count` <= 500, `cursor` = a
`sequential_id` to continue below) over the trades that have happened so far, and
`GET /v1/candles/minutes/1` over the candles before the replay starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Self
from urllib.parse import parse_qs

import orjson
import pandas as pd
from loopback import start_in_thread
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from exchange.feed import bar_to_ticks
from exchange.rules import tick_size
from exchange.types import Bar

_SEQ_PERMUTATION = (2, 0, 3, 1)
_BOOK_LEVELS = 5


class SimClock:
    """A clock (seconds) the fake moves forward; both sides of a test can read it."""

    def __init__(self, start: float = 0.0) -> None:
        self.value = start

    def now(self) -> float:
        return self.value


@dataclass
class Subscription:
    trade: set[str] = field(default_factory=set)
    orderbook: set[str] = field(default_factory=set)


def candles_to_events(
    candles: pd.DataFrame, markets: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Derive the trade messages and orderbook messages of every candle, both in time order."""
    trades: list[dict[str, Any]] = []
    books: list[dict[str, Any]] = []
    index = {m: i for i, m in enumerate(markets)}
    last_price: dict[str, float] = {}
    day_close: dict[str, tuple[str, float]] = {}  # market -> (day, close of that day so far)
    prev_close: dict[str, float] = {}
    frame = candles.sort_values(["ts", "market"], kind="stable")
    for row in frame.itertuples(index=False):
        market = str(row.market)
        ts = pd.Timestamp(row.ts).to_pydatetime().astimezone(UTC)
        bar = Bar(market, ts, row.open, row.high, row.low, row.close, row.volume)
        day = ts.strftime("%Y-%m-%d")
        known = day_close.get(market)
        if known is not None and known[0] != day:
            prev_close[market] = known[1]
        minute_ms = int(ts.timestamp() * 1000)
        for k, (tick_ts, price, volume) in enumerate(bar_to_ticks(bar)):
            previous = last_price.get(market, price)
            reference = prev_close.get(market, bar.open)
            change_price = price - reference
            trade_ms = int(tick_ts.timestamp() * 1000)
            trades.append(
                {
                    "type": "trade",
                    "code": market,
                    "timestamp": trade_ms + 7,
                    "trade_date": tick_ts.strftime("%Y-%m-%d"),
                    "trade_time": tick_ts.strftime("%H:%M:%S"),
                    "trade_timestamp": trade_ms,
                    "trade_price": price,
                    "trade_volume": volume,
                    "ask_bid": "BID" if price >= previous else "ASK",
                    "prev_closing_price": reference,
                    "change": "RISE"
                    if change_price > 0
                    else "FALL"
                    if change_price < 0
                    else "EVEN",
                    "change_price": abs(change_price),
                    "sequential_id": minute_ms * 100 + _SEQ_PERMUTATION[k] * 10 + index[market],
                    "stream_type": "REALTIME",
                }
            )
            last_price[market] = price
        day_close[market] = (day, bar.close)
        tick = tick_size(Decimal(str(bar.close)))
        best_bid = (Decimal(str(bar.close)) // tick) * tick
        size = max(bar.volume, 1e-8) / 10
        units = [
            {
                "ask_price": float(best_bid + tick * (level + 1)),
                "bid_price": float(best_bid - tick * level),
                "ask_size": size * (1 + level),
                "bid_size": size * (1 + level),
            }
            for level in range(_BOOK_LEVELS)
        ]
        books.append(
            {
                "type": "orderbook",
                "code": market,
                "timestamp": minute_ms + 30_000,
                "total_ask_size": sum(u["ask_size"] for u in units),
                "total_bid_size": sum(u["bid_size"] for u in units),
                "orderbook_units": units,
                "stream_type": "REALTIME",
                "level": 0,
            }
        )
    return trades, books


def _rest_trade(msg: dict[str, Any]) -> dict[str, Any]:
    return {
        "market": msg["code"],
        "trade_date_utc": msg["trade_date"],
        "trade_time_utc": msg["trade_time"],
        "timestamp": msg["trade_timestamp"],
        "trade_price": msg["trade_price"],
        "trade_volume": msg["trade_volume"],
        "prev_closing_price": msg["prev_closing_price"],
        "change_price": msg["change_price"],
        "ask_bid": msg["ask_bid"],
        "sequential_id": msg["sequential_id"],
    }


class FakeUpbitWS:
    """Replay `candles` (rows from index `history` on) to subscribers; see the module docstring.

    Use `async with FakeUpbitWS(...)` inside a test's event loop, or `FakeUpbitWS.in_thread`
    for a server another process connects to. The replay starts when the first client
    subscribes; `pace_s` real seconds pass between events (0: as fast as the loop allows).
    """

    def __init__(
        self,
        candles: pd.DataFrame,
        *,
        markets: list[str] | None = None,
        history_minutes: int = 0,
        status_interval_s: float = 10.0,
        pace_s: float = 0.0,
        stall_ms: tuple[int, int] | None = None,
        drop_at: set[int] | None = None,
        close_at: set[int] | None = None,
        inject: list[bytes | str] | None = None,
        orderbook: bool = True,
        idle_status_s: float = 0.05,
        consumed: Callable[[], int] | None = None,
    ) -> None:
        self.markets = markets or sorted(candles["market"].unique().tolist())
        frame = candles[candles["market"].isin(self.markets)].copy()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        minutes = sorted(frame["ts"].unique())
        cut = minutes[history_minutes] if history_minutes < len(minutes) else None
        self.history = frame[frame["ts"] < cut] if cut is not None else frame
        self.replayed = frame[frame["ts"] >= cut] if cut is not None else frame.iloc[0:0]
        trades, books = candles_to_events(self.replayed, self.markets)
        # In the order they happen, which is also the order the REST history grows in.
        self.trades = sorted(trades, key=lambda t: (t["trade_timestamp"], t["code"]))
        events = [(t["trade_timestamp"], 0, t) for t in self.trades]
        if orderbook:
            events += [(b["timestamp"], 1, b) for b in books]
        events.sort(key=lambda e: (e[0], e[1], e[2]["code"]))
        self.events: list[dict[str, Any]] = [e[2] for e in events]
        self.status_interval_s = status_interval_s
        self.pace_s = pace_s
        self.stall_ms = stall_ms
        self.drop_at = drop_at or set()
        self.close_at = close_at or set()
        self.inject = list(inject or [])
        self.idle_status_s = idle_status_s
        self.consumed = consumed
        self.frames_sent = 0
        self.pings: list[tuple[int, float]] = []  # (connection, market time) of each "PING"
        start_s = self.events[0]["timestamp"] / 1000 if self.events else 0.0
        self.clock = SimClock(start_s)
        self.happened_trades = 0  # trades[:happened_trades] are in the REST history
        self.sent_live: list[int] = []  # sequential ids of trades sent to at least one client
        self.subscriptions: dict[ServerConnection, Subscription] = {}
        self.connections = 0
        self.finished = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._producer: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._http: Any = None
        self.port = 0
        self.http_port = 0

    # Addresses -----------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket/v1"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # Life cycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=2**20)
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self._asgi(scope, receive, send)

        server, thread, port = start_in_thread(app, "fake-upbit-rest")
        self._http = (server, thread)
        self.http_port = port
        self._producer = asyncio.create_task(self._produce())

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._http is not None:
            server, thread = self._http
            server.should_exit = True
            thread.join(timeout=5)

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, candles: pd.DataFrame, **kwargs: Any) -> Iterator[FakeUpbitWS]:
        """Run a fake in its own event loop in a background thread (for subprocess tests)."""
        ready = threading.Event()
        holder: dict[str, Any] = {}

        async def main() -> None:
            fake = cls(candles, **kwargs)
            stop = asyncio.Event()
            holder.update(fake=fake, stop=stop, loop=asyncio.get_running_loop())
            async with fake:
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("the fake Upbit WebSocket did not start")
        try:
            yield holder["fake"]
        finally:
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
            thread.join(timeout=10)

    # WebSocket ---------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            request = orjson.loads(await ws.recv())
            subscription = self._parse_subscription(request)
        except (ValueError, TypeError) as exc:
            error = {"error": {"name": "INVALID_PARAM", "message": str(exc)}}
            await ws.send(orjson.dumps(error))
            await ws.close(code=1008, reason="invalid subscription")
            return
        except ConnectionClosed:
            return
        self.subscriptions[ws] = subscription
        for frame in self.inject:
            await ws.send(frame)
            self.frames_sent += 1
        self._subscribed.set()
        try:
            async for message in ws:
                if message == "PING":
                    self.pings.append((id(ws), self.clock.value))
                    await ws.send(orjson.dumps({"status": "UP"}))
                    self.frames_sent += 1
        except ConnectionClosed:
            pass
        finally:
            self.subscriptions.pop(ws, None)

    @staticmethod
    def _parse_subscription(request: Any) -> Subscription:
        if not isinstance(request, list) or not request:
            raise ValueError("the request must be a non-empty JSON array")
        if not isinstance(request[0], dict) or "ticket" not in request[0]:
            raise ValueError("the first object must carry a ticket")
        subscription = Subscription()
        for item in request[1:]:
            if not isinstance(item, dict):
                raise ValueError("every request field must be an object")
            if "type" in item:
                codes = item.get("codes")
                if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                    raise ValueError("codes must be a list of market codes")
                if item["type"] == "trade":
                    subscription.trade.update(codes)
                elif item["type"] == "orderbook":
                    subscription.orderbook.update(codes)
                else:
                    raise ValueError(f"unknown type {item['type']!r}")
        if not subscription.trade and not subscription.orderbook:
            raise ValueError("nothing subscribed")
        return subscription

    async def _broadcast(self, frame: bytes, kind: str | None, code: str | None) -> bool:
        sent = False
        for ws, subscription in list(self.subscriptions.items()):
            codes = getattr(subscription, kind) if kind else None
            if codes is not None and code not in codes:
                continue
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
                self.frames_sent += 1
                sent = True
        await self._lockstep()
        return sent

    async def _lockstep(self) -> None:
        """With `consumed`, wait until the client has read every frame sent so far."""
        if self.consumed is None:
            return
        while self.subscriptions and self.consumed() < self.frames_sent:
            await asyncio.sleep(0)

    async def _produce(self) -> None:
        await self._subscribed.wait()
        status = orjson.dumps({"status": "UP"})
        next_status_s = self.clock.value + self.status_interval_s
        for index, event in enumerate(self.events):
            if self.consumed is not None:  # lockstep: the market waits for its only client
                while not self.subscriptions:
                    await asyncio.sleep(0.001)
            event_s = event["timestamp"] / 1000
            while next_status_s <= event_s:  # keep-alives on market time (also during a stall)
                self.clock.value = next_status_s
                await self._broadcast(status, None, None)
                next_status_s += self.status_interval_s
                await asyncio.sleep(0)
            self.clock.value = max(self.clock.value, event_s)
            if index in self.drop_at or index in self.close_at:
                for ws in list(self.subscriptions):
                    if index in self.drop_at:
                        ws.transport.abort()  # no close frame: a dropped connection
                    else:
                        await ws.close(code=1001, reason="going away")
                    self.subscriptions.pop(ws, None)
            is_trade = event["type"] == "trade"
            if is_trade:
                self.happened_trades += 1
            market_ms = event["trade_timestamp"] if is_trade else event["timestamp"]
            stalled = self.stall_ms is not None and self.stall_ms[0] <= market_ms < self.stall_ms[1]
            if not stalled:
                kind = "trade" if is_trade else "orderbook"
                sent = await self._broadcast(orjson.dumps(event), kind, event["code"])
                if sent and is_trade:
                    self.sent_live.append(event["sequential_id"])
            await asyncio.sleep(self.pace_s)
        self.finished.set()
        while True:  # the market is closed for the test: only keep-alives from now on
            await asyncio.sleep(self.idle_status_s)
            await self._broadcast(status, None, None)

    # REST --------------------------------------------------------------------------------
    def ticks(self, market: str, count: int, cursor: int | None) -> list[dict[str, Any]]:
        """The market's happened trades, newest first, below `cursor` when given."""
        happened = [t for t in self.trades[: self.happened_trades] if t["code"] == market]
        happened.reverse()
        if cursor is not None:
            position = next(
                (i for i, t in enumerate(happened) if t["sequential_id"] == cursor), None
            )
            happened = [] if position is None else happened[position + 1 :]
        return [_rest_trade(t) for t in happened[:count]]

    def candles(
        self, market: str, count: int, to: pd.Timestamp | None = None
    ) -> list[dict[str, Any]]:
        """The market's history candles (before the replay; opened before `to` when given),
        newest first, Upbit field names."""
        rows = self.history[self.history["market"] == market]
        if to is not None:
            rows = rows[rows["ts"] < to]
        rows = rows.sort_values("ts").tail(count)
        out = []
        for row in rows.itertuples(index=False):
            ts = pd.Timestamp(row.ts).to_pydatetime().astimezone(UTC)
            out.append(
                {
                    "market": market,
                    "candle_date_time_utc": ts.strftime("%Y-%m-%dT%H:%M:%S"),
                    "candle_date_time_kst": (ts + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "opening_price": row.open,
                    "high_price": row.high,
                    "low_price": row.low,
                    "trade_price": row.close,
                    "timestamp": int((ts + timedelta(seconds=59)).timestamp() * 1000),
                    "candle_acc_trade_price": row.volume * row.close,
                    "candle_acc_trade_volume": row.volume,
                    "unit": 1,
                }
            )
        out.reverse()
        return out

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        status, body = 404, {"error": {"name": "NOT_FOUND", "message": scope["path"]}}
        try:
            market = query.get("market")
            if scope["path"] in ("/v1/trades/ticks", "/v1/candles/minutes/1"):
                if not market or market not in self.markets:
                    raise ValueError(f"unknown market {market!r}")
                count = int(query.get("count", "1"))
                limit = 500 if scope["path"] == "/v1/trades/ticks" else 200
                if not 1 <= count <= limit:
                    raise ValueError(f"count must be 1..{limit}")
                if scope["path"] == "/v1/trades/ticks":
                    cursor = int(query["cursor"]) if "cursor" in query else None
                    status, body = 200, self.ticks(market, count, cursor)
                else:
                    to = pd.Timestamp(query["to"]) if "to" in query else None
                    if to is not None and to.tzinfo is None:
                        to = to.tz_localize("UTC")
                    status, body = 200, self.candles(market, count, to)
        except ValueError as exc:
            status, body = 400, {"error": {"name": "INVALID_PARAM", "message": str(exc)}}
        payload = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"remaining-req", b"group=trades; min=600; sec=9"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def replayed_minutes(fake: FakeUpbitWS) -> pd.DataFrame:
    """The candles the fake turned into trades, sorted by minute and market."""
    return fake.replayed.sort_values(["ts", "market"]).reset_index(drop=True)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
