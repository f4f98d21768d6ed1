"""Runs: a graph run's decision with its LLM calls and events, and finding runs again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store import schema
from store.journal.base import JournalTables, as_dicts, checked, new_id
from store.journal.driver import driver_cursor
from store.journal.events import insert_events
from store.rows import DecisionRow, EventRow, LlmCallRow
from store.schema import decisions, events, llm_calls, orders

__all__ = ["Runs"]

# Inserts run with their rows as parameters, not `.values(...)`: compiled once, then cached.
_INSERT_DECISION = decisions.insert()
_INSERT_LLM_CALL = llm_calls.insert()


def _insert_llm_call(connection: Connection, values: dict[str, Any]) -> int:
    return new_id(connection.execute(_INSERT_LLM_CALL, values))


class Runs(JournalTables):
    """Write a run in one transaction; read one run, or the runs a session left unfinished."""

    def record_decision(self, row: DecisionRow) -> None:
        """Insert one decision."""
        with self.engine.begin() as connection:
            connection.execute(decisions.insert().values(**checked(decisions, row)))

    def record_llm_call(self, row: LlmCallRow) -> int:
        """Insert one LLM call and return its id."""
        with self.engine.begin() as connection:
            return _insert_llm_call(connection, checked(llm_calls, row))

    def record_run(
        self,
        decision: DecisionRow,
        llm_calls: Sequence[LlmCallRow] = (),
        events: Sequence[EventRow] = (),
    ) -> list[int]:
        """Write a decision with its LLM calls and events in one transaction; return event ids.

        LLM call and event rows without a `run_id` get the decision's.
        """
        decision_values = checked(decisions, decision)
        run_id = decision_values.get("run_id")
        call_rows = [checked(schema.llm_calls, {"run_id": run_id, **c}) for c in llm_calls]
        event_rows = [checked(schema.events, {"run_id": run_id, **e}) for e in events]
        rows: list[tuple[sa.Table, Mapping[str, Any]]] = [
            (schema.decisions, decision_values),
            *((schema.llm_calls, call) for call in call_rows),
            *((schema.events, event) for event in event_rows),
        ]
        plan = self._driver_plan(rows)
        if plan is not None:
            try:
                with driver_cursor(self.engine) as cursor:
                    ids = [
                        statement.insert(cursor, row)
                        for statement, (_, row) in zip(plan, rows, strict=True)
                    ]
                return ids[len(rows) - len(event_rows) :]
            except Exception:  # rolled back: Core writes it, or raises its usual error
                pass
        with self.engine.begin() as connection:
            connection.execute(_INSERT_DECISION, decision_values)
            for call in call_rows:
                _insert_llm_call(connection, call)
            return insert_events(connection, event_rows)

    def list_llm_calls(
        self, *, since: datetime | None = None, session_id: str | None = None
    ) -> list[dict[str, Any]]:
        """LLM calls (and rule-based answers) with their run's bar time, oldest first."""
        stmt = (
            sa.select(llm_calls, decisions.c.bar_ts, decisions.c.session_id)
            .join(decisions, decisions.c.run_id == llm_calls.c.run_id)
            .order_by(decisions.c.bar_ts, llm_calls.c.id)
        )
        if since is not None:
            stmt = stmt.where(decisions.c.bar_ts >= since)
        if session_id is not None:
            stmt = stmt.where(decisions.c.session_id == session_id)
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def get_decision(self, run_id: str) -> dict[str, Any] | None:
        """Return one decision with its `llm_calls`, `orders` and `events` lists, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(decisions.select().where(decisions.c.run_id == run_id)).first()
            if row is None:
                return None
            decision = dict(row._mapping)
            decision["llm_calls"] = as_dicts(
                connection.execute(
                    llm_calls.select().where(llm_calls.c.run_id == run_id).order_by(llm_calls.c.id)
                )
            )
            decision["orders"] = as_dicts(
                connection.execute(
                    orders.select()
                    .where(orders.c.run_id == run_id)
                    .order_by(orders.c.created_at, orders.c.identifier)
                )
            )
            decision["events"] = as_dicts(
                connection.execute(
                    events.select().where(events.c.run_id == run_id).order_by(events.c.id)
                )
            )
            return decision

    def run_exists(self, run_id: str) -> bool:
        """Whether a run has a decision or any event (it started) in the journal."""
        with self.engine.connect() as connection:
            if connection.execute(
                sa.select(decisions.c.run_id).where(decisions.c.run_id == run_id)
            ).first():
                return True
            return (
                connection.execute(
                    sa.select(events.c.id).where(events.c.run_id == run_id).limit(1)
                ).first()
                is not None
            )

    def latest_session_id(self) -> str | None:
        """Return the session of the newest decision, or None."""
        stmt = (
            sa.select(decisions.c.session_id)
            .order_by(decisions.c.created_at.desc(), decisions.c.run_id.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    # ---- engine restart support ---------------------------------------------------------

    def first_bar_ts(self, session_id: str) -> datetime | None:
        """Return the earliest bar a session decided on, or None."""
        return self._bar_ts(sa.func.min, session_id)

    def last_bar_ts(self, session_id: str) -> datetime | None:
        """Return the latest bar a session decided on, or None."""
        return self._bar_ts(sa.func.max, session_id)

    def _bar_ts(self, aggregate: Any, session_id: str) -> datetime | None:
        stmt = sa.select(aggregate(decisions.c.bar_ts)).where(
            decisions.c.session_id == session_id, decisions.c.trigger == "bar"
        )
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    def unfinished_runs(self, session_id: str) -> list[str]:
        """Return runs of a session that started (a `run_started` event) but have no decision."""
        prefix = f"{session_id}-"
        stmt = (
            sa.select(events.c.run_id)
            .where(
                events.c.type == "run_started",
                events.c.run_id.startswith(prefix, autoescape=True),
                ~sa.exists().where(decisions.c.run_id == events.c.run_id),
            )
            .order_by(events.c.id)
        )
        with self.engine.connect() as connection:
            return [run_id for (run_id,) in connection.execute(stmt)]
