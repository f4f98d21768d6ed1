"""The alert queue: `publish` never waits; a background task delivers with retries.

The watchdog and the engine call `AlertDispatcher.publish`, which is synchronous and never
waits; a background task delivers each alert to every configured notifier independently,
retrying with backoff (honouring the service's retry-after) and logging what still fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Self

from alerts.redact import REDACTOR
from alerts.types import Alert, Notifier, NotifierError

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


class AlertDispatcher:
    """Queues alerts without waiting and delivers them in the background.

    Counters: `sent` and `failed` count (alert, notifier) deliveries, `retried` the retry
    attempts, `dropped` the alerts never queued or pushed out by the overflow policy.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        max_queue: int = 1000,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        if backoff_s < 0 or max_backoff_s < 0:
            raise ValueError("backoff_s and max_backoff_s must not be negative")
        self.notifiers: tuple[Notifier, ...] = tuple(notifiers)
        self.max_queue = max_queue
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0
        self._queue: deque[Alert] = deque()
        self._lock = threading.Lock()  # publish() may be called from another thread
        self._in_flight = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()

    # -- publishing -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Alerts queued and not yet picked up for delivery."""
        return len(self._queue)

    def queued(self) -> tuple[Alert, ...]:
        """The alerts waiting for delivery, oldest first."""
        with self._lock:
            return tuple(self._queue)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def publish(self, alert: Alert) -> bool:
        """Queue an alert without waiting; return whether it was queued.

        When the queue is full the oldest non-emergency alert is dropped; when every queued
        alert is an emergency, the new alert is dropped instead.
        """
        if self._closed:
            self.dropped += 1
            logger.warning(
                "alert dispatcher is stopped; dropped %s alert %r", alert.kind, alert.title
            )
            return False
        with self._lock:
            if len(self._queue) >= self.max_queue:
                victim = next((queued for queued in self._queue if not queued.is_emergency), None)
                self.dropped += 1
                if victim is None:
                    logger.warning(
                        "alert queue full of emergencies; dropped new %s alert %r",
                        alert.kind,
                        alert.title,
                    )
                    return False
                self._queue.remove(victim)
                logger.warning(
                    "alert queue full; dropped oldest %s alert %r", victim.kind, victim.title
                )
            self._queue.append(alert)
        self._wake()
        return True

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # start() picks up whatever is queued
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wakeup.set)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background delivery task (idempotent)."""
        if self.running:
            return
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()  # events bind to the loop they are first awaited on
        self._progress = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="alert-dispatcher")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to `drain_timeout_s`), then stop the task."""
        task = self._task
        if task is None:
            self._closed = True
            return
        if not task.done():
            try:
                await asyncio.wait_for(self.drain(), timeout=drain_timeout_s)
            except TimeoutError:
                logger.warning(
                    "alert dispatcher stopped after %.1fs with %d alert(s) undelivered",
                    drain_timeout_s,
                    len(self._queue) + int(self._in_flight),
                )
        self._closed = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        self._in_flight = False

    async def drain(self) -> None:
        """Wait until the queue is empty and no delivery is in flight."""
        while self._queue or self._in_flight:
            if not self.running:
                raise RuntimeError("alert dispatcher is not running; call start() first")
            self._progress.clear()
            if not (self._queue or self._in_flight):
                break
            await self._progress.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- delivery -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            with self._lock:
                alert = self._queue.popleft() if self._queue else None
                self._in_flight = alert is not None
            if alert is None:
                self._progress.set()
                await self._wakeup.wait()
                continue
            try:
                await self._deliver(alert)
            except Exception:  # never let one alert end the task
                logger.exception("alert dispatcher failed on %s alert %r", alert.kind, alert.title)
            finally:
                self._in_flight = False
                self._progress.set()

    async def _deliver(self, alert: Alert) -> None:
        await asyncio.gather(*(self._send_with_retries(n, alert) for n in self.notifiers))

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * (2**attempt), self.max_backoff_s)

    async def _send_with_retries(self, notifier: Notifier, alert: Alert) -> None:
        attempt = 0
        while True:
            try:
                await notifier.send(alert)
            except Exception as exc:
                retryable = exc.retryable if isinstance(exc, NotifierError) else True
                retry_after = exc.retry_after if isinstance(exc, NotifierError) else None
                reason = self._give_up_reason(attempt, retryable, retry_after)
                if reason is not None:
                    self.failed += 1
                    logger.warning(
                        "%s alert %r not delivered by %s (%s): %s",
                        alert.kind,
                        alert.title,
                        notifier.name,
                        reason,
                        REDACTOR.redact(str(exc)) or type(exc).__name__,
                    )
                    return
                delay = self._backoff(attempt)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                self.retried += 1
                attempt += 1
                await self._sleep(delay)
            else:
                self.sent += 1
                return

    def _give_up_reason(
        self, attempt: int, retryable: bool, retry_after: float | None
    ) -> str | None:
        if not retryable:
            return "not retryable"
        if attempt >= self.retries:
            return f"after {attempt + 1} attempt(s)"
        if retry_after is not None and retry_after > self.max_backoff_s:
            return f"asked to wait {retry_after:g}s, more than max_backoff_s={self.max_backoff_s:g}"
        return None
