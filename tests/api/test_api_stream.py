"""GET /api/stream: SSE frames from the bus, resumable by Last-Event-ID without loss or repeats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.routes.stream import to_sse
from store.bus import InProcessBus
from store.journal import Journal

DEADLINE_S = 5  # a broken stream fails the test instead of hanging it


def publish_runs(bus: InProcessBus, count: int) -> None:
    for index in range(count):
        bus.publish({"type": "node_finished", "node": "ml_signal", "run_id": f"run-{index}"})


async def read_events(lines: Any, count: int) -> list[dict[str, str]]:
    """Read `count` SSE events (comments such as pings are skipped) from `aiter_lines()`."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(DEADLINE_S):
        async for line in lines:
            if line == "":
                if fields:
                    events.append(fields)
                    fields = {}
                    if len(events) == count:
                        return events
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {len(events)} of {count} events")


async def wait_for_subscriber(bus: InProcessBus) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while bus.subscriber_count == 0:
            await asyncio.sleep(0)


async def test_resume_after_id_1_sends_exactly_events_2_and_3_then_live_ones(
    streaming_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    publish_runs(bus, 3)

    async with streaming_client.stream(
        "GET", "/api/stream", headers={"Last-Event-ID": "1"}
    ) as response:
        lines = response.aiter_lines()
        replayed = await read_events(lines, 2)
        bus.publish({"type": "run_finished", "run_id": "run-3", "action": "hold"})
        [live] = await read_events(lines, 1)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [(e["id"], e["event"]) for e in replayed] == [
        ("2", "node_finished"),
        ("3", "node_finished"),
    ]
    assert [json.loads(e["data"]) for e in replayed] == [
        {"type": "node_finished", "node": "ml_signal", "run_id": "run-1", "seq": 2},
        {"type": "node_finished", "node": "ml_signal", "run_id": "run-2", "seq": 3},
    ]
    assert (live["id"], live["event"]) == ("4", "run_finished")
    assert json.loads(live["data"])["action"] == "hold"


async def test_query_parameter_resumes_when_no_header_is_sent(
    streaming_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    publish_runs(bus, 3)

    async with streaming_client.stream("GET", "/api/stream?last_event_id=2") as response:
        events = await read_events(response.aiter_lines(), 1)

    assert [e["id"] for e in events] == ["3"]


async def test_header_wins_over_query_parameter(
    streaming_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    publish_runs(bus, 3)

    async with streaming_client.stream(
        "GET", "/api/stream?last_event_id=0", headers={"Last-Event-ID": "2"}
    ) as response:
        events = await read_events(response.aiter_lines(), 1)

    assert [e["id"] for e in events] == ["3"]


async def test_without_last_event_id_only_new_events_are_sent(
    streaming_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    publish_runs(bus, 2)

    async with streaming_client.stream("GET", "/api/stream") as response:
        lines = response.aiter_lines()
        await wait_for_subscriber(bus)
        bus.publish({"type": "verdict", "node": "groq_check", "reasoning": "추세 유지"})
        [event] = await read_events(lines, 1)

    assert (event["id"], event["event"]) == ("3", "verdict")
    assert json.loads(event["data"])["reasoning"] == "추세 유지"


async def test_closing_the_stream_unsubscribes_from_the_bus(
    streaming_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    publish_runs(bus, 1)
    async with streaming_client.stream("GET", "/api/stream?last_event_id=0") as response:
        await read_events(response.aiter_lines(), 1)
        assert bus.subscriber_count == 1

    assert bus.subscriber_count == 0


async def test_resume_from_before_the_ring_starts_with_a_gap_event_without_id(
    journal: Journal, make_streaming_client: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    bus = InProcessBus(ring_size=2)
    publish_runs(bus, 3)
    app = create_app(journal=journal, bus=bus)
    async with (
        make_streaming_client(app) as client,
        client.stream("GET", "/api/stream", headers={"Last-Event-ID": "0"}) as response,
    ):
        events = await read_events(response.aiter_lines(), 3)

    assert events[0]["event"] == "gap"
    assert "id" not in events[0]
    assert json.loads(events[0]["data"]) == {"type": "gap", "after_seq": 0, "first_seq": 2}
    assert [e.get("id") for e in events[1:]] == ["2", "3"]


@pytest.mark.parametrize("value", ["abc", "-1"])
async def test_bad_last_event_id_header_is_422_naming_it(
    client: httpx.AsyncClient, value: str
) -> None:
    response = await client.get("/api/stream", headers={"Last-Event-ID": value})

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["header", "Last-Event-ID"]]


def test_to_sse_frames_seq_as_id_and_type_as_event_name() -> None:
    frame = to_sse({"type": "order", "price": 1, "seq": 7}).encode().decode()

    assert frame.splitlines() == [
        "id: 7",
        "event: order",
        'data: {"type":"order","price":1,"seq":7}',
        "",
    ]


def run_events(bus: InProcessBus, run_id: str) -> None:
    bus.publish({"type": "run_started", "run_id": run_id})
    bus.publish({"type": "node_finished", "node": "ml_signal", "run_id": "other-run"})
    bus.publish({"type": "node_finished", "node": "ml_signal", "run_id": run_id})
    bus.publish({"type": "run_finished", "run_id": run_id, "action": "hold"})


def record_started(journal: Journal, run_id: str) -> None:
    journal.record_event(run_id, "run_started", {"trigger": "manual"}, datetime.now(UTC))


async def test_run_stream_of_an_unknown_run_is_404_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/runs/ghost/stream")

    assert (response.status_code, response.json()) == (404, {"detail": "run ghost not found"})


async def test_run_stream_sends_only_that_run_from_its_start_and_ends_with_it(
    streaming_client: httpx.AsyncClient, bus: InProcessBus, journal: Journal
) -> None:
    record_started(journal, "run-a")
    run_events(bus, "run-a")

    async with streaming_client.stream("GET", "/api/runs/run-a/stream") as response:
        lines = [line async for line in response.aiter_lines()]  # ends by itself

    ids = [line.removeprefix("id: ") for line in lines if line.startswith("id:")]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event:")]
    assert ids == ["1", "3", "4"]
    assert names == ["run_started", "node_finished", "run_finished"]


async def test_run_stream_resumes_after_the_last_event_id_and_follows_live_events(
    streaming_client: httpx.AsyncClient, bus: InProcessBus, journal: Journal
) -> None:
    record_started(journal, "run-b")
    bus.publish({"type": "run_started", "run_id": "run-b"})
    bus.publish({"type": "node_finished", "node": "ml_signal", "run_id": "run-b"})

    async with streaming_client.stream(
        "GET", "/api/runs/run-b/stream", headers={"Last-Event-ID": "1"}
    ) as response:
        lines = response.aiter_lines()
        [replayed] = await read_events(lines, 1)
        bus.publish({"type": "run_finished", "run_id": "run-b", "action": "hold"})
        [finished] = await read_events(lines, 1)
        rest = [line async for line in lines]

    assert (replayed["id"], replayed["event"]) == ("2", "node_finished")
    assert (finished["id"], finished["event"]) == ("3", "run_finished")
    assert not [line for line in rest if line.startswith("data:")]


async def test_run_finished_before_the_buffer_held_it_ends_with_the_journals_decision(
    journal: Journal, make_streaming_client: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    bus = InProcessBus(ring_size=2)
    journal.record_decision(
        {
            "run_id": "old-run",
            "session_id": "s",
            "bar_ts": datetime(2026, 3, 1, tzinfo=UTC),
            "trigger": "bar",
            "action": "hold",
            "market": None,
            "reason": "no_signal",
            "duration_ms": 3.0,
        }
    )
    publish_runs(bus, 5)  # the old run's events are long gone from the buffer
    app = create_app(journal=journal, bus=bus)

    async with (
        make_streaming_client(app) as client,
        client.stream("GET", "/api/runs/old-run/stream") as response,
    ):
        lines = [line async for line in response.aiter_lines()]

    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data:")]
    assert data == [
        {
            "type": "run_finished",
            "run_id": "old-run",
            "action": "hold",
            "market": None,
            "reason": "no_signal",
            "duration_ms": 3.0,
            "from_journal": True,
        }
    ]


@pytest.mark.services
async def test_events_published_by_another_process_reach_sse_through_redis(
    redis_url: str, journal: Journal, make_streaming_client: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    import secrets

    from store.redis_bus import RedisBus

    stream = f"lxa:test:{secrets.token_hex(6)}"
    api_bus = RedisBus(redis_url, stream=stream, block_ms=200)
    engine_bus = RedisBus(redis_url, stream=stream)  # the engine's own connection
    try:
        engine_bus.publish({"type": "run_started", "run_id": "r-redis"})
        engine_bus.publish({"type": "node_finished", "node": "ml_signal", "run_id": "r-redis"})
        app = create_app(journal=journal, bus=api_bus, bus_kind="redis")
        async with (
            make_streaming_client(app) as client,
            client.stream("GET", "/api/stream", headers={"Last-Event-ID": "1"}) as response,
        ):
            lines = response.aiter_lines()
            [replayed] = await read_events(lines, 1)
            engine_bus.publish({"type": "run_finished", "run_id": "r-redis", "action": "hold"})
            [live] = await read_events(lines, 1)
            info = (await client.get("/api/info")).json()
    finally:
        api_bus._client.delete(stream, f"{stream}:seq")
        api_bus.close()
        engine_bus.close()

    assert (replayed["id"], replayed["event"]) == ("2", "node_finished")
    assert (live["id"], live["event"]) == ("3", "run_finished")
    assert info["bus"] == "redis"
