"""What makes a failed call worth another try, how long to wait, and when to stop calling."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal


@dataclass
class CircuitBreaker:
    """Stop calling a provider after repeated failures; try again after a pause."""

    failure_threshold: int = 3
    reset_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """closed: calls go through; open: refused; half-open: one trial call allowed."""
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_after_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may be made now."""
        return self.state != "open"

    def record_success(self) -> None:
        """Close the breaker."""
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        """Count a failure; open (or re-open) the breaker at the threshold."""
        self.failures += 1
        if self.failures >= self.failure_threshold or self.state == "half-open":
            self.opened_at = self.clock()


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def retry_after_s(exc: BaseException) -> float | None:
    """The wait the server asked for in `Retry-After` (seconds or an HTTP date), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_SCHEMA_REFUSALS = ("required for format", "invalid json schema", "failed to parse grammar")


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection failures are worth another try; nothing else is.

    Ollama answers 500 when it cannot compile the `format` schema into a grammar; the same
    schema fails the same way again, so that one is not retried.
    """
    if any(refusal in str(exc).lower() for refusal in _SCHEMA_REFUSALS):
        return False
    code = _status_code(exc)
    if code is not None:
        return code == 429 or code >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__.lower()
    return "timeout" in name or "connect" in name or "remoteprotocol" in name
