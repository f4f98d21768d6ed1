"""What the Slack and Telegram notifiers share over HTTP: retry rules and transport errors."""

from __future__ import annotations

import email.utils
from datetime import UTC

import httpx

from alerts.redact import REDACTOR
from alerts.types import NotifierError, now_utc

ERROR_BODY_LIMIT = 500


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another try (rate limited or a server error)."""
    return status == 429 or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now_utc()).total_seconds())


def transport_error(notifier: str, exc: httpx.HTTPError) -> NotifierError:
    """Turn a failed request into a retryable `NotifierError` with its secrets masked."""
    detail = REDACTOR.redact(str(exc)) or type(exc).__name__
    return NotifierError(notifier, f"request failed: {type(exc).__name__}: {detail}")
