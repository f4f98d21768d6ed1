"""Client-side rate limiting per Upbit request group, fed by the `Remaining-Req` header.

Upbit limits requests per second per group (order 8, exchange default 30, quotation 10) and
reports what is left on every reply: `Remaining-Req: group=default; min=1800; sec=29`. The
limiter keeps a sliding one-second window of what this process sent per group, never sends
past the configured limit or past a server-reported `sec=0`, backs off after a 429, and after
a 418 (Upbit's block for ignoring 429s) refuses every further request with `ExchangeBlocked`
so the engine can halt trading and alert.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from exchange.types import ExchangeError

__all__ = [
    "DEFAULT_LIMITS",
    "ExchangeBlocked",
    "RateLimited",
    "RateLimiter",
    "RemainingReq",
    "parse_remaining_req",
]

logger = logging.getLogger(__name__)

# Requests per second per group (DESIGN.md section 5: order 8, default 30, quotation 10).
DEFAULT_LIMITS: Mapping[str, int] = {"order": 8, "default": 30, "quotation": 10}

_INFLIGHT_POLL_S = 0.005  # how often a full budget waiting only on replies looks again
_REMAINING_RE = re.compile(
    r"group=(?P<group>[A-Za-z0-9_\-]+);\s*min=(?P<min>\d+);\s*sec=(?P<sec>\d+)"
)


class ExchangeBlocked(ExchangeError):
    """Upbit answered 418: the client is blocked for ignoring 429s; stop trading and alert."""

    def __init__(self, message: str, *, group: str) -> None:
        super().__init__(message)
        self.group = group


class RateLimited(ExchangeError):
    """Upbit kept answering 429 after every backoff; the request was not processed."""

    def __init__(self, message: str, *, group: str) -> None:
        super().__init__(message)
        self.group = group


@dataclass(frozen=True, slots=True)
class RemainingReq:
    """One parsed `Remaining-Req` header."""

    group: str
    per_minute: int
    per_second: int


def parse_remaining_req(header: str | None) -> RemainingReq | None:
    """Parse `group=default; min=1800; sec=29`; None when absent or unreadable."""
    if not header:
        return None
    match = _REMAINING_RE.search(header)
    if match is None:
        return None
    return RemainingReq(match["group"], int(match["min"]), int(match["sec"]))


class RateLimiter:
    """Per-group request budget: `acquire(group)` before a request, `observe` (or `release`
    when no reply came) after it.

    A request counts from the moment it is sent until one window after its reply: the server
    saw it at some point before the reply, so however the network delays requests, no more
    than the limit can arrive within any second. `window_s` adds a margin on top. `clock` and
    `sleep` are injectable for tests.
    """

    def __init__(
        self,
        limits: Mapping[str, int] = DEFAULT_LIMITS,
        *,
        window_s: float = 1.05,
        backoff_s: float = 1.0,
        max_backoff_s: float = 16.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        bad = {group: n for group, n in limits.items() if n < 1}
        if bad:
            raise ValueError(f"rate limits must be at least 1 request per second, got {bad}")
        if window_s < 1.0:
            raise ValueError(
                f"window_s must be at least 1.0 s (Upbit counts per second), got {window_s}"
            )
        self._limits = dict(limits)
        self._window_s = window_s
        self._backoff_base_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[str, deque[float]] = {}  # reply times within the window
        self._inflight: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._blocked: str | None = None
        self.last_remaining: dict[str, RemainingReq] = {}

    @property
    def blocked(self) -> str | None:
        """Why requests are refused after a 418, or None while not blocked."""
        return self._blocked

    def limit(self, group: str) -> int:
        """Requests per second allowed for `group` (unknown groups get the quotation limit)."""
        return self._limits.get(group, self._limits.get("quotation", 10))

    async def acquire(self, group: str) -> None:
        """Wait until one more request of `group` fits the budget, then count it in flight."""
        self._raise_if_blocked(group)
        lock = self._locks.setdefault(group, asyncio.Lock())
        async with lock:
            sent = self._sent.setdefault(group, deque())
            while True:
                self._raise_if_blocked(group)
                now = self._clock()
                while sent and now - sent[0] >= self._window_s:
                    sent.popleft()
                wait = self._not_before.get(group, 0.0) - now
                inflight = self._inflight.get(group, 0)
                if len(sent) + inflight >= self.limit(group):
                    # Full: wait for the oldest reply to leave the window, or for a reply.
                    expiry = sent[0] + self._window_s - now if sent else _INFLIGHT_POLL_S
                    wait = max(wait, min(expiry, _INFLIGHT_POLL_S) if inflight else expiry)
                if wait <= 0:
                    self._inflight[group] = inflight + 1
                    return
                await self._sleep(wait)

    def release(self, group: str) -> None:
        """Count a request of `group` as answered (or failed) now; it stays in the window."""
        inflight = self._inflight.get(group, 0)
        if inflight > 0:
            self._inflight[group] = inflight - 1
            self._sent.setdefault(group, deque()).append(self._clock())

    def observe(self, group: str, status: int, remaining_header: str | None) -> None:
        """Learn from a reply: its `Remaining-Req`, a 429 (back off) or a 418 (block).

        Raises `ExchangeBlocked` on a 418.
        """
        self.release(group)
        now = self._clock()
        remaining = parse_remaining_req(remaining_header)
        if remaining is not None:
            self.last_remaining[group] = remaining
            if remaining.per_second <= 0:
                # The server's window is spent: nothing more until the next second.
                self._push_not_before(group, now + self._window_s)
        if status == 418:
            self._blocked = (
                f"Upbit answered 418 for the {group!r} group: this client is blocked for "
                "ignoring 429 replies; trading must stop until the block is lifted"
            )
            logger.error(self._blocked)
            raise ExchangeBlocked(self._blocked, group=group)
        if status == 429:
            backoff = min(
                self._backoff.get(group, self._backoff_base_s / 2) * 2, self._max_backoff_s
            )
            self._backoff[group] = backoff
            self._push_not_before(group, now + backoff)
            logger.warning(
                "Upbit answered 429 for the %r group; backing off %.2f s", group, backoff
            )
        elif status < 400:
            self._backoff.pop(group, None)

    def unblock(self) -> None:
        """Lift the 418 block (the operator decided the exchange's block is over)."""
        self._blocked = None

    def _push_not_before(self, group: str, when: float) -> None:
        self._not_before[group] = max(self._not_before.get(group, 0.0), when)

    def _raise_if_blocked(self, group: str) -> None:
        if self._blocked is not None:
            raise ExchangeBlocked(self._blocked, group=group)
