"""InProcessBus: sequence numbers, replay, live tail, no loss or duplicates, overflow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from store.bus import EventBus, InProcessBus

TIMEOUT_S = 5.0


async def next_event(stream: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(stream), TIMEOUT_S)


async def subscribed(bus: InProcessBus) -> AsyncGenerator[dict[str, Any], None]:
    """Return a stream that is registered: publish a marker and read it back."""
    marker_seq = bus.publish({"type": "marker"})
    stream = bus.subscribe(after_seq=marker_seq - 1)
    assert (await next_event(stream))["seq"] == marker_seq
    return stream


def test_in_process_bus_satisfies_the_protocol() -> None:
    assert isinstance(InProcessBus(), EventBus)


def test_publish_assigns_increasing_seq_without_touching_the_event() -> None:
    bus = InProcessBus()
    event = {"type": "node", "node": "ml_signal"}

    seqs = [bus.publish(event) for _ in range(3)]

    assert seqs == [1, 2, 3]
    assert bus.last_seq == 3
    assert event == {"type": "node", "node": "ml_signal"}


async def test_subscribe_replays_after_seq_then_follows_live() -> None:
    bus = InProcessBus()
    for i in range(1, 6):
        bus.publish({"type": "tick", "n": i})
    stream = bus.subscribe(after_seq=2)

    replayed = [await next_event(stream) for _ in range(3)]
    bus.publish({"type": "tick", "n": 6})
    live = await next_event(stream)
    await stream.aclose()

    assert [e["seq"] for e in replayed] == [3, 4, 5]
    assert [e["n"] for e in replayed] == [3, 4, 5]
    assert live == {"type": "tick", "n": 6, "seq": 6}


async def test_subscribe_without_after_seq_gets_only_live_events() -> None:
    bus = InProcessBus()
    bus.publish({"type": "old"})
    stream = bus.subscribe()
    pending = asyncio.ensure_future(next_event(stream))
    while bus.subscriber_count == 0:
        await asyncio.sleep(0)  # let the subscription register; a yield, not a timing wait

    bus.publish({"type": "new"})
    event = await pending
    await stream.aclose()

    assert event == {"type": "new", "seq": 2}


async def test_publish_during_replay_loses_and_repeats_nothing() -> None:
    bus = InProcessBus()
    for _ in range(100):
        bus.publish({"type": "before"})
    stream = bus.subscribe(after_seq=0)
    received: list[int] = []

    while len(received) < 200:
        event = await next_event(stream)
        received.append(event["seq"])
        if len(received) <= 100:  # still replaying: publish one more each step
            bus.publish({"type": "during"})
    await stream.aclose()

    assert received == list(range(1, 201))


async def test_publish_from_another_thread_during_replay_keeps_order() -> None:
    bus = InProcessBus(queue_size=20_000)
    for _ in range(500):
        bus.publish({"type": "before"})
    stream = bus.subscribe(after_seq=0)
    received = [(await next_event(stream))["seq"]]
    publisher = threading.Thread(
        target=lambda: [bus.publish({"type": "thread"}) for _ in range(5_000)]
    )
    publisher.start()
    expected_total = 500 + 5_000 + 10

    while len(received) < expected_total:
        received.append((await next_event(stream))["seq"])
        if len(received) % 100 == 0 and len(received) <= 1_000:
            bus.publish({"type": "loop"})  # interleave publishes from the loop thread
    publisher.join()
    await stream.aclose()

    assert received == list(range(1, expected_total + 1))
    assert bus.last_seq == expected_total


async def test_slow_subscriber_gets_queued_events_then_overflow_and_is_dropped() -> None:
    bus = InProcessBus(queue_size=3)
    stream = await subscribed(bus)  # seq 1

    seqs = [bus.publish({"type": "burst"}) for _ in range(9)]  # 2..10; never blocks
    rest = [await next_event(stream) for _ in range(4)]

    assert seqs == list(range(2, 11))
    assert [e["seq"] for e in rest[:3]] == [2, 3, 4]
    assert rest[3] == {"type": "overflow", "last_seq": 4, "dropped_from_seq": 5}
    assert bus.subscriber_count == 0
    with pytest.raises(StopAsyncIteration):
        await next_event(stream)


async def test_overflow_of_one_subscriber_leaves_others_untouched() -> None:
    bus = InProcessBus(queue_size=3)
    slow = await subscribed(bus)  # seq 1, then never read while the burst is published
    fast = bus.subscribe(after_seq=0)
    await next_event(fast)  # seq 1: registered
    fast_events: list[int] = []

    for _ in range(6):  # 2..7
        bus.publish({"type": "burst"})
        fast_events.append((await next_event(fast))["seq"])
    slow_events = [await next_event(slow) for _ in range(4)]
    await fast.aclose()

    assert fast_events == [2, 3, 4, 5, 6, 7]
    assert [e.get("seq") for e in slow_events[:3]] == [2, 3, 4]
    assert slow_events[3]["type"] == "overflow"


async def test_replay_from_before_the_ring_starts_with_a_gap_event() -> None:
    bus = InProcessBus(ring_size=5)
    for _ in range(10):
        bus.publish({"type": "tick"})
    stream = bus.subscribe(after_seq=2)

    gap = await next_event(stream)
    replayed = [(await next_event(stream))["seq"] for _ in range(5)]
    await stream.aclose()

    assert gap == {"type": "gap", "after_seq": 2, "first_seq": 6}
    assert replayed == [6, 7, 8, 9, 10]


async def test_closing_a_stream_unsubscribes_it() -> None:
    bus = InProcessBus()
    stream = await subscribed(bus)
    assert bus.subscriber_count == 1

    await stream.aclose()

    assert bus.subscriber_count == 0


async def test_subscribers_get_their_own_copies() -> None:
    bus = InProcessBus()
    first = await subscribed(bus)
    second = bus.subscribe(after_seq=0)
    await next_event(second)

    bus.publish({"type": "tick", "n": 1})
    mine = await next_event(first)
    mine["n"] = 99
    theirs = await next_event(second)
    await first.aclose()
    await second.aclose()

    assert theirs["n"] == 1


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="ring_size"):
        InProcessBus(ring_size=0)
