"""What the engine needs from the account it trades and the world it reports to."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from alerts.types import Alert
from app.engine.faults import DeferredWrites
from exchange.types import AccountSnapshot, Bar
from store.bus import EventBus
from store.journal import Journal

log = logging.getLogger("app.engine")


class TradingVenue(Protocol):
    """The account the engine marks and reads: the paper exchange, or Upbit when live.

    Every method the engine calls is declared here (the paper exchange and `UpbitExchange`
    both implement them); orders go through the guarded exchange, not through this.
    """

    def on_bar(self, bar: Bar) -> Any:
        """Mark a closed bar (the paper exchange also fills resting orders it crossed)."""
        ...

    def on_tick(self, market: str, ts: datetime, price: float) -> None:
        """Mark a trade inside a bar."""
        ...

    async def get_account(self) -> AccountSnapshot:
        """Read cash and positions now."""
        ...

    def recent_account(self, max_age_s: float) -> AccountSnapshot | None:
        """An account read no older than `max_age_s`, or None (then the engine reads it)."""
        ...


class AlertSink(Protocol):
    """Where alerts go (the dispatcher); publishing never blocks."""

    def publish(self, alert: Alert) -> bool: ...


def now() -> datetime:
    """Wall time, UTC (journal rows' created_at)."""
    return datetime.now(UTC)


def ms(ts: datetime) -> int:
    """Epoch milliseconds of a timezone-aware time."""
    return int(ts.timestamp() * 1000)


@dataclass
class Outbox:
    """Where the engine's components report: the journal's events, the bus, the alerts."""

    journal: Journal
    bus: EventBus
    alerts: AlertSink | None = None
    # journal writes that wait for the database to come back (see `app.engine.faults`)
    deferred: DeferredWrites = field(default_factory=DeferredWrites)

    def publish(self, event: dict[str, Any]) -> None:
        """Publish an event to the viewers (never waits for one)."""
        self.bus.publish(event)

    def record(self, run_id: str | None, kind: str, payload: Mapping[str, Any]) -> None:
        """Journal an event (kept and written later while the database is away)."""
        row, stamp = dict(payload), now()
        self.deferred.run(
            f"event {kind}", lambda: self.journal.record_event(run_id, kind, row, stamp)
        )

    def alert(self, kind: str, title: str, text: str, **extra: Any) -> None:
        """Queue a Slack/Telegram alert; an alert must never stop trading."""
        sink = self.alerts
        if sink is None:
            return
        try:
            sink.publish(Alert(kind=kind, title=title, text=text, ts=now(), **extra))  # type: ignore[arg-type]
        except Exception:
            log.exception("could not queue alert %s", title)
