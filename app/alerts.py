"""Trader alerts: what happened, formatted for people, sent to Slack and Telegram.

The watchdog and the engine call `AlertDispatcher.publish`, which is synchronous and never
waits; a background task delivers each alert to every configured notifier independently,
retrying with backoff (honouring the service's retry-after) and logging what still fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, Protocol, Self, get_args

import httpx

logger = logging.getLogger(__name__)

AlertKind = Literal[
    "emergency_sell", "fill", "halt", "resume", "daily_summary", "trading_state", "error"
]
ALERT_KINDS: frozenset[str] = frozenset(get_args(AlertKind))
# Kinds the overflow policy never drops in favour of a less urgent alert.
EMERGENCY_KINDS: frozenset[str] = frozenset({"emergency_sell", "halt"})

KST = timezone(timedelta(hours=9), "KST")

# (English label, Korean label, icon) per kind.
KIND_LABELS: Mapping[str, tuple[str, str, str]] = {
    "emergency_sell": ("EMERGENCY SELL", "긴급 매도", "🚨"),
    "fill": ("FILL", "체결", "✅"),
    "halt": ("TRADING HALTED", "거래 중지", "⛔"),
    "resume": ("TRADING RESUMED", "거래 재개", "▶️"),
    "daily_summary": ("DAILY SUMMARY", "일일 요약", "📊"),
    "trading_state": ("TRADING STATE", "거래 상태", "ℹ️"),
    "error": ("ERROR", "오류", "❗"),
}

TELEGRAM_MAX_TEXT = 4096
SLACK_MAX_HEADER = 150
SLACK_MAX_SECTION = 3000
SLACK_MAX_FIELD = 2000
SLACK_FIELDS_PER_SECTION = 10
SLACK_MAX_TEXT = 4000
_ERROR_BODY_LIMIT = 500


def _now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Alert:
    """One thing a trader should hear about."""

    kind: AlertKind
    title: str
    text: str
    market: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    ts: datetime = field(default_factory=_now_utc)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"Alert.kind must be one of {sorted(ALERT_KINDS)}, got {self.kind!r}")
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            raise ValueError("Alert.ts must be timezone-aware (UTC)")
        object.__setattr__(self, "fields", {str(k): str(v) for k, v in self.fields.items()})

    @property
    def is_emergency(self) -> bool:
        return self.kind in EMERGENCY_KINDS


def kind_label(kind: str) -> str:
    """Return the bilingual label of a kind, e.g. "EMERGENCY SELL / 긴급 매도"."""
    english, korean, _icon = KIND_LABELS[kind]
    return f"{english} / {korean}"


def _kst(ts: datetime) -> str:
    return ts.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")


def _headline(alert: Alert) -> str:
    icon = KIND_LABELS[alert.kind][2]
    market = f" {alert.market}" if alert.market else ""
    return f"{icon} [{kind_label(alert.kind)}]{market}"


def format_text(alert: Alert) -> str:
    """Format an alert as a compact plain-text message (times shown in KST)."""
    lines = [_headline(alert)]
    if alert.title:
        lines.append(alert.title)
    if alert.text:
        lines.append(alert.text)
    if alert.fields:
        lines.append(" · ".join(f"{key}: {value}" for key, value in alert.fields.items()))
    lines.append(_kst(alert.ts))
    return "\n".join(lines)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# Errors and secret masking
# --------------------------------------------------------------------------------------------


class NotifierError(Exception):
    """A notifier could not deliver an alert; the message never holds a secret."""

    def __init__(
        self,
        notifier: str,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        self.notifier = notifier
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.retryable = retryable
        detail = message
        if retry_after is not None:
            detail += f" (retry after {retry_after:g}s)"
        super().__init__(f"{notifier}: {detail}")


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _parse_retry_after(value: str | None) -> float | None:
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
    return max(0.0, (when - _now_utc()).total_seconds())


class _Redactor:
    """Replaces registered secrets by their masks in text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._masks: dict[str, str] = {}

    def register(self, secret: str, mask: str) -> None:
        if secret:
            with self._lock:
                self._masks[secret] = mask

    def redact(self, text: str) -> str:
        with self._lock:
            masks = list(self._masks.items())
        for secret, mask in masks:
            if secret in text:
                text = text.replace(secret, mask)
        return text


_REDACTOR = _Redactor()


class _RedactingFilter(logging.Filter):
    """Masks notifier secrets in records of loggers that see URLs (httpx logs each request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _REDACTOR.redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


_FILTER = _RedactingFilter()
_FILTERED_LOGGERS = ("httpx",)  # httpx logs each request URL at INFO; httpcore logs no paths


def _register_secret(secret: str, mask: str) -> None:
    """Mask `secret` in our errors and in the HTTP client's own log lines."""
    _REDACTOR.register(secret, mask)
    for name in _FILTERED_LOGGERS:
        http_logger = logging.getLogger(name)
        if _FILTER not in http_logger.filters:
            http_logger.addFilter(_FILTER)


def mask_token(token: str) -> str:
    """Mask a Telegram bot token, keeping the bot id before the colon."""
    bot_id, sep, _secret = token.partition(":")
    return f"{bot_id}:***" if sep and bot_id.isdigit() else "***"


def _transport_error(notifier: str, exc: httpx.HTTPError) -> NotifierError:
    detail = _REDACTOR.redact(str(exc)) or type(exc).__name__
    return NotifierError(notifier, f"request failed: {type(exc).__name__}: {detail}")


# --------------------------------------------------------------------------------------------
# Notifiers
# --------------------------------------------------------------------------------------------


class Notifier(Protocol):
    """Delivers one alert somewhere; raises (ideally `NotifierError`) when it cannot."""

    name: str

    async def send(self, alert: Alert) -> None: ...


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Build the Slack incoming-webhook JSON: fallback `text` plus Block Kit `blocks`."""
    english, korean, icon = KIND_LABELS[alert.kind]
    header = f"{icon} {english} / {korean}" + (f" · {alert.market}" if alert.market else "")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _truncate(header, SLACK_MAX_HEADER)},
        }
    ]
    body = "\n".join(
        part
        for part in (
            f"*{_slack_escape(alert.title)}*" if alert.title else "",
            _slack_escape(alert.text),
        )
        if part
    )
    if body:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(body, SLACK_MAX_SECTION)},
            }
        )
    items = list(alert.fields.items())
    for start in range(0, len(items), SLACK_FIELDS_PER_SECTION):
        chunk = items[start : start + SLACK_FIELDS_PER_SECTION]
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": _truncate(
                            f"*{_slack_escape(key)}*\n{_slack_escape(value)}", SLACK_MAX_FIELD
                        ),
                    }
                    for key, value in chunk
                ],
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _kst(alert.ts)}]})
    return {"text": _truncate(format_text(alert), SLACK_MAX_TEXT), "blocks": blocks}


class SlackNotifier:
    """Posts alerts to a Slack incoming webhook (the URL itself is the secret)."""

    name = "slack"

    def __init__(self, webhook_url: str, *, client: httpx.AsyncClient) -> None:
        if not webhook_url.startswith(("https://", "http://")):
            raise ValueError("slack webhook_url must be an http(s) URL (LXA_SLACK_WEBHOOK_URL)")
        self._webhook_url = webhook_url
        self._client = client
        _register_secret(webhook_url, "<slack-webhook>")

    def __repr__(self) -> str:
        return "SlackNotifier(webhook_url=<slack-webhook>)"

    async def send(self, alert: Alert) -> None:
        try:
            response = await self._client.post(self._webhook_url, json=slack_payload(alert))
        except httpx.HTTPError as exc:
            raise _transport_error(self.name, exc) from None
        if response.is_success:
            return
        body = _REDACTOR.redact(response.text[:_ERROR_BODY_LIMIT])
        status = response.status_code
        raise NotifierError(
            self.name,
            f"webhook answered HTTP {status}: {body}",
            status=status,
            body=body,
            retry_after=_parse_retry_after(response.headers.get("retry-after")),
            retryable=_retryable_status(status),
        )


class TelegramNotifier:
    """Sends alerts as Telegram Bot API `sendMessage` calls (plain text, no parse mode)."""

    name = "telegram"

    def __init__(
        self,
        bot_token: str,
        chat_id: str,
        *,
        api_base: str = "https://api.telegram.org",
        client: httpx.AsyncClient,
    ) -> None:
        if not bot_token:
            raise ValueError("telegram bot_token is empty (LXA_TELEGRAM_BOT_TOKEN)")
        if not chat_id:
            raise ValueError("telegram chat_id is empty (LXA_TELEGRAM_CHAT_ID)")
        self._url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
        self.chat_id = chat_id
        self._client = client
        self._masked_token = mask_token(bot_token)
        _register_secret(bot_token, self._masked_token)

    def __repr__(self) -> str:
        return f"TelegramNotifier(bot_token={self._masked_token!r}, chat_id={self.chat_id!r})"

    async def send(self, alert: Alert) -> None:
        payload = {
            "chat_id": self.chat_id,
            "text": _truncate(format_text(alert), TELEGRAM_MAX_TEXT),
            "disable_web_page_preview": True,
        }
        try:
            response = await self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            raise _transport_error(self.name, exc) from None
        status = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True and response.is_success:
            return
        if not isinstance(answer, dict):
            body = _REDACTOR.redact(response.text[:_ERROR_BODY_LIMIT])
            raise NotifierError(
                self.name,
                f"sendMessage answered HTTP {status} without Bot API JSON: {body}",
                status=status,
                body=body,
                retry_after=_parse_retry_after(response.headers.get("retry-after")),
                retryable=_retryable_status(status),
            )
        error_code = answer.get("error_code")
        code = error_code if isinstance(error_code, int) else status
        description = _REDACTOR.redact(str(answer.get("description", "no description")))
        parameters = answer.get("parameters")
        retry_after: float | None = None
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
        raise NotifierError(
            self.name,
            f"sendMessage failed with error {code}: {description}",
            status=code,
            body=description,
            retry_after=retry_after,
            retryable=_retryable_status(code) or retry_after is not None,
        )


def build_notifiers(
    *,
    slack_webhook_url: str | None,
    telegram_bot_token: str | None,
    telegram_chat_id: str | None,
    telegram_api_base: str,
    client: httpx.AsyncClient,
) -> list[Notifier]:
    """Build the configured notifiers; empty values count as not configured."""
    notifiers: list[Notifier] = []
    if slack_webhook_url:
        notifiers.append(SlackNotifier(slack_webhook_url, client=client))
    if bool(telegram_bot_token) != bool(telegram_chat_id):
        missing = "LXA_TELEGRAM_CHAT_ID" if telegram_bot_token else "LXA_TELEGRAM_BOT_TOKEN"
        raise ValueError(
            "Telegram alerts need both LXA_TELEGRAM_BOT_TOKEN and LXA_TELEGRAM_CHAT_ID; "
            f"{missing} is not set"
        )
    if telegram_bot_token and telegram_chat_id:
        notifiers.append(
            TelegramNotifier(
                telegram_bot_token, telegram_chat_id, api_base=telegram_api_base, client=client
            )
        )
    return notifiers


# --------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------

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
                        _REDACTOR.redact(str(exc)) or type(exc).__name__,
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
