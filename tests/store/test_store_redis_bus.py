"""RedisBus against the real Redis on 127.0.0.1: one sequence, replay, live tail, gaps."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from store.bus import EventBus
from store.redis_bus import RedisBus

pytestmark = pytest.mark.services
DEADLINE_S = 5


@pytest.fixture
def stream_name(redis_url: str) -> Iterator[str]:
    name = f"lxa:test:{secrets.token_hex(6)}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name, f"{name}:seq")
    client.close()


def make_bus(redis_url: str, stream: str, **kwargs: Any) -> RedisBus:
    return RedisBus(redis_url, stream=stream, block_ms=200, **kwargs)


async def take(bus: RedisBus, after: int | None, count: int) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(DEADLINE_S):
        async for event in bus.subscribe(after):
            events.append(event)
            if len(events) == count:
                break
    return events


def test_redis_bus_is_an_event_bus(redis_url: str, stream_name: str) -> None:
    bus = make_bus(redis_url, stream_name)
    try:
        assert isinstance(bus, EventBus)
    finally:
        bus.close()


async def test_publishers_in_two_processes_share_one_sequence(
    redis_url: str, stream_name: str
) -> None:
    engine_side, api_side = make_bus(redis_url, stream_name), make_bus(redis_url, stream_name)
    try:
        first = engine_side.publish({"type": "run_started", "run_id": "r1"})
        second = api_side.publish({"type": "trading_state", "state": "halted"})
        third = engine_side.publish({"type": "run_finished", "run_id": "r1", "seq": 999})

        assert (first, second, third) == (1, 2, 3)
        assert api_side.last_seq == engine_side.last_seq == 3
        replay = await take(api_side, 0, 3)
    finally:
        engine_side.close()
        api_side.close()

    assert [e["seq"] for e in replay] == [1, 2, 3]
    assert replay[1] == {"type": "trading_state", "state": "halted", "seq": 2}


async def test_resume_after_a_seq_replays_the_rest_then_follows_live_events(
    redis_url: str, stream_name: str
) -> None:
    bus = make_bus(redis_url, stream_name)
    try:
        for index in range(3):
            bus.publish({"type": "node_finished", "index": index, "price": "1.5"})
        subscriber = bus.subscribe(1)
        async with asyncio.timeout(DEADLINE_S):
            replayed = [await anext(subscriber), await anext(subscriber)]
            bus.publish({"type": "fill", "market": "KRW-BTC"})
            live = await anext(subscriber)
        await subscriber.aclose()
    finally:
        bus.close()

    assert [(e["seq"], e["type"]) for e in [*replayed, live]] == [
        (2, "node_finished"),
        (3, "node_finished"),
        (4, "fill"),
    ]


async def test_without_after_seq_only_new_events_arrive(redis_url: str, stream_name: str) -> None:
    bus = make_bus(redis_url, stream_name)
    try:
        bus.publish({"type": "old"})
        subscriber = bus.subscribe(None)
        first = asyncio.ensure_future(anext(subscriber))
        async with asyncio.timeout(DEADLINE_S):
            while not first.done():  # publish until the subscriber, however late, sees one
                bus.publish({"type": "new"})
                await asyncio.sleep(0)
            event = first.result()
        await subscriber.aclose()
    finally:
        bus.close()

    assert event["type"] == "new"
    assert event["seq"] >= 2


async def test_resume_from_before_the_kept_entries_starts_with_a_gap(
    redis_url: str, stream_name: str
) -> None:
    bus = make_bus(redis_url, stream_name, maxlen=2)
    try:
        for index in range(4):
            bus.publish({"type": "tick", "index": index})
        events = await take(bus, 0, 3)
    finally:
        bus.close()

    assert events[0] == {"type": "gap", "after_seq": 0, "first_seq": 3}
    assert [e["seq"] for e in events[1:]] == [3, 4]


def test_publish_to_an_unreachable_redis_returns_0_and_does_not_raise() -> None:
    bus = RedisBus("redis://127.0.0.1:1/0")
    try:
        assert bus.publish({"type": "run_started"}) == 0
    finally:
        bus.close()
