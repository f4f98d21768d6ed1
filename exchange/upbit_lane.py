"""A pre-opened HTTP/1.1 connection for urgent orders: the emergency sell's way out.

Between `httpx.AsyncClient.send` and the last byte of the body on the wire, httpx spends
about 0.7 ms on this machine (auth and redirect handling, the connection pool, anyio
streams); a watchdog sell that must leave within 2 ms of the tick cannot afford it. The lane
keeps one connection to the REST host open at all times, writes the request itself, and
parses the reply with h11 (the HTTP/1.1 state machine httpx itself runs on).

- **One request at a time.** While the lane carries a request it is not `ready`, and the
  client sends a second urgent order through httpx instead of queueing it.
- **Always open.** When the server closes the connection (Upbit and uvicorn both close idle
  keep-alive connections) or it breaks, it is reopened in the background at once, then with
  backoff while connecting fails. The connection is also replaced before it has been idle for
  `max_idle_s`, opening the new one first, so a sell never lands on a connection the server
  is about to drop.
- **Honest failures.** `LaneClosed` means nothing was written (the caller may send the same
  request another way); once bytes are written every failure is `LaneFailed` (the client
  raises it as a maybe-delivered transport error), and the order is resolved by its
  identifier as usual.
- **Proxies.** httpx honours the `HTTPS_PROXY` / `HTTP_PROXY` environment; the lane cannot,
  so it stays off when one applies to the host (`proxied`), and orders go through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
import urllib.request
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import certifi
import h11
import httpx

__all__ = ["LaneClosed", "LaneFailed", "OrderLane", "proxied"]

logger = logging.getLogger(__name__)

_RECONNECT_S: tuple[float, ...] = (0.0, 0.1, 0.5, 2.0, 5.0)
_MAX_BODY = 1 << 20  # an order reply is a few kB; anything near this is not Upbit's
_USER_AGENT = f"python-httpx/{httpx.__version__}"  # what the pooled client sends, so gateways
# see the same client on both paths (no Accept-Encoding: replies come uncompressed)
_UNSAFE = re.compile(r"[\r\n\0]")  # never inside a request line or a header


class LaneClosed(ConnectionError):
    """The lane had no open connection: nothing was sent."""


class LaneFailed(ConnectionError):
    """The request was written but its reply did not arrive in full: it may have been acted on."""


def proxied(base_url: str) -> bool:
    """True when the environment sends `base_url` through a proxy (the lane cannot follow)."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class _Reply(asyncio.Protocol):
    """One connection: h11 parses what arrives; `reply` completes when a response has."""

    def __init__(self, on_lost: Callable[[_Reply], None]) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_BODY)
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[httpx.Response] | None = None
        self.closed = False
        self.opened_at = self.last_used = time.monotonic()
        self.closed_at: float | None = None
        self._on_lost = on_lost
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._pump()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed()
        self._fail(f"the connection closed before the reply ({exc or 'closed by the server'})")
        self._on_lost(self)

    def close(self) -> None:
        self._mark_closed()
        if self.transport is not None:
            self.transport.close()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.closed_at = time.monotonic()

    def _pump(self) -> None:
        try:
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Response):
                    self._status = event.status_code
                    self._headers = list(event.headers)
                elif isinstance(event, h11.InformationalResponse):
                    continue
                elif isinstance(event, h11.Data):
                    self._body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self._complete()
                elif isinstance(event, h11.ConnectionClosed):
                    self._fail("the server closed the connection before the reply")
                    self.close()
                    return
        except h11.RemoteProtocolError as exc:
            self._fail(f"the reply is not HTTP/1.1 ({exc})")
            self.close()

    def _complete(self) -> None:
        response = httpx.Response(self._status, headers=self._headers, content=bytes(self._body))
        self._headers, self._body = [], bytearray()
        reply, self.reply = self.reply, None
        if reply is not None and not reply.done():
            reply.set_result(response)
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        else:  # the server asked to close (Connection: close) or the cycle cannot be reused
            self.close()

    def _fail(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        if reply is not None and not reply.done():
            reply.set_exception(ConnectionError(reason))


class OrderLane:
    """One always-open HTTP/1.1 (or TLS) connection to `base_url` for urgent requests."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        max_idle_s: float = 20.0,
        reconnect_s: Sequence[float] = _RECONNECT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the lane needs an http:// or https:// URL, got {base_url!r}")
        if timeout_s <= 0 or max_idle_s <= 0 or not reconnect_s:
            raise ValueError("timeout_s and max_idle_s must be positive, reconnect_s non-empty")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        self._host_header = self.host if default_port else f"{self.host}:{self.port}"
        self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self.timeout_s = timeout_s
        self.max_idle_s = max_idle_s
        self._reconnect_s = tuple(reconnect_s)
        self._conn: _Reply | None = None
        self._busy = False
        self._closing = False
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.on_sent: Callable[[], None] | None = None
        """Called right after a request's bytes are handed to the socket (benchmarks)."""
        self.sent = 0
        self.connects = 0

    @property
    def ready(self) -> bool:
        """True when a request would be written at once."""
        conn = self._conn
        return conn is not None and not conn.closed and not self._busy and not self._closing

    async def start(self, *, wait_s: float = 2.0) -> bool:
        """Start keeping the connection open; True once it is (False: still trying)."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_open(), name="upbit-order-lane")
        deadline = time.monotonic() + wait_s
        while not self.ready and time.monotonic() < deadline and not self._keeper.done():
            await asyncio.sleep(0.005)
        return self.ready

    async def aclose(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        self._wake.set()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def send(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> httpx.Response:
        """Write one request and return its reply.

        Raises `LaneClosed` when nothing was written, `LaneFailed` when the reply did not
        arrive in full within the timeout (the request may have been acted on).
        """
        conn = self._conn
        if conn is None or conn.closed or self._busy or self._closing:
            raise LaneClosed("the order lane has no idle open connection")
        self._busy = True
        try:
            if conn.h11.our_state is not h11.IDLE or conn.h11.their_state is not h11.IDLE:
                conn.close()  # the previous cycle did not end cleanly: not reusable
                raise LaneClosed("the order lane's connection is mid-cycle")
            target = self._prefix + path
            lines = [
                f"{method} {target} HTTP/1.1",
                f"Host: {self._host_header}",
                "Accept: application/json",
                f"User-Agent: {_USER_AGENT}",
                *(f"{name}: {value}" for name, value in headers),
                f"Content-Length: {len(body)}",
            ]
            if any(_UNSAFE.search(line) for line in lines):
                raise ValueError("CR, LF or NUL in a request line or header of the order lane")
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
            assert conn.transport is not None
            reply: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()
            conn.reply = reply
            conn.transport.write(data)
            self.sent += 1
            conn.last_used = time.monotonic()
            if self.on_sent is not None:
                self.on_sent()
            # The request is written by hand (h11 would add ~0.2 ms before the write); h11 is
            # told about it afterwards, before any reply can arrive, so it parses the reply.
            conn.h11.send(
                h11.Request(
                    method=method,
                    target=target,
                    headers=[("Host", self._host_header), ("Content-Length", str(len(body)))],
                )
            )
            conn.h11.send(h11.Data(data=body))
            conn.h11.send(h11.EndOfMessage())
            try:
                return await asyncio.wait_for(reply, self.timeout_s)
            except TimeoutError:
                conn.close()
                raise LaneFailed(f"no reply within {self.timeout_s} s on the order lane") from None
            except ConnectionError as exc:
                raise LaneFailed(f"{exc} (order lane)") from None
        finally:
            self._busy = False
            self._wake.set()

    # -- keeping it open -----------------------------------------------------------------

    def _lost(self, conn: _Reply) -> None:
        if conn is self._conn:
            self._wake.set()

    async def _open(self) -> _Reply:
        loop = asyncio.get_running_loop()
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Reply(self._lost),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            ),
            self.timeout_s,
        )
        self.connects += 1
        return conn

    async def _keep_open(self) -> None:
        failures = 0
        while not self._closing:
            conn = self._conn
            idle = time.monotonic() - conn.last_used if conn is not None else 0.0
            stale = conn is not None and not conn.closed and idle >= self.max_idle_s
            if conn is None or conn.closed or (stale and not self._busy):
                if conn is not None and conn.closed:
                    # A connection that lived a while was closed for idling: reopen at once.
                    # One dropped right after opening counts as a failure (backoff).
                    lived = (conn.closed_at or time.monotonic()) - conn.opened_at
                    failures = 0 if lived >= 1.0 else failures + 1
                    self._conn = None
                await asyncio.sleep(self._reconnect_s[min(failures, len(self._reconnect_s) - 1)])
                try:
                    fresh = await self._open()
                except Exception as exc:  # the keeper must outlive any failure to connect
                    failures += 1
                    if failures in (1, len(self._reconnect_s)):
                        logger.warning(
                            "order lane: cannot connect to %s:%s (%s); urgent orders go "
                            "through the pooled client until it can",
                            self.host,
                            self.port,
                            exc,
                        )
                    continue
                if self._busy and conn is not None and not conn.closed:
                    fresh.close()  # a request is on the old one; look again after it
                else:
                    self._conn = fresh
                    if conn is not None:
                        conn.close()
                continue
            self._wake.clear()
            wait = max(self.max_idle_s - idle, 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
