"""Event bus for the live stream: numbered events, replay from a sequence number, live tail."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["DEFAULT_QUEUE_SIZE", "DEFAULT_RING_SIZE", "EventBus", "InProcessBus"]

DEFAULT_RING_SIZE = 10_000
DEFAULT_QUEUE_SIZE = 1_000


@runtime_checkable
class EventBus(Protocol):
    """Publish events with an increasing `seq`; subscribers replay from a seq, then follow."""

    @property
    def last_seq(self) -> int:
        """The seq of the newest published event (0 before the first)."""
        ...

    def publish(self, event: Mapping[str, Any]) -> int:
        """Publish a copy of `event` with a new `seq` and return that seq; never blocks."""
        ...

    def subscribe(self, after_seq: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the buffered events with seq > `after_seq`, then live ones."""
        ...


class _Subscriber:
    """One subscriber's bounded queue, owned by the event loop it subscribed from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        # Deliveries scheduled from other threads and not yet run; while any are pending,
        # same-thread deliveries are scheduled too so that seq order is kept.
        self.pending = 0
        self.overflowed_at: int | None = None


class InProcessBus:
    """An in-process `EventBus`: a ring of the last `ring_size` events and one queue per subscriber.

    `publish` is synchronous and never blocks: a subscriber whose queue (of `queue_size`) is full
    is dropped; it receives what was already queued, then `{"type": "overflow", ...}`, and ends.
    `publish` may be called from the subscribers' event loop thread or from another thread.
    """

    def __init__(
        self, ring_size: int = DEFAULT_RING_SIZE, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        if ring_size < 1 or queue_size < 1:
            raise ValueError(
                f"ring_size and queue_size must be >= 1, got {ring_size} and {queue_size}"
            )
        self._ring: deque[dict[str, Any]] = deque(maxlen=ring_size)
        self._queue_size = queue_size
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._last_seq = 0

    @property
    def last_seq(self) -> int:
        """The seq of the newest published event (0 before the first)."""
        return self._last_seq

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached now."""
        return len(self._subscribers)

    def publish(self, event: Mapping[str, Any]) -> int:
        """Publish a copy of `event` with a new `seq` and return that seq; never blocks."""
        with self._lock:
            self._last_seq += 1
            seq = self._last_seq
            stamped = {**event, "seq": seq}
            self._ring.append(stamped)
            for subscriber in list(self._subscribers):
                self._offer(subscriber, stamped)
        return seq

    def _offer(self, subscriber: _Subscriber, event: dict[str, Any]) -> None:
        """Hand `event` to `subscriber` (called with the lock held)."""
        if threading.get_ident() == subscriber.thread_id and subscriber.pending == 0:
            self._deliver(subscriber, event)
            return
        subscriber.pending += 1
        try:
            subscriber.loop.call_soon_threadsafe(self._deliver_scheduled, subscriber, event)
        except RuntimeError:  # its loop is closed: nobody is listening any more
            self._subscribers.discard(subscriber)

    def _deliver_scheduled(self, subscriber: _Subscriber, event: dict[str, Any]) -> None:
        with self._lock:
            subscriber.pending -= 1
            self._deliver(subscriber, event)

    def _deliver(self, subscriber: _Subscriber, event: dict[str, Any]) -> None:
        """Queue `event` for `subscriber`, or drop the subscriber if its queue is full."""
        if subscriber.overflowed_at is not None:
            return
        try:
            subscriber.queue.put_nowait(event)
        except asyncio.QueueFull:
            subscriber.overflowed_at = event["seq"]
            self._subscribers.discard(subscriber)

    async def subscribe(self, after_seq: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the buffered events with seq > `after_seq`, then live ones, each exactly once.

        `after_seq=None` means live events only. When `after_seq` is older than the ring holds,
        the replay starts with `{"type": "gap", "after_seq": ..., "first_seq": ...}` so the
        reader knows to fetch the missing events elsewhere (the journal's `events` table).
        """
        subscriber = _Subscriber(asyncio.get_running_loop(), self._queue_size)
        with self._lock:
            # Snapshot and registration under one lock: every event is either in the snapshot
            # (published before) or offered to the queue (published after), never both.
            replay = [] if after_seq is None else [e for e in self._ring if e["seq"] > after_seq]
            oldest_seq = self._ring[0]["seq"] if self._ring else self._last_seq + 1
            last_delivered = self._last_seq if after_seq is None else after_seq
            self._subscribers.add(subscriber)
        try:
            if after_seq is not None and after_seq + 1 < oldest_seq:
                yield {"type": "gap", "after_seq": after_seq, "first_seq": oldest_seq}
            for event in replay:
                last_delivered = event["seq"]
                yield dict(event)
            while True:
                if subscriber.queue.empty() and subscriber.overflowed_at is not None:
                    yield {
                        "type": "overflow",
                        "last_seq": last_delivered,
                        "dropped_from_seq": subscriber.overflowed_at,
                    }
                    return
                event = await subscriber.queue.get()
                last_delivered = event["seq"]
                yield dict(event)
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)
