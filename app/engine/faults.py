"""Transient faults: the exchange or the database away for a while, never the end of the bot.

`is_transient` tells a fault worth waiting out (a 5xx, a timeout, a reset connection, a database
that restarts) from one that must stop the service (Upbit's 418 block, a programming error).
`DeferredWrites` keeps journal writes that failed while the database was away and writes them,
in order, once it answers again; nothing the watchdog or a fill needs is lost meanwhile.
`Outages` turns failing bars into recorded holds with one alert, and moves the trading state to
`reducing` (exits only) once a source has failed for longer than the configured time.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg
import sqlalchemy.exc
from psycopg_pool import PoolTimeout

from exchange.ratelimit import ExchangeBlocked
from exchange.risk import RiskGuard
from exchange.types import ExchangeError


class Reporter(Protocol):
    """Where outages are reported (`app.engine.venue.Outbox`)."""

    def publish(self, event: dict[str, Any]) -> None: ...

    def record(self, run_id: str | None, kind: str, payload: Any) -> None: ...

    def alert(self, kind: str, title: str, text: str, **extra: Any) -> None: ...


log = logging.getLogger("app.engine")

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlite3.OperationalError,
    # psycopg's own errors reach us from the Postgres checkpointer's pool
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)


def is_database_error(exc: BaseException) -> bool:
    """Whether `exc` says the journal or checkpoint database is unreachable or busy."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, DATABASE_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is worth waiting out: the exchange or the database failing for a while."""
    if isinstance(exc, ExchangeBlocked):
        return False
    return is_database_error(exc) or isinstance(exc, ExchangeError | OSError | TimeoutError)


def source_of(exc: BaseException) -> str:
    """Which outside service failed: "database" or "exchange"."""
    return "database" if is_database_error(exc) else "exchange"


@dataclass
class DeferredWrites:
    """Journal writes kept in order while the database is away, written when it is back."""

    pending: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)
    limit: int = 100_000  # beyond this the oldest are dropped, loudly (a days-long outage)

    def run(self, what: str, write: Callable[[], Any]) -> bool:
        """Write now, or keep the write for later if the database is away; True if written."""
        if self.pending and not self.flush():
            self._keep(what, write)
            return False
        try:
            write()
        except Exception as exc:
            if not is_database_error(exc):
                raise
            log.warning("journal write deferred (%s): %s", what, exc)
            self._keep(what, write)
            return False
        return True

    def flush(self) -> bool:
        """Write what was kept, oldest first; stop at the first that fails. True when empty."""
        while self.pending:
            what, write = self.pending[0]
            try:
                write()
            except Exception as exc:
                if not is_database_error(exc):
                    log.exception("deferred journal write %s failed for good; dropped", what)
                    self.pending.pop(0)
                    continue
                return False
            self.pending.pop(0)
            log.info("deferred journal write written: %s", what)
        return True

    def _keep(self, what: str, write: Callable[[], Any]) -> None:
        self.pending.append((what, write))
        if len(self.pending) > self.limit:
            dropped, _ = self.pending.pop(0)
            log.error("journal writes deferred beyond %d; dropped %s", self.limit, dropped)


@dataclass
class Outages:
    """The exchange's and the database's failures: one alert each, reducing after a while."""

    guard: RiskGuard
    outbox: Reporter
    reducing_after_s: float
    since: dict[str, datetime] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def failed(self, exc: BaseException, at: datetime) -> str:
        """Count a failure of the source `exc` came from; return the hold's reason."""
        source = source_of(exc)
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        reason = f"{source}_unavailable: {detail}"
        self.last_error[source] = detail
        if source not in self.since:
            self.since[source] = at
            log.warning("%s unavailable; entries held, exits go on: %s", source, detail)
            self.outbox.publish({"type": "outage", "source": source, "error": detail})
            self.outbox.alert("error", f"{source} unavailable", f"entries held: {detail}")
        elapsed = (at - self.since[source]).total_seconds()
        if elapsed >= self.reducing_after_s and self.guard.outage is None:
            why = f"{source} failing for {elapsed:.0f}s: {detail}"
            self.guard.set_outage(why)
            self.outbox.alert("trading_state", "trading reducing", why)
        return reason

    def recovered(self, at: datetime) -> None:
        """Everything answered again: close the outages, journal them, lift `reducing`."""
        if not self.since:
            return
        for source, started in sorted(self.since.items()):
            payload = {
                "source": source,
                "since": started.isoformat(),
                "seconds": (at - started).total_seconds(),
                "error": self.last_error.get(source),
            }
            log.warning("%s answers again after %.0fs", source, payload["seconds"])
            self.outbox.record(None, "outage", payload)
            self.outbox.publish({"type": "outage_ended", **payload})
            self.outbox.alert(
                "resume", f"{source} answers again", f"after {payload['seconds']:.0f}s"
            )
        self.since.clear()
        self.last_error.clear()
        if self.guard.outage is not None:
            self.guard.set_outage(None)
