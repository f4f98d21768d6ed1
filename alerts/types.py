"""The alert a trader hears about, the kinds of alerts, and what a notifier must do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, get_args

AlertKind = Literal[
    "emergency_sell", "fill", "halt", "resume", "daily_summary", "trading_state", "error"
]
ALERT_KINDS: frozenset[str] = frozenset(get_args(AlertKind))
# Kinds the overflow policy never drops in favour of a less urgent alert.
EMERGENCY_KINDS: frozenset[str] = frozenset({"emergency_sell", "halt"})

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


def now_utc() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Alert:
    """One thing a trader should hear about."""

    kind: AlertKind
    title: str
    text: str
    market: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    ts: datetime = field(default_factory=now_utc)

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


class Notifier(Protocol):
    """Delivers one alert somewhere; raises (ideally `NotifierError`) when it cannot."""

    name: str

    async def send(self, alert: Alert) -> None: ...
