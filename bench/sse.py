"""Events per second and latency from the engine's bus publish to an SSE client over HTTP.

The API runs under uvicorn on 127.0.0.1 (an ephemeral port) in the publisher's event loop, as
`lxa serve` runs it beside the engine. A client in another thread (its own event loop, httpx)
reads `GET /api/stream` over a real TCP connection. Each event carries the publisher's
`time.perf_counter_ns()`; the client stamps its arrival after parsing the frame's JSON.

The reference, measured in the same run: the bare bus (`subscribe()` in the publisher's loop,
no HTTP, no JSON), with the same events and the same pacing.

* throughput: N events published as fast as the reader keeps up (at most `--window` unread,
  so no reader falls behind the bus's per-subscriber queue), events/s from the first publish
  to the last receipt.
* latency: events published one at a time every `--interval-ms`, publish-to-receipt median
  and p99 in microseconds.

With `--redis URL` the SSE rows are repeated over the Redis Stream bus (`LXA_REDIS_URL`).
Run from the project root: ``.venv/bin/python bench/sse.py [--events N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from api.app import create_app  # noqa: E402
from store.bus import EventBus, InProcessBus  # noqa: E402
from store.journal import Journal  # noqa: E402

PAYLOAD = {"type": "node_finished", "node": "groq_check", "run_id": "bench-run-0001"}


@dataclass
class Receipts:
    """What a reader saw: arrival minus publish stamp per event, and the last arrival."""

    latencies_ns: list[int] = field(default_factory=list)
    last_arrival_ns: int = 0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, published_ns: int) -> None:
        now = time.perf_counter_ns()
        with self.lock:
            self.latencies_ns.append(now - published_ns)
            self.last_arrival_ns = now
            self.count += 1


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def publish_paced(
    bus: EventBus,
    receipts: Receipts,
    *,
    events: int,
    window: int,
    interval_s: float,
) -> int:
    """Publish `events` (paced, or as fast as the reader keeps up); return the first stamp."""
    first = time.perf_counter_ns()
    for index in range(events):
        if interval_s > 0:
            await asyncio.sleep(interval_s)
        else:
            while index - receipts.count >= window:
                await asyncio.sleep(0)
        bus.publish({**PAYLOAD, "index": index, "t": time.perf_counter_ns()})
    return first


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the reader did not receive every event in time")
        await asyncio.sleep(0.001)


async def bare_bus_run(*, events: int, window: int, interval_s: float) -> Receipts:
    """The reference: a subscriber of the in-process bus in the publisher's loop."""
    bus = InProcessBus(queue_size=max(window * 2, 1000))
    receipts = Receipts()
    ready = asyncio.Event()

    async def reader() -> None:
        subscriber = bus.subscribe(None)
        ready.set()
        async for event in subscriber:
            receipts.add(event["t"])
            if receipts.count == events:
                break
        await subscriber.aclose()

    task = asyncio.create_task(reader())
    await ready.wait()
    await asyncio.sleep(0)  # the reader is waiting on its queue
    first = await publish_paced(bus, receipts, events=events, window=window, interval_s=interval_s)
    await asyncio.wait_for(task, timeout=120)
    receipts.latencies_ns.insert(0, first)  # keep the first stamp for the rate
    return receipts


def sse_reader(url: str, events: int, receipts: Receipts, ready: threading.Event) -> None:
    """Read `events` SSE frames in this thread (its own loop), stamping each arrival."""

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream("GET", url) as response,
        ):
            ready.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    receipts.add(json.loads(line[5:])["t"])
                    if receipts.count == events:
                        return

    try:
        asyncio.run(read())
    except httpx.HTTPError as exc:  # the server went away early: the wait below reports it
        print(f"reader stopped: {exc}", file=sys.stderr)


async def sse_run(
    bus: EventBus, *, events: int, window: int, interval_s: float, subscribed: Callable[[], bool]
) -> Receipts:
    """Serve the API over `bus` and read /api/stream from another thread over TCP."""
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal.open(f"sqlite:///{Path(folder) / 'j.db'}")
        app = create_app(journal=journal, bus=bus)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started, 10)
            receipts = Receipts()
            ready = threading.Event()
            thread = threading.Thread(
                target=sse_reader,
                # Resume from the bus's newest seq: no event is missed however late the
                # reader subscribes.
                args=(
                    f"http://127.0.0.1:{port}/api/stream?last_event_id={bus.last_seq}",
                    events,
                    receipts,
                    ready,
                ),
                daemon=True,
            )
            thread.start()
            await wait_for(lambda: ready.is_set() and subscribed(), 10)
            first = await publish_paced(
                bus, receipts, events=events, window=window, interval_s=interval_s
            )
            await wait_for(lambda: receipts.count >= events, 120)
            thread.join(timeout=10)
            receipts.latencies_ns.insert(0, first)
            return receipts
        finally:
            server.should_exit = True
            await serving
            journal.close()


def summarise(receipts: Receipts, events: int) -> dict[str, float]:
    first, *latencies = receipts.latencies_ns
    seconds = (receipts.last_arrival_ns - first) / 1e9
    return {
        "events": events,
        "events_per_s": round(events / seconds, 1),
        "median_us": round(statistics.median(latencies) / 1000, 1),
        "p99_us": round(percentile(latencies, 0.99) / 1000, 1),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    interval_s = args.interval_ms / 1000
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "events": args.events,
        "latency_events": args.latency_events,
        "interval_ms": args.interval_ms,
        "window": args.window,
        "rows": {},
    }
    rows = results["rows"]
    rows["bare_bus"] = {
        "throughput": summarise(
            await bare_bus_run(events=args.events, window=args.window, interval_s=0), args.events
        ),
        "latency": summarise(
            await bare_bus_run(
                events=args.latency_events, window=args.window, interval_s=interval_s
            ),
            args.latency_events,
        ),
    }

    def in_process() -> tuple[EventBus, Callable[[], bool]]:
        bus = InProcessBus(queue_size=max(args.window * 2, 1000))
        return bus, lambda: bus.subscriber_count > 0

    makers: list[tuple[str, Callable[[], tuple[EventBus, Callable[[], bool]]]]] = [
        ("sse_in_process", in_process)
    ]
    if args.redis:
        from store.redis_bus import RedisBus

        def redis_bus() -> tuple[EventBus, Callable[[], bool]]:
            bus = RedisBus(args.redis, stream=f"lxa:bench:{secrets.token_hex(4)}")
            bus.ping()
            return bus, lambda: True

        makers.append(("sse_redis", redis_bus))
    for name, make in makers:
        row = {}
        for kind, count, interval in (
            ("throughput", args.events, 0.0),
            ("latency", args.latency_events, interval_s),
        ):
            bus, subscribed = make()
            print(f"measuring {name} {kind}", file=sys.stderr)
            receipts = await sse_run(
                bus, events=count, window=args.window, interval_s=interval, subscribed=subscribed
            )
            row[kind] = summarise(receipts, count)
            if hasattr(bus, "close"):
                _cleanup(bus)
        rows[name] = row
    bare = rows["bare_bus"]
    for name in [n for n in rows if n != "bare_bus"]:
        row = rows[name]
        row["throughput_ratio_vs_bare"] = round(
            row["throughput"]["events_per_s"] / bare["throughput"]["events_per_s"], 4
        )
        row["median_latency_ratio_vs_bare"] = round(
            row["latency"]["median_us"] / bare["latency"]["median_us"], 1
        )
    return results


def _cleanup(bus: Any) -> None:
    try:
        bus._client.delete(bus.stream, bus.counter)
    finally:
        bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events for throughput")
    parser.add_argument("--latency-events", type=int, default=2_000, help="events for latency")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="pacing for latency")
    parser.add_argument("--window", type=int, default=500, help="most unread events allowed")
    parser.add_argument("--redis", default=None, help="also measure over this Redis URL")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    if not args.json:
        print(
            f"{'path':<16}{'events/s':>12}{'median us':>12}{'p99 us':>10}"
            f"{'rate vs bare':>14}{'median vs bare':>16}"
        )
        for name, row in results["rows"].items():
            ratio = row.get("throughput_ratio_vs_bare", 1.0)
            lat_ratio = row.get("median_latency_ratio_vs_bare", 1.0)
            print(
                f"{name:<16}{row['throughput']['events_per_s']:>12,.0f}"
                f"{row['latency']['median_us']:>12,.1f}{row['latency']['p99_us']:>10,.1f}"
                f"{ratio:>14.4f}{lat_ratio:>16.1f}"
            )
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
