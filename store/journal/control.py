"""Trading control: the operator's halt, resume and flatten, and the loss limits kept across
restarts (the monthly cap)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.journal.base import JournalTables, upsert
from store.journal.driver import DriverSelectOne, driver_cursor
from store.journal.events import insert_event
from store.rows import TradingControlRow
from store.schema import loss_limits, trading_control, utc_now

__all__ = ["TRADING_CONTROL_WRITERS", "TRADING_STATES", "TradingControls"]

TRADING_STATES = frozenset({"active", "reducing", "halted"})
TRADING_CONTROL_WRITERS = frozenset({"cli", "api", "engine"})
_CONTROL_ROW_ID = 1


def _as_control_row(row: Mapping[str, Any]) -> TradingControlRow:
    """The control row's columns but its id, in the table's order."""
    return {
        "state": row["state"],
        "reason": row["reason"],
        "flatten_requested": row["flatten_requested"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def _control_row(connection: Connection) -> TradingControlRow | None:
    row = connection.execute(
        trading_control.select().where(trading_control.c.id == _CONTROL_ROW_ID)
    ).first()
    return None if row is None else _as_control_row(dict(row._mapping))


class TradingControls(JournalTables):
    """Read and write the operator's trading state and the loss limits' figures."""

    # The engine reads the trading state at every bar close: on SQLite, through the driver.
    _control_select: DriverSelectOne | None = None

    # ---- trading control (halt, resume, flatten) ----------------------------------------

    def read_trading_control(self) -> TradingControlRow:
        """Return the operator's trading state: state, reason, flatten_requested, updated_*.

        Before anyone wrote one: active, no reason, `updated_at` and `updated_by` None.
        """
        row: TradingControlRow | None
        if self._driver:
            if self._control_select is None:
                self._control_select = DriverSelectOne(trading_control, "id", self.engine.dialect)
            with driver_cursor(self.engine) as cursor:
                values = self._control_select.fetch(cursor, _CONTROL_ROW_ID)
            row = None if values is None else _as_control_row(values)
        else:
            with self.engine.connect() as connection:
                row = _control_row(connection)
        if row is None:
            return {
                "state": "active",
                "reason": "",
                "flatten_requested": False,
                "updated_at": None,
                "updated_by": None,
            }
        return row

    def write_trading_control(
        self, state: str, reason: str, *, flatten: bool = False, by: str
    ) -> TradingControlRow:
        """Set the trading state, record a `trading_state` event, and return the new row.

        `flatten` asks the engine to sell every position (halted only). A pending flatten
        request survives another halt and is dropped by any other state.
        """
        if state not in TRADING_STATES:
            raise ValueError(f"state must be one of {sorted(TRADING_STATES)}, got {state!r}")
        if by not in TRADING_CONTROL_WRITERS:
            raise ValueError(f"by must be one of {sorted(TRADING_CONTROL_WRITERS)}, got {by!r}")
        if flatten and state != "halted":
            raise ValueError(f"flatten is only allowed with state 'halted', got {state!r}")
        now = utc_now()
        with self.engine.begin() as connection:
            previous = _control_row(connection)
            pending = bool(previous and previous["flatten_requested"])
            values = {
                "id": _CONTROL_ROW_ID,
                "state": state,
                "reason": reason,
                "flatten_requested": flatten or (pending and state == "halted"),
                "updated_at": now,
                "updated_by": by,
            }
            upsert(connection, trading_control, "id", values, frozenset())
            row = _control_row(connection)
            assert row is not None
            insert_event(
                connection,
                {
                    "run_id": None,
                    "type": "trading_state",
                    "ts": now,
                    "payload": {
                        **row,
                        "previous_state": "active" if previous is None else previous["state"],
                    },
                },
            )
        return row

    def clear_flatten_request(self, *, by: str = "engine") -> bool:
        """Mark a requested flatten as done; return whether one was pending (then an event)."""
        now = utc_now()
        with self.engine.begin() as connection:
            result = connection.execute(
                trading_control.update()
                .where(
                    trading_control.c.id == _CONTROL_ROW_ID,
                    trading_control.c.flatten_requested.is_(True),
                )
                .values(flatten_requested=False, updated_at=now, updated_by=by)
            )
            if not result.rowcount:
                return False
            row = _control_row(connection)
            assert row is not None
            insert_event(
                connection,
                {
                    "run_id": None,
                    "type": "trading_state",
                    "ts": now,
                    "payload": {**row, "previous_state": row["state"], "flattened": True},
                },
            )
        return True

    # ---- loss limits kept across restarts (the monthly cap) ------------------------------

    def read_loss_limit(self, name: str) -> dict[str, Any] | None:
        """Return the figures last written for the loss limit `name`, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(loss_limits.c.figures, loss_limits.c.updated_at).where(
                    loss_limits.c.name == name
                )
            ).first()
        if row is None:
            return None
        return {**dict(row.figures), "updated_at": row.updated_at}

    def write_loss_limit(self, name: str, figures: Mapping[str, Any]) -> None:
        """Keep the figures of the loss limit `name` (replacing what was there)."""
        values = {"name": name, "figures": dict(figures), "updated_at": utc_now()}
        with self.engine.begin() as connection:
            upsert(connection, loss_limits, "name", values, frozenset())
