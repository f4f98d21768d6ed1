"""A local Upbit REST server for the tests: real paths, real JSON field names, real auth checks.

It checks the HS256 JWT and its `query_hash` (SHA-512 of the query string, as Upbit does),
keeps balances and orders, refuses a second use of an `identifier` (even when the first order
failed), sends `Remaining-Req` on every reply, answers 429 over the per-second limit and 418
once 429s are ignored, and fills orders against a settable orderbook. Faults are scripted:

    with FakeUpbit(krw=Decimal(1_000_000)) as fake:
        fake.set_price("KRW-BTC", Decimal(50_000_000))
        fake.delay_reply("POST", "/v1/orders", seconds=1.0)   # accept, then answer late
        fake.fail_next(2)                                      # the next 2 calls answer 500
        fake.inject_429(3)                                     # the next 3 calls answer 429
        fake.malformed_next("POST", "/v1/orders")              # act, then answer garbage
        ... fake.base_url ...
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid as uuid_module
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlencode

import uvicorn
from loopback import start_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.rules import is_on_tick, tick_size

ACCESS_KEY = "fake-access-key-AKIA0123456789"
SECRET_KEY = "fake-secret-key-s3cr3t-do-not-log-9876543210"
KST = timezone(timedelta(hours=9))
_ZERO = Decimal(0)
_FEE = Decimal("0.0005")
_VOLUME_Q = Decimal("0.00000001")
_LIMITS = {"order": 8, "default": 30, "quotation": 10}
_QUOTATION = ("/v1/orderbook", "/v1/trades", "/v1/ticker", "/v1/candles", "/v1/market")


def _group(method: str, path: str) -> str:
    if (method == "POST" and path == "/v1/orders") or (
        method == "DELETE" and path in ("/v1/order", "/v1/orders")
    ):
        return "order"
    if path.startswith(_QUOTATION):
        return "quotation"
    return "default"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _error(status: int, name: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"name": name, "message": message}}


@dataclass
class FakeOrder:
    uuid: str
    identifier: str | None
    market: str
    side: str
    ord_type: str
    price: Decimal | None
    volume: Decimal | None
    time_in_force: str | None
    created_at: datetime
    state: str = "wait"
    executed_volume: Decimal = _ZERO
    executed_funds: Decimal = _ZERO
    paid_fee: Decimal = _ZERO
    locked: Decimal = _ZERO  # KRW (bid) or coin (ask) still held for the order
    trades: list[dict[str, Any]] = field(default_factory=list)

    def remaining_volume(self) -> Decimal | None:
        if self.volume is None:
            return None
        return self.volume - self.executed_volume

    def to_json(self, *, with_trades: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": _s(self.price),
            "state": self.state,
            "market": self.market,
            "created_at": self.created_at.astimezone(KST).isoformat(timespec="seconds"),
            "volume": _s(self.volume),
            "remaining_volume": _s(self.remaining_volume()),
            "reserved_fee": _s(self.paid_fee),
            "remaining_fee": "0",
            "paid_fee": _s(self.paid_fee),
            "locked": _s(self.locked),
            "executed_volume": _s(self.executed_volume),
            "executed_funds": _s(self.executed_funds),
            "trades_count": len(self.trades),
        }
        if self.time_in_force is not None:
            body["time_in_force"] = self.time_in_force
        if self.identifier is not None:
            body["identifier"] = self.identifier
        if with_trades:
            body["trades"] = list(self.trades)
        return body


@dataclass
class RequestRecord:
    """One request as the fake saw it."""

    method: str
    path: str
    group: str
    status: int
    at: float  # time.monotonic() at receipt
    injected: bool  # answered by a scripted fault, not by the exchange logic


@dataclass
class _Fault:
    method: str | None
    path: str | None
    remaining: int
    kind: str  # "fail", "429", "delay", "malformed"
    status: int = 500
    seconds: float = 0.0
    body: str = ""

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


class FakeUpbit:
    """The fake exchange's state and its ASGI app; use as a context manager to serve it."""

    def __init__(
        self,
        *,
        krw: Decimal = Decimal(1_000_000),
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        limits: Mapping[str, int] = _LIMITS,
        penalty_s: float = 0.3,
        grace_s: float = 0.2,
        ignored_429_limit: int = 3,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.limits = dict(limits)
        self.penalty_s = penalty_s
        self.grace_s = grace_s
        self.ignored_429_limit = ignored_429_limit
        self._lock = threading.Lock()
        self.balances: dict[str, dict[str, Decimal]] = {
            "KRW": {"balance": krw, "locked": _ZERO, "avg_buy_price": _ZERO}
        }
        self.orders: dict[str, FakeOrder] = {}
        self.identifiers: dict[str, str | None] = {}  # identifier -> uuid (None: it failed)
        self.books: dict[
            str, tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]
        ] = {}
        self.ticks: dict[str, list[dict[str, Any]]] = {}
        self.records: list[RequestRecord] = []
        self.auth_failures: list[str] = []
        self.seen_tokens: list[str] = []
        self._nonces: set[str] = set()
        self._faults: list[_Fault] = []
        self._windows: dict[str, deque[float]] = {}
        self._last_429: dict[str, float] = {}
        self._ignored_429s = 0
        self.blocked = False
        self.app = Starlette(
            routes=[
                Route("/v1/accounts", self._accounts, methods=["GET"]),
                Route("/v1/orders/chance", self._chance, methods=["GET"]),
                Route("/v1/orders", self._orders, methods=["POST", "GET"]),
                Route("/v1/orders/open", self._open_orders, methods=["GET"]),
                Route("/v1/order", self._order, methods=["GET", "DELETE"]),
                Route("/v1/orderbook", self._orderbook, methods=["GET"]),
                Route("/v1/trades/ticks", self._trades_ticks, methods=["GET"]),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- serving -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._server, self._thread, self.port = start_in_thread(self.app, "fake-upbit")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------------------

    def set_orderbook(
        self,
        market: str,
        asks: Sequence[tuple[Decimal, Decimal]],
        bids: Sequence[tuple[Decimal, Decimal]],
    ) -> None:
        """Set the book: asks lowest first, bids highest first, as (price, size)."""
        with self._lock:
            self.books[market] = (sorted(asks), sorted(bids, reverse=True))

    def set_price(self, market: str, price: Decimal, *, size: Decimal = Decimal(1000)) -> None:
        """A deep book around `price`: best ask at `price`, best bid one tick below."""
        self.set_orderbook(market, [(price, size)], [(price - tick_size(price), size)])

    def set_balance(self, currency: str, balance: Decimal, avg_buy_price: Decimal = _ZERO) -> None:
        with self._lock:
            self.balances[currency] = {
                "balance": balance,
                "locked": _ZERO,
                "avg_buy_price": avg_buy_price,
            }

    def load_trades(self, market: str, trades: Sequence[Mapping[str, Any]]) -> None:
        """Add trades (Upbit's /v1/trades/ticks fields) to what the endpoint serves."""
        with self._lock:
            self.ticks.setdefault(market, []).extend(dict(t) for t in trades)

    def fail_next(
        self, n: int, *, status: int = 500, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer the next `n` matching calls with `status` without acting on them."""
        self._faults.append(_Fault(method, path, n, "fail", status=status))

    def clear_faults(self) -> None:
        """Drop every scripted fault not yet used (the exchange answers normally again)."""
        with self._lock:
            self._faults.clear()

    def inject_429(self, n: int, *, method: str | None = None, path: str | None = None) -> None:
        """Answer the next `n` matching calls 429 (counted like real 429s for the 418 rule)."""
        self._faults.append(_Fault(method, path, n, "429", status=429))

    def delay_reply(self, method: str, path: str, *, seconds: float, times: int = 1) -> None:
        """Act on the next matching call(s), then wait `seconds` before answering."""
        self._faults.append(_Fault(method, path, times, "delay", seconds=seconds))

    def malformed_next(
        self, method: str, path: str, *, body: str = "<html>502 Bad Gateway</html>", times: int = 1
    ) -> None:
        """Act on the next matching call(s), then answer 200 with `body` instead of the JSON."""
        self._faults.append(_Fault(method, path, times, "malformed", body=body))

    def order_by_identifier(self, identifier: str) -> FakeOrder | None:
        with self._lock:
            order_uuid = self.identifiers.get(identifier)
            return None if order_uuid is None else self.orders[order_uuid]

    def order_posts(self) -> list[RequestRecord]:
        """Every POST /v1/orders the fake received (any outcome)."""
        return [r for r in self.records if r.method == "POST" and r.path == "/v1/orders"]

    def max_in_window(self, group: str, window_s: float = 1.0) -> int:
        """The most requests of `group` received within any `window_s` (scripted ones excluded)."""
        times = sorted(r.at for r in self.records if r.group == group and not r.injected)
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- the protocol --------------------------------------------------------------------

    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.remaining > 0 and fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    def _remaining_header(self, group: str, now: float) -> str:
        window = self._windows.setdefault(group, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        left = max(self.limits.get(group, 10) - len(window), 0)
        return f"group={group}; min=1800; sec={left}"

    async def _serve(self, request: Request, handler: Any, *, auth: bool = True) -> Response:
        method, path = request.method, request.url.path
        group = _group(method, path)
        now = time.monotonic()
        with self._lock:
            status, body, injected = self._admit(method, path, group, now)
        if status is None:
            raw_body = await request.body()
            params, auth_error = self._parse(request, raw_body, auth=auth)
            if auth_error is not None:
                status, body = auth_error
            else:
                with self._lock:
                    try:
                        status, body = handler(params)
                    except (KeyError, ValueError, ArithmeticError) as exc:
                        status, body = _error(400, "validation_error", f"bad parameter: {exc}")
        with self._lock:
            self.records.append(RequestRecord(method, path, group, status, now, injected))
            header = self._remaining_header(group, now)
            delay = self._take_fault(method, path, ("delay",)) if status < 400 else None
            malformed = self._take_fault(method, path, ("malformed",))
        headers = {"Remaining-Req": header}
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        if malformed is not None:
            return Response(
                malformed.body, status_code=200, headers=headers, media_type="text/html"
            )
        if isinstance(body, str):
            return Response(body, status_code=status, headers=headers, media_type="text/plain")
        return JSONResponse(body, status_code=status, headers=headers)

    def _admit(self, method: str, path: str, group: str, now: float) -> tuple[Any, Any, bool]:
        """Apply the block, the rate limit and the scripted faults; (None, None, _) admits."""
        if self.blocked:
            return 418, "blocked: too many requests after 429", False
        last = self._last_429.get(group)
        # A request inside `penalty_s` of a 429 ignores it (requests already in flight when
        # the 429 left, arriving within `grace_s`, do not): it gets 429 again, and after
        # `ignored_429_limit` of those the client is blocked with 418.
        if last is not None and self.grace_s <= now - last < self.penalty_s:
            self._ignored_429s += 1
            if self._ignored_429s >= self.ignored_429_limit:
                self.blocked = True
                return 418, "blocked: too many requests after 429", False
            self._last_429[group] = now
            return 429, "Too many API requests.", False
        fault = self._take_fault(method, path, ("429",))
        if fault is not None:
            self._last_429[group] = now
            return 429, "Too many API requests.", True
        window = self._windows.setdefault(group, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.limits.get(group, 10):
            self._last_429[group] = now
            return 429, "Too many API requests.", False
        window.append(now)
        fault = self._take_fault(method, path, ("fail",))
        if fault is not None:
            return fault.status, {"error": {"name": "server_error", "message": "injected"}}, True
        return None, None, False

    def _parse(
        self, request: Request, raw_body: bytes, *, auth: bool
    ) -> tuple[dict[str, Any], tuple[int, Any] | None]:
        raw_query = request.scope.get("query_string", b"").decode()
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        params: dict[str, Any] = {}
        for key, value in pairs:
            if key.endswith("[]"):
                params.setdefault(key, []).append(value)
            else:
                params[key] = value
        hashed_forms: list[str] = []
        if raw_query:
            hashed_forms = [raw_query, unquote(raw_query)]
        if raw_body:
            try:
                body = json.loads(raw_body)
            except json.JSONDecodeError:
                return {}, _error(400, "invalid_body", "the body is not JSON")
            if not isinstance(body, dict):
                return {}, _error(400, "invalid_body", "the body is not a JSON object")
            params.update(body)
            encoded = urlencode(body, doseq=True).replace("%5B%5D=", "[]=")
            hashed_forms = [encoded, unquote(encoded)]
        if not auth:
            return params, None
        return params, self._check_jwt(request.headers.get("authorization"), hashed_forms)

    def _check_jwt(self, header: str | None, hashed_forms: list[str]) -> tuple[int, Any] | None:
        def refuse(reason: str) -> tuple[int, Any]:
            self.auth_failures.append(reason)
            return _error(401, "jwt_verification", reason)

        if not header or not header.startswith("Bearer "):
            return refuse("no Bearer token")
        token = header.removeprefix("Bearer ")
        self.seen_tokens.append(token)
        parts = token.split(".")
        if len(parts) != 3:
            return refuse("not a JWT")
        try:
            jose = json.loads(_b64decode(parts[0]))
            payload = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, json.JSONDecodeError):
            return refuse("undecodable JWT")
        if jose.get("alg") != "HS256":
            return refuse(f"alg {jose.get('alg')!r} is not HS256")
        expected = hmac.new(
            self.secret_key.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, signature):
            return refuse("bad signature")
        if payload.get("access_key") != self.access_key:
            return _error(401, "invalid_access_key", "unknown access key")
        nonce = payload.get("nonce")
        if not nonce or nonce in self._nonces:
            return _error(401, "nonce_used", "nonce missing or already used")
        self._nonces.add(nonce)
        if hashed_forms:
            if payload.get("query_hash_alg", "SHA512") != "SHA512":
                return refuse("query_hash_alg is not SHA512")
            wanted = {hashlib.sha512(form.encode()).hexdigest() for form in hashed_forms}
            if payload.get("query_hash") not in wanted:
                self.auth_failures.append("query_hash mismatch")
                return _error(401, "invalid_query_payload", "query_hash does not match")
        return None

    # -- endpoints -----------------------------------------------------------------------

    async def _accounts(self, request: Request) -> Response:
        return await self._serve(request, self._do_accounts)

    async def _chance(self, request: Request) -> Response:
        return await self._serve(request, self._do_chance)

    async def _orders(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._serve(request, self._do_list_orders)
        return await self._serve(request, self._do_create)

    async def _open_orders(self, request: Request) -> Response:
        return await self._serve(request, self._do_list_orders)

    async def _order(self, request: Request) -> Response:
        if request.method == "DELETE":
            return await self._serve(request, self._do_cancel)
        return await self._serve(request, self._do_get_order)

    async def _orderbook(self, request: Request) -> Response:
        return await self._serve(request, self._do_orderbook, auth=False)

    async def _trades_ticks(self, request: Request) -> Response:
        return await self._serve(request, self._do_trades_ticks, auth=False)

    def _do_accounts(self, _params: dict[str, Any]) -> tuple[int, Any]:
        rows = []
        for currency, b in self.balances.items():
            rows.append(
                {
                    "currency": currency,
                    "balance": _s(b["balance"]),
                    "locked": _s(b["locked"]),
                    "avg_buy_price": _s(b["avg_buy_price"]),
                    "avg_buy_price_modified": False,
                    "unit_currency": "KRW",
                }
            )
        return 200, rows

    def _do_chance(self, params: dict[str, Any]) -> tuple[int, Any]:
        market = params["market"]
        if market not in self.books:
            return _error(404, "market_does_not_exist", f"market {market} does not exist")
        coin = market.split("-", 1)[1]
        krw, held = self.balances["KRW"], self.balances.get(coin)
        return 200, {
            "bid_fee": "0.0005",
            "ask_fee": "0.0005",
            "maker_bid_fee": "0.0005",
            "maker_ask_fee": "0.0005",
            "market": {
                "id": market,
                "name": f"{coin}/KRW",
                "order_types": ["limit"],
                "ask_types": ["limit", "market"],
                "bid_types": ["limit", "price"],
                "order_sides": ["ask", "bid"],
                "bid": {"currency": "KRW", "price_unit": None, "min_total": "5000"},
                "ask": {"currency": coin, "price_unit": None, "min_total": "5000"},
                "max_total": "1000000000",
                "state": "active",
            },
            "bid_account": {
                "currency": "KRW",
                "balance": _s(krw["balance"]),
                "locked": _s(krw["locked"]),
                "avg_buy_price": "0",
                "avg_buy_price_modified": False,
                "unit_currency": "KRW",
            },
            "ask_account": {
                "currency": coin,
                "balance": _s(held["balance"]) if held else "0",
                "locked": _s(held["locked"]) if held else "0",
                "avg_buy_price": _s(held["avg_buy_price"]) if held else "0",
                "avg_buy_price_modified": False,
                "unit_currency": "KRW",
            },
        }

    def _lookup(self, params: dict[str, Any]) -> FakeOrder | None:
        if "uuid" in params:
            return self.orders.get(params["uuid"])
        order_uuid = self.identifiers.get(params["identifier"])
        return None if order_uuid is None else self.orders.get(order_uuid)

    def _do_get_order(self, params: dict[str, Any]) -> tuple[int, Any]:
        order = self._lookup(params)
        if order is None:
            return _error(404, "order_not_found", "주문을 찾지 못했습니다.")
        return 200, order.to_json(with_trades=True)

    def _do_list_orders(self, params: dict[str, Any]) -> tuple[int, Any]:
        states = params.get("states[]") or [params.get("state", "wait")]
        market = params.get("market")
        rows = [
            o.to_json(with_trades=False)
            for o in self.orders.values()
            if o.state in states and (market is None or o.market == market)
        ]
        return 200, list(reversed(rows))

    def _do_cancel(self, params: dict[str, Any]) -> tuple[int, Any]:
        order = self._lookup(params)
        if order is None:
            return _error(404, "order_not_found", "주문을 찾지 못했습니다.")
        if order.state != "wait":
            return _error(400, "order_not_found", "already finished")
        reply = order.to_json(with_trades=False)  # Upbit answers with the order as it waited
        self._release(order)
        order.state = "cancel"
        return 200, reply

    def _do_orderbook(self, params: dict[str, Any]) -> tuple[int, Any]:
        rows = []
        for market in str(params["markets"]).split(","):
            if market not in self.books:
                return _error(404, "Code not found", f"market {market} not found")
            asks, bids = self.books[market]
            units = []
            for i in range(max(len(asks), len(bids))):
                ask = asks[i] if i < len(asks) else (_ZERO, _ZERO)
                bid = bids[i] if i < len(bids) else (_ZERO, _ZERO)
                units.append(
                    {
                        "ask_price": float(ask[0]),
                        "bid_price": float(bid[0]),
                        "ask_size": float(ask[1]),
                        "bid_size": float(bid[1]),
                    }
                )
            rows.append(
                {
                    "market": market,
                    "timestamp": int(time.time() * 1000),
                    "total_ask_size": float(sum((a[1] for a in asks), _ZERO)),
                    "total_bid_size": float(sum((b[1] for b in bids), _ZERO)),
                    "orderbook_units": units,
                    "level": 0,
                }
            )
        return 200, rows

    def _do_trades_ticks(self, params: dict[str, Any]) -> tuple[int, Any]:
        market = params["market"]
        count = min(int(params.get("count", 1)), 500)
        trades = sorted(
            self.ticks.get(market, []), key=lambda t: int(t["sequential_id"]), reverse=True
        )
        cursor = params.get("cursor")
        if cursor:
            trades = [t for t in trades if int(t["sequential_id"]) < int(cursor)]
        return 200, trades[:count]

    # -- matching ------------------------------------------------------------------------

    def _do_create(self, params: dict[str, Any]) -> tuple[int, Any]:
        identifier = params.get("identifier")
        if identifier is not None:
            if identifier in self.identifiers:
                return _error(400, "validation_error", f"identifier {identifier!r} already used")
            self.identifiers[identifier] = None  # taken now, even if the order fails below
        status, body = self._validate_and_place(params)
        if status == 201 and identifier is not None:
            self.identifiers[identifier] = body["uuid"]
        return status, body

    def _validate_and_place(self, params: dict[str, Any]) -> tuple[int, Any]:
        market, side, ord_type = params.get("market"), params.get("side"), params.get("ord_type")
        if market not in self.books:
            return _error(400, "market_does_not_exist", f"market {market!r} does not exist")
        if side not in ("bid", "ask"):
            return _error(400, "validation_error", f"side {side!r}")
        price = Decimal(str(params["price"])) if params.get("price") is not None else None
        volume = Decimal(str(params["volume"])) if params.get("volume") is not None else None
        tif = params.get("time_in_force")
        coin = market.split("-", 1)[1]
        asks, bids = self.books[market]
        if ord_type == "price":
            if side != "bid" or price is None or volume is not None:
                return _error(400, "create_bid_error", "price orders are bids with price only")
            if price < 5000:
                return _error(400, "under_min_total_bid", "최소주문금액 이상으로 주문해주세요")
            if price * (1 + _FEE) > self.balances["KRW"]["balance"]:
                return _error(400, "insufficient_funds_bid", "매수가능 금액이 부족합니다.")
        elif ord_type == "market":
            if side != "ask" or volume is None or price is not None:
                return _error(400, "create_ask_error", "market orders are asks with volume only")
            best_bid = bids[0][0] if bids else _ZERO
            if volume * best_bid < 5000:
                return _error(400, "under_min_total_ask", "최소주문금액 이상으로 주문해주세요")
            if volume > self._free(coin):
                return _error(400, "insufficient_funds_ask", "매도가능 금액이 부족합니다.")
        elif ord_type == "limit":
            if price is None or volume is None:
                return _error(400, "validation_error", "limit orders need price and volume")
            if not is_on_tick(price):
                return _error(400, "invalid_price", f"price {price} is not on the tick")
            if price * volume < 5000:
                name = "under_min_total_bid" if side == "bid" else "under_min_total_ask"
                return _error(400, name, "최소주문금액 이상으로 주문해주세요")
            if side == "bid" and price * volume * (1 + _FEE) > self.balances["KRW"]["balance"]:
                return _error(400, "insufficient_funds_bid", "매수가능 금액이 부족합니다.")
            if side == "ask" and volume > self._free(coin):
                return _error(400, "insufficient_funds_ask", "매도가능 금액이 부족합니다.")
        else:
            return _error(400, "validation_error", f"ord_type {ord_type!r}")
        order = FakeOrder(
            uuid=str(uuid_module.uuid4()),
            identifier=params.get("identifier"),
            market=market,
            side=side,
            ord_type=ord_type,
            price=price,
            volume=volume,
            time_in_force=tif,
            created_at=datetime.now(UTC),
        )
        self.orders[order.uuid] = order
        accepted = order.to_json(with_trades=False)  # Upbit answers before the match
        self._match(order, coin, asks, bids)
        return 201, accepted

    def _free(self, currency: str) -> Decimal:
        b = self.balances.get(currency)
        return _ZERO if b is None else b["balance"]

    def _match(self, order: FakeOrder, coin: str, asks: list[Any], bids: list[Any]) -> None:
        if order.side == "bid":
            budget = order.price if order.ord_type == "price" else None
            wanted = order.volume
            for level_price, size in asks:
                if order.ord_type == "limit" and level_price > (order.price or _ZERO):
                    break
                if budget is not None:
                    spent = order.executed_funds
                    take = ((budget - spent) / level_price).quantize(_VOLUME_Q, ROUND_DOWN)
                else:
                    take = (wanted or _ZERO) - order.executed_volume
                take = min(take, size)
                if take <= 0:
                    break
                self._trade(order, coin, level_price, take)
        else:
            for level_price, size in bids:
                if order.ord_type == "limit" and level_price < (order.price or _ZERO):
                    break
                take = min((order.volume or _ZERO) - order.executed_volume, size)
                if take <= 0:
                    break
                self._trade(order, coin, level_price, take)
        if order.ord_type in ("price", "market"):
            complete = (
                order.executed_volume == order.volume
                if order.ord_type == "market"
                else (order.price or _ZERO) - order.executed_funds < asks[0][0] * _VOLUME_Q * 2
            )
            order.state = "done" if complete else "cancel"
            return
        if order.executed_volume == order.volume:
            order.state = "done"
        elif order.time_in_force in ("ioc", "fok"):
            order.state = "cancel"
        else:
            rest = (order.volume or _ZERO) - order.executed_volume
            if order.side == "bid":
                order.locked = (order.price or _ZERO) * rest * (1 + _FEE)
                self.balances["KRW"]["balance"] -= order.locked
                self.balances["KRW"]["locked"] += order.locked
            else:
                order.locked = rest
                self.balances[coin]["balance"] -= rest
                self.balances[coin]["locked"] += rest

    def _release(self, order: FakeOrder) -> None:
        coin = order.market.split("-", 1)[1]
        currency = "KRW" if order.side == "bid" else coin
        self.balances[currency]["balance"] += order.locked
        self.balances[currency]["locked"] -= order.locked
        order.locked = _ZERO

    def _trade(self, order: FakeOrder, coin: str, price: Decimal, volume: Decimal) -> None:
        funds = price * volume
        fee = funds * _FEE
        krw = self.balances["KRW"]
        held = self.balances.setdefault(
            coin, {"balance": _ZERO, "locked": _ZERO, "avg_buy_price": _ZERO}
        )
        if order.side == "bid":
            krw["balance"] -= funds + fee
            total = held["balance"] + held["locked"] + volume
            held["avg_buy_price"] = (
                held["avg_buy_price"] * (held["balance"] + held["locked"]) + funds
            ) / total
            held["balance"] += volume
        else:
            held["balance"] -= volume
            krw["balance"] += funds - fee
        order.executed_volume += volume
        order.executed_funds += funds
        order.paid_fee += fee
        order.trades.append(
            {
                "market": order.market,
                "uuid": str(uuid_module.uuid4()),
                "price": _s(price),
                "volume": _s(volume),
                "funds": _s(funds),
                "trend": "up" if order.side == "bid" else "down",
                "side": order.side,
                "created_at": datetime.now(UTC).astimezone(KST).isoformat(timespec="seconds"),
            }
        )
