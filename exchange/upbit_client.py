"""A thin async Upbit REST client (httpx): configurable base URL, timeouts, typed errors.

It exists beside `pyupbit` because every pyupbit call hard-codes `https://api.upbit.com`, sends
without a timeout, turns every error into `None`, and its order calls cannot carry the
`identifier` (the idempotency key this service depends on). Here a failure is always an
exception (`ExchangeError` or a subclass) that says what happened, and a reply that is not the
JSON Upbit documents is a `MalformedReply`, never "no order".

Authentication is Upbit's documented JWT: HS256 over `{access_key, nonce}` plus, when the call
has parameters, `query_hash` = SHA-512 hex of the query string (`urlencode(params, doseq=True)`
with `[]` left unescaped) and `query_hash_alg` = `SHA512`. POST bodies are sent as JSON and
hashed as the query string of the same parameters in the same order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from exchange.ratelimit import RateLimited, RateLimiter
from exchange.types import ExchangeError, OrderRejected
from exchange.upbit_lane import LaneClosed, LaneFailed, OrderLane, proxied

__all__ = [
    "MalformedReply",
    "RefusedBeforeSending",
    "Signer",
    "UpbitApiError",
    "UpbitKeys",
    "UpbitRestClient",
    "UpbitTransportError",
    "jwt_headers",
    "query_string",
    "request_group",
]

logger = logging.getLogger(__name__)

# Pauses before the retries of a read that failed transiently: about 2 s in all, inside a bar.
READ_RETRY_S = (0.25, 0.5, 1.0)

# Turns the call's parameters (None when it has none) into the Authorization header.
Signer = Callable[[Mapping[str, Any] | None], dict[str, str]]

_QUOTATION_PREFIXES = ("/v1/orderbook", "/v1/trades", "/v1/ticker", "/v1/candles", "/v1/market")


class UpbitApiError(ExchangeError):
    """Upbit answered an error status; `name` is Upbit's error name, e.g. `order_not_found`."""

    def __init__(self, status: int, name: str, message: str, *, call: str) -> None:
        super().__init__(f"Upbit {call} answered {status} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message


class UpbitTransportError(ExchangeError):
    """The call failed on the way (timeout, connection).

    `maybe_delivered` is False only when the request certainly never reached Upbit (the
    connection was never made); otherwise Upbit may have acted on it.
    """

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class RefusedBeforeSending(OrderRejected):
    """The client refused the order itself (tick, precision, minimum): nothing was sent."""


class MalformedReply(ExchangeError):
    """Upbit's reply was not the JSON its API documents (the request may have been acted on)."""


class UpbitKeys:
    """An access key and its secret; neither is ever shown by `repr` or `str`."""

    __slots__ = ("_access", "_secret")

    def __init__(self, access_key: str | SecretStr, secret_key: str | SecretStr) -> None:
        access = _reveal(access_key)
        secret = _reveal(secret_key)
        if not access or not secret:
            raise ValueError("both the Upbit access key and secret key are required")
        self._access = SecretStr(access)
        self._secret = SecretStr(secret)

    @property
    def access_key(self) -> str:
        """The access key (goes into the JWT payload)."""
        return self._access.get_secret_value()

    def secret_bytes(self) -> bytes:
        """The secret key, for signing only."""
        return self._secret.get_secret_value().encode()

    def __repr__(self) -> str:
        return "UpbitKeys(access_key='**********', secret_key='**********')"

    __str__ = __repr__


def _reveal(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def query_string(params: Mapping[str, Any]) -> str:
    """Encode parameters as Upbit hashes them: `urlencode(doseq=True)` with `[]` unescaped."""
    return urlencode(params, doseq=True).replace("%5B%5D=", "[]=")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwt_headers(keys: UpbitKeys, params: Mapping[str, Any] | None) -> dict[str, str]:
    """Build `Authorization: Bearer <HS256 JWT>` with `query_hash` when there are parameters."""
    payload: dict[str, str] = {"access_key": keys.access_key, "nonce": str(uuid.uuid4())}
    if params:
        payload["query_hash"] = hashlib.sha512(query_string(params).encode()).hexdigest()
        payload["query_hash_alg"] = "SHA512"
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = _b64url(hmac.new(keys.secret_bytes(), signing_input, hashlib.sha256).digest())
    return {"Authorization": f"Bearer {header}.{body}.{signature}"}


def request_group(method: str, path: str) -> str:
    """Return the Upbit rate-limit group a call counts against: order, quotation or default."""
    if (method == "POST" and path == "/v1/orders") or (
        method == "DELETE" and path in ("/v1/order", "/v1/orders")
    ):
        return "order"
    if path.startswith(_QUOTATION_PREFIXES):
        return "quotation"
    return "default"


class UpbitRestClient:
    """Async calls to Upbit's REST API at `base_url`; every failure raises `ExchangeError`."""

    def __init__(
        self,
        base_url: str,
        *,
        keys: UpbitKeys | None = None,
        signer: Signer | None = None,
        timeout_s: float = 5.0,
        limiter: RateLimiter | None = None,
        max_429_retries: int = 4,
        read_retry_s: Sequence[float] = READ_RETRY_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`signer` builds the Authorization header (default: `jwt_headers` with `keys`).

        `read_retry_s`: the pauses before each retry of a read (GET) that failed transiently
        (a 5xx, a timeout, a dropped connection, an unreadable reply). Orders and cancels are
        never retried here: the order manager resolves them by identifier.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the Upbit REST URL must be http:// or https://, got {base_url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if signer is None and keys is not None:
            bound_keys = keys
            signer = lambda params: jwt_headers(bound_keys, params)  # noqa: E731
        self.base_url = base_url.rstrip("/")
        self._signer = signer
        self.limiter = limiter or RateLimiter()
        self._max_429_retries = max_429_retries
        self._read_retry_s = tuple(read_retry_s)
        self.read_retries = 0  # reads that failed transiently and were tried again
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self.lane: OrderLane | None = None

    async def open_lane(self, *, max_idle_s: float = 20.0) -> bool:
        """Keep a connection open for urgent orders (`exchange.upbit_lane`); True once open.

        Off (False, orders go through httpx) when a proxy applies to the REST URL.
        """
        if self.lane is None:
            if proxied(self.base_url):
                logger.info("order lane off: a proxy applies to %s", self.base_url)
                return False
            self.lane = OrderLane(self.base_url, timeout_s=self._timeout_s, max_idle_s=max_idle_s)
        return await self.lane.start()

    async def aclose(self) -> None:
        """Close the order lane and the connection pool."""
        if self.lane is not None:
            await self.lane.aclose()
        await self._http.aclose()

    # -- the calls -----------------------------------------------------------------------

    async def accounts(self) -> list[dict[str, Any]]:
        """GET /v1/accounts: every currency's balance, locked amount and average buy price."""
        return _list_of_dicts(await self.request("GET", "/v1/accounts"), "GET /v1/accounts")

    async def order_chance(self, market: str) -> dict[str, Any]:
        """GET /v1/orders/chance: fees, minimum totals and the market's state."""
        reply = await self.request("GET", "/v1/orders/chance", params={"market": market})
        return _dict(reply, "GET /v1/orders/chance")

    async def create_order(
        self, body: Mapping[str, Any], *, urgent: bool = False
    ) -> dict[str, Any]:
        """POST /v1/orders; the body carries the `identifier`.

        `urgent` sends it on the order lane when that is open and idle (see `open_lane`).
        """
        reply = await self.request("POST", "/v1/orders", body=body, urgent=urgent)
        return _dict(reply, "POST /v1/orders")

    async def get_order(
        self, *, uuid: str | None = None, identifier: str | None = None
    ) -> dict[str, Any] | None:
        """GET /v1/order by uuid or identifier; None when Upbit says `order_not_found`."""
        params = _one_key(uuid=uuid, identifier=identifier)
        try:
            reply = await self.request("GET", "/v1/order", params=params)
        except UpbitApiError as exc:
            if exc.status == 404 or exc.name == "order_not_found":
                return None
            raise
        return _dict(reply, "GET /v1/order")

    async def open_orders(self, market: str | None = None) -> list[dict[str, Any]]:
        """GET /v1/orders/open: orders waiting on the book (first page of 100, newest first)."""
        params: dict[str, Any] = {}
        if market is not None:
            params["market"] = market
        params["states[]"] = ["wait", "watch"]
        params["limit"] = 100
        reply = await self.request("GET", "/v1/orders/open", params=params)
        return _list_of_dicts(reply, "GET /v1/orders/open")

    async def cancel_order(
        self, *, uuid: str | None = None, identifier: str | None = None
    ) -> dict[str, Any]:
        """DELETE /v1/order by uuid or identifier."""
        params = _one_key(uuid=uuid, identifier=identifier)
        return _dict(await self.request("DELETE", "/v1/order", params=params), "DELETE /v1/order")

    async def orderbook(self, markets: Sequence[str]) -> list[dict[str, Any]]:
        """GET /v1/orderbook for the given markets (public)."""
        reply = await self.request(
            "GET", "/v1/orderbook", params={"markets": ",".join(markets)}, auth=False
        )
        return _list_of_dicts(reply, "GET /v1/orderbook")

    async def trades_ticks(
        self,
        market: str,
        *,
        count: int = 200,
        cursor: str | None = None,
        to: str | None = None,
        days_ago: int | None = None,
    ) -> list[dict[str, Any]]:
        """GET /v1/trades/ticks: recent trades, newest first (public)."""
        params: dict[str, Any] = {"market": market, "count": count}
        if to is not None:
            params["to"] = to
        if cursor is not None:
            params["cursor"] = cursor
        if days_ago is not None:
            params["daysAgo"] = days_ago
        reply = await self.request("GET", "/v1/trades/ticks", params=params, auth=False)
        return _list_of_dicts(reply, "GET /v1/trades/ticks")

    # -- the transport -------------------------------------------------------------------

    def build_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> httpx.Request:
        """Build the signed request without sending it."""
        headers = self._headers(method, path, body if body is not None else params, auth)
        url = path
        if params:
            url = f"{path}?{query_string(params)}"
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            content = json.dumps(dict(body), separators=(",", ":")).encode()
            return self._http.build_request(method, url, headers=headers, content=content)
        return self._http.build_request(method, url, headers=headers)

    async def _send_on_lane(
        self,
        lane: OrderLane,
        method: str,
        path: str,
        body: Mapping[str, Any],
        group: str,
        auth: bool,
    ) -> httpx.Response | None:
        """Send on the lane under the rate limiter; None when the lane wrote nothing."""
        headers = self._headers(method, path, body, auth)
        headers["Content-Type"] = "application/json; charset=utf-8"
        content = json.dumps(dict(body), separators=(",", ":")).encode()
        await self.limiter.acquire(group)
        try:
            response = await lane.send(method, path, list(headers.items()), content)
        except LaneClosed:
            self.limiter.release(group)
            return None
        except LaneFailed as exc:
            self.limiter.release(group)
            raise UpbitTransportError(
                f"Upbit {method} {path}: {exc}; the request may have been acted on",
                maybe_delivered=True,
            ) from None
        except BaseException:
            self.limiter.release(group)
            raise
        self.limiter.observe(group, response.status_code, response.headers.get("Remaining-Req"))
        return response

    def _headers(
        self, method: str, path: str, hashed: Mapping[str, Any] | None, auth: bool
    ) -> dict[str, str]:
        if not auth:
            return {}
        if self._signer is None:
            raise ExchangeError(f"{method} {path} needs the Upbit API keys and none were given")
        return self._signer(dict(hashed) if hashed else None)

    async def send_built(self, request: httpx.Request, group: str) -> httpx.Response:
        """Send a built request once under the rate limiter (429 is left to the caller)."""
        await self.limiter.acquire(group)
        call = f"{request.method} {request.url.path}"
        try:
            response = await self._send_once(request, call)
        except BaseException:
            self.limiter.release(group)
            raise
        self.limiter.observe(group, response.status_code, response.headers.get("Remaining-Req"))
        return response

    async def _send_once(self, request: httpx.Request, call: str) -> httpx.Response:
        """Send without the limiter; turn transport failures into `UpbitTransportError`."""
        try:
            return await self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise UpbitTransportError(
                f"Upbit {call}: could not connect ({type(exc).__name__}: {exc})",
                maybe_delivered=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise UpbitTransportError(
                f"Upbit {call}: no reply within the timeout ({type(exc).__name__}); the request "
                "may have been acted on",
                maybe_delivered=True,
            ) from None
        except httpx.HTTPError as exc:
            raise UpbitTransportError(
                f"Upbit {call}: {type(exc).__name__}: {exc}; the request may have been acted on",
                maybe_delivered=True,
            ) from None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        auth: bool = True,
        urgent: bool = False,
    ) -> Any:
        """Send a call and return its decoded JSON; retry 429s after the limiter's backoff.

        A read (GET) that fails transiently is tried again after each pause of `read_retry_s`
        (logged); the last failure is raised. `urgent` (a body call only) goes over the order
        lane when it is ready.
        """
        if method != "GET":
            return await self._request_once(method, path, params, body, auth, urgent)
        for pause in self._read_retry_s:
            try:
                return await self._request_once(method, path, params, body, auth, urgent)
            except (UpbitTransportError, MalformedReply) as exc:
                error: ExchangeError = exc
            except UpbitApiError as exc:
                if exc.status < 500:
                    raise
                error = exc
            self.read_retries += 1
            logger.warning("Upbit %s %s failed (%s); again in %.1fs", method, path, error, pause)
            await asyncio.sleep(pause)
        return await self._request_once(method, path, params, body, auth, urgent)

    async def _request_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        auth: bool,
        urgent: bool,
    ) -> Any:
        group = request_group(method, path)
        call = f"{method} {path}"
        for _attempt in range(self._max_429_retries + 1):
            # A fresh nonce per attempt: Upbit refuses a reused one.
            response = None
            if urgent and body is not None and self.lane is not None and self.lane.ready:
                response = await self._send_on_lane(self.lane, method, path, body, group, auth)
            if response is None:
                built = self.build_request(method, path, params=params, body=body, auth=auth)
                response = await self.send_built(built, group)
            if response.status_code == 429:
                continue
            return _decode(response, call)
        raise RateLimited(
            f"Upbit {call}: still 429 after {self._max_429_retries} backoffs; not processed",
            group=group,
        )


def _decode(response: httpx.Response, call: str) -> Any:
    """Return the JSON of a 2xx reply; raise `UpbitApiError` or `MalformedReply` otherwise."""
    status = response.status_code
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = _NOT_JSON
    if 200 <= status < 300:
        if data is _NOT_JSON:
            raise MalformedReply(
                f"Upbit {call} answered {status} with a body that is not JSON: "
                f"{_snippet(response.text)}"
            )
        return data
    name, message = "unknown", _snippet(response.text)
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        name = str(data["error"].get("name") or name)
        message = str(data["error"].get("message") or message)
    raise UpbitApiError(status, name, message, call=call)


_NOT_JSON = object()


def _snippet(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _dict(reply: Any, call: str) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise MalformedReply(f"Upbit {call}: expected a JSON object, got {type(reply).__name__}")
    return reply


def _list_of_dicts(reply: Any, call: str) -> list[dict[str, Any]]:
    if not isinstance(reply, list) or not all(isinstance(item, dict) for item in reply):
        raise MalformedReply(
            f"Upbit {call}: expected a JSON list of objects, got {_snippet(str(reply))}"
        )
    return reply


def _one_key(*, uuid: str | None, identifier: str | None) -> dict[str, str]:
    if (uuid is None) == (identifier is None):
        raise ValueError("give exactly one of uuid or identifier")
    return {"uuid": uuid} if uuid is not None else {"identifier": identifier or ""}
