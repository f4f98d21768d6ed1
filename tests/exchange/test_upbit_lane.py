"""The order lane: urgent orders on a pre-opened connection, against the fake Upbit and raw
loopback servers that close, stall or answer garbage."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal

import pytest
import trustme
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.orders import OrderManager
from exchange.types import OrderRequest, OrderState, OrderType, Side
from exchange.upbit import UpbitExchange
from exchange.upbit_client import MalformedReply, UpbitTransportError
from exchange.upbit_lane import LaneClosed, OrderLane, proxied
from store.journal import Journal

BTC = "KRW-BTC"


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(50_000_000))
        server.set_balance("BTC", Decimal("0.01"), Decimal(50_000_000))
        yield server


def sell(identifier: str, volume: str = "0.002", *, urgent: bool = True) -> OrderRequest:
    return OrderRequest(
        market=BTC,
        side=Side.ASK,
        ord_type=OrderType.MARKET,
        identifier=identifier,
        volume=Decimal(volume),
        urgent=urgent,
    )


async def test_urgent_sell_goes_out_on_the_lane_and_fills(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    assert await venue.client.open_lane()
    lane = venue.client.lane
    assert lane is not None and lane.ready
    order = await venue.place_order(sell("lane-1"))
    assert order.state is OrderState.DONE
    assert order.executed_volume == Decimal("0.002")
    assert lane.sent == 1  # the POST went on the lane (the fake checked its JWT and hash)
    assert [r.path for r in fake.order_posts()] == ["/v1/orders"]
    # A second one reuses the same connection.
    await venue.place_order(sell("lane-2"))
    assert lane.sent == 2 and lane.connects == 1


async def test_orders_that_are_not_urgent_never_use_the_lane(venue: UpbitExchange) -> None:
    assert await venue.client.open_lane()
    await venue.place_order(sell("calm-1", urgent=False))
    assert venue.client.lane is not None and venue.client.lane.sent == 0


async def test_a_busy_lane_sends_the_second_urgent_order_through_httpx(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    assert await venue.client.open_lane()
    fake.delay_reply("POST", "/v1/orders", seconds=0.3)  # the first reply is late
    first, second = await asyncio.gather(
        venue.place_order(sell("busy-1")), venue.place_order(sell("busy-2"))
    )
    assert {first.identifier, second.identifier} == {"busy-1", "busy-2"}
    assert venue.client.lane is not None and venue.client.lane.sent == 1
    assert len(fake.order_posts()) == 2


async def test_a_reply_that_never_comes_is_maybe_delivered_and_found_by_identifier(
    fake: FakeUpbit,
) -> None:
    venue = UpbitExchange.connect(
        fake.base_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        timeout_s=0.2,
        fill_poll_s=0.01,
    )
    journal = Journal.open("sqlite://")
    try:
        assert await venue.client.open_lane()
        fake.delay_reply("POST", "/v1/orders", seconds=1.0)  # acted on, answered too late
        with pytest.raises(UpbitTransportError) as raised:
            body = venue.prepare(sell("late-1"), await venue.rules(BTC), None)
            await venue.client.create_order(body, urgent=True)
        assert raised.value.maybe_delivered
        # Through the order manager the same failure resolves to the one order Upbit holds.
        fake.delay_reply("POST", "/v1/orders", seconds=1.0)
        manager = OrderManager(venue, journal, lookup_delay_s=0.05)
        for _ in range(100):  # the lane reopens in the background after the timeout
            if venue.client.lane is not None and venue.client.lane.ready:
                break
            await asyncio.sleep(0.01)
        order = await manager.place_order(sell("late-2"))
        assert order.identifier == "late-2"
        assert journal.get_order_intent("late-2")["state"] in ("done", "open")
        assert len([o for o in fake.orders.values() if o.identifier == "late-2"]) == 1
    finally:
        journal.close()
        await venue.aclose()


async def test_a_reply_that_is_not_json_is_malformed(fake: FakeUpbit, venue: UpbitExchange) -> None:
    assert await venue.client.open_lane()
    fake.malformed_next("POST", "/v1/orders")
    with pytest.raises(MalformedReply):
        await venue.place_order(sell("garbage-json"))
    assert venue.client.lane is not None and venue.client.lane.sent == 1


# -- raw loopback servers ----------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK_REPLY = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def wait_until(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_the_lane_reopens_when_the_server_closes_an_idle_connection() -> None:
    requests: list[bytes] = []

    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        requests.append(await read_request(reader))
        writer.write(OK_REPLY)
        await writer.drain()
        writer.close()  # like a server's keep-alive timeout, right after the reply

    server, url = await serve(answer_once_then_close)
    lane = OrderLane(url, timeout_s=1.0)
    try:
        assert await lane.start()
        for n in range(3):
            await wait_until(lambda: lane.ready)
            reply = await lane.send("POST", "/v1/orders", [("X-N", str(n))], b"{}")
            assert reply.status_code == 201 and reply.json() == {}
        assert lane.connects >= 3
        assert [r.split(b"\r\n")[0] for r in requests] == [b"POST /v1/orders HTTP/1.1"] * 3
        assert all(b"\r\nHost: 127.0.0.1:" in r and r.endswith(b"\r\n\r\n{}") for r in requests)
        assert all(b"\r\nUser-Agent: python-httpx/" in r for r in requests)
    finally:
        await lane.aclose()
        server.close()


async def test_a_server_that_drops_every_connection_at_once_is_retried_with_backoff() -> None:
    accepted = 0

    async def drop(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server, url = await serve(drop)
    lane = OrderLane(url, timeout_s=1.0, reconnect_s=(0.0, 0.2))
    try:
        await lane.start(wait_s=0.0)
        await asyncio.sleep(0.7)
        # Without backoff this would be hundreds of connections; with it, a handful.
        assert 2 <= accepted <= 6
    finally:
        await lane.aclose()
        server.close()


async def test_garbage_instead_of_http_is_a_maybe_delivered_failure() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        await writer.drain()

    server, url = await serve(garbage)
    lane = OrderLane(url, timeout_s=1.0)
    try:
        assert await lane.start()
        with pytest.raises(ConnectionError, match=r"not HTTP/1\.1"):
            await lane.send("POST", "/v1/orders", [], b"{}")
        assert not lane.ready  # that connection is gone; a new one is opened
        await wait_until(lambda: lane.ready)
    finally:
        await lane.aclose()
        server.close()


async def test_a_lane_with_no_connection_writes_nothing() -> None:
    lane = OrderLane("http://127.0.0.1:9", timeout_s=0.2, reconnect_s=(0.05,))
    try:
        assert not await lane.start(wait_s=0.1)  # nothing listens on port 9
        with pytest.raises(LaneClosed):
            await lane.send("POST", "/v1/orders", [], b"{}")
        assert lane.sent == 0
    finally:
        await lane.aclose()


async def test_an_idle_connection_is_replaced_before_the_server_drops_it() -> None:
    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(OK_REPLY)
            await writer.drain()

    server, url = await serve(keep)
    lane = OrderLane(url, timeout_s=1.0, max_idle_s=0.1)
    try:
        assert await lane.start()
        await wait_until(lambda: lane.connects >= 3)
        await wait_until(lambda: lane.ready)
        assert (await lane.send("POST", "/v1/orders", [], b"{}")).status_code == 201
    finally:
        await lane.aclose()
        server.close()


async def test_header_injection_is_refused_before_anything_is_written() -> None:
    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server, url = await serve(keep)
    lane = OrderLane(url, timeout_s=0.5)
    try:
        assert await lane.start()
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await lane.send("POST", "/v1/orders", [("X-Evil", "a\r\nInjected: 1")], b"{}")
        assert lane.sent == 0
    finally:
        await lane.aclose()
        server.close()


async def test_the_lane_speaks_tls_and_refuses_a_certificate_it_cannot_verify() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await read_request(reader))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        writer.write(OK_REPLY)
        await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    lane = OrderLane(url, timeout_s=1.0, ssl_context=trusting)
    stranger = OrderLane(url, timeout_s=1.0, reconnect_s=(0.05, 1.0))  # public CAs only
    try:
        assert await lane.start()
        reply = await lane.send("POST", "/v1/orders", [("X-Test", "tls")], b"{}")
        assert reply.status_code == 201
        assert seen and seen[0].startswith(b"POST /v1/orders HTTP/1.1\r\n")
        assert not await stranger.start(wait_s=0.3)  # the test CA is not one it trusts
        assert stranger.connects == 0
    finally:
        await lane.aclose()
        await stranger.aclose()
        server.close()


def test_a_proxy_in_the_environment_keeps_the_lane_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert not proxied("https://api.upbit.com")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert proxied("https://api.upbit.com")
    monkeypatch.setenv("NO_PROXY", "api.upbit.com")
    assert not proxied("https://api.upbit.com")


def test_bad_lane_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OrderLane("ftp://example.com")
    with pytest.raises(ValueError, match="positive"):
        OrderLane("http://127.0.0.1:1", timeout_s=0)
