"""Events: what runs, the watchdog, the ledger and the operator reported, in one sequence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from store.journal.base import JournalTables, as_dicts, new_id
from store.journal.driver import driver_cursor
from store.schema import events

__all__ = ["Events", "insert_event", "insert_events"]

# Inserts run with their rows as parameters, not `.values(...)`: compiled once, then cached.
_INSERT_EVENT = events.insert()
_INSERT_EVENTS_RETURNING_IDS = events.insert().returning(events.c.id, sort_by_parameter_order=True)


def insert_event(connection: Connection, values: dict[str, Any]) -> int:
    """Insert one event row on `connection` and return its id."""
    return new_id(connection.execute(_INSERT_EVENT, values))


def insert_events(connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert events in order and return their ids: one statement when the rows agree."""
    if len(rows) < 2 or len({frozenset(row) for row in rows}) > 1:
        return [insert_event(connection, row) for row in rows]
    result = connection.execute(_INSERT_EVENTS_RETURNING_IDS, rows)
    return [int(event_id) for event_id in result.scalars()]


class Events(JournalTables):
    """Append events and read them back by id or type."""

    def record_event(
        self,
        run_id: str | None,
        type: str,
        payload: Mapping[str, Any],
        ts: datetime,
    ) -> int:
        """Append one event and return its id (a global, increasing sequence)."""
        values = {"run_id": run_id, "type": type, "payload": dict(payload), "ts": ts}
        plan = self._driver_plan([(events, values)])
        if plan is not None:
            try:
                with driver_cursor(self.engine) as cursor:
                    return plan[0].insert(cursor, values)
            except Exception:  # rolled back: Core writes it, or raises its usual error
                pass
        with self.engine.begin() as connection:
            return insert_event(connection, values)

    def events_after(self, event_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Return up to `limit` events with id > `event_id`, oldest first."""
        stmt = events.select().where(events.c.id > event_id).order_by(events.c.id).limit(limit)
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def events_of_type(
        self, types: Sequence[str], *, limit: int = 100, market: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the newest events of the given types, newest first (optionally one market)."""
        stmt = events.select().where(events.c.type.in_(list(types)))
        stmt = stmt.order_by(events.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(stmt))
        if market is not None:
            rows = [r for r in rows if (r["payload"] or {}).get("market") == market]
        return rows

    def latest_event(self, type: str) -> dict[str, Any] | None:
        """Return the newest event of `type` (id, run_id, type, ts, payload), or None."""
        rows = self.events_of_type([type], limit=1)
        return rows[0] if rows else None
