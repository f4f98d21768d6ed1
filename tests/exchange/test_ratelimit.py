"""The per-group rate limiter: Remaining-Req, the one-second window, 429 backoff, 418 block."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.ratelimit import ExchangeBlocked, RateLimiter, parse_remaining_req
from exchange.upbit_client import UpbitKeys, UpbitRestClient, jwt_headers


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(10_000_000)) as server:
        server.set_price("KRW-BTC", Decimal(50_000_000))
        yield server


def test_remaining_req_is_parsed() -> None:
    parsed = parse_remaining_req("group=default; min=1800; sec=29")

    assert parsed is not None
    assert (parsed.group, parsed.per_minute, parsed.per_second) == ("default", 1800, 29)


@pytest.mark.parametrize("header", [None, "", "group=default", "sec=3; min=1"])
def test_unreadable_remaining_req_is_none(header: str | None) -> None:
    assert parse_remaining_req(header) is None


async def test_requests_past_the_limit_wait_for_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"order": 3}, window_s=1.0, clock=clock, sleep=clock.sleep)

    for _ in range(3):
        await limiter.acquire("order")
        limiter.release("order")  # answered at once (the clock stands still)
    assert clock.slept == []
    await limiter.acquire("order")

    assert clock.slept == [pytest.approx(1.0)]


async def test_requests_in_flight_count_until_their_reply_plus_a_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"order": 2}, window_s=1.0, clock=clock, sleep=clock.sleep)

    await limiter.acquire("order")
    await limiter.acquire("order")
    clock.now += 5.0  # both still unanswered five seconds later: they may arrive any time
    waiting = asyncio.create_task(limiter.acquire("order"))
    await asyncio.sleep(0)
    assert not waiting.done()
    limiter.observe("order", 201, "group=order; min=1000; sec=7")  # one reply, now
    await waiting

    assert clock.now - 105.0 == pytest.approx(1.0, abs=0.01)


async def test_server_reporting_sec_zero_makes_the_next_request_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"default": 30}, window_s=1.0, clock=clock, sleep=clock.sleep)

    await limiter.acquire("default")
    limiter.observe("default", 200, "group=default; min=1700; sec=0")
    await limiter.acquire("default")

    assert clock.slept == [pytest.approx(1.0)]
    assert limiter.last_remaining["default"].per_second == 0


async def test_429_backs_off_doubling_and_success_resets_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"default": 30}, backoff_s=0.5, clock=clock, sleep=clock.sleep)

    limiter.observe("default", 429, None)
    await limiter.acquire("default")
    limiter.observe("default", 429, None)
    await limiter.acquire("default")
    limiter.observe("default", 200, "group=default; min=1800; sec=29")
    limiter.observe("default", 429, None)
    await limiter.acquire("default")

    assert clock.slept == [pytest.approx(0.5), pytest.approx(1.0), pytest.approx(0.5)]


async def test_418_blocks_every_later_request() -> None:
    limiter = RateLimiter()

    with pytest.raises(ExchangeBlocked, match="418"):
        limiter.observe("order", 418, None)
    with pytest.raises(ExchangeBlocked):
        await limiter.acquire("default")
    limiter.unblock()
    await limiter.acquire("default")

    assert limiter.blocked is None


async def test_429_bursts_stay_within_the_limit_and_never_reach_418(fake: FakeUpbit) -> None:
    limiter = RateLimiter(backoff_s=0.35)
    client = UpbitRestClient(
        fake.base_url, keys=UpbitKeys(ACCESS_KEY, SECRET_KEY), limiter=limiter, max_429_retries=8
    )
    fake.inject_429(3, path="/v1/accounts")
    try:
        replies = await asyncio.gather(*(client.accounts() for _ in range(45)))
    finally:
        await client.aclose()

    assert len(replies) == 45
    assert fake.max_in_window("default") <= 30
    assert not fake.blocked
    assert [r.status for r in fake.records if r.status == 418] == []
    assert sum(1 for r in fake.records if r.status == 429 and not r.injected) == 0


async def test_a_client_that_ignores_429_is_blocked_with_418() -> None:
    keys = UpbitKeys(ACCESS_KEY, SECRET_KEY)
    statuses = []
    with FakeUpbit(penalty_s=10.0, grace_s=0.0) as strict:
        strict.inject_429(1)
        async with httpx.AsyncClient(base_url=strict.base_url) as raw:
            for _ in range(5):
                reply = await raw.get("/v1/accounts", headers=jwt_headers(keys, None))
                statuses.append(reply.status_code)

    assert statuses[0] == 429
    assert 418 in statuses
    assert strict.blocked


async def test_client_raises_exchange_blocked_on_418(fake: FakeUpbit) -> None:
    fake.blocked = True
    client = UpbitRestClient(fake.base_url, keys=UpbitKeys(ACCESS_KEY, SECRET_KEY))
    try:
        with pytest.raises(ExchangeBlocked):
            await client.accounts()
        with pytest.raises(ExchangeBlocked):
            await client.order_chance("KRW-BTC")
    finally:
        await client.aclose()

    assert len(fake.records) == 1  # the second call never left the process
