"""Positions: the coins held now, and the returns of the positions closed most recently."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables, as_dicts, checked, upsert
from store.journal.orders import _existing_fill_id
from store.rows import FillRow, PositionRow
from store.schema import events, fills, positions, utc_now

__all__ = ["Positions"]


class Positions(JournalTables):
    """Write and read open positions; read the results of closed ones."""

    def positions(self) -> dict[str, dict[str, Any]]:
        """Return the open positions keyed by market."""
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(positions.select().order_by(positions.c.market)))
        return {row["market"]: row for row in rows}

    def upsert_position(self, row: PositionRow) -> None:
        """Insert or update the position for `row["market"]`.

        `opened_at` is kept from the first insert; `updated_at` defaults to now.
        """
        values = checked(positions, row)
        if "market" not in values:
            raise ValueError("position row needs a market")
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            upsert(connection, positions, "market", values, frozenset({"opened_at"}))

    def settle_fills(
        self, market: str, fill_rows: list[FillRow], position: PositionRow | None
    ) -> None:
        """Write an order's fills and the position they leave (None: flat) in one transaction.

        Either both are in the journal or neither: a process that dies here never keeps the
        fills and loses the position. A fill with a known `trade_uuid` is not re-added.
        """
        values = None
        if position is not None:
            values = checked(positions, position)
            if values.get("market") != market:
                raise ValueError(f"position row is for {values.get('market')}, not {market}")
            values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            for row in fill_rows:
                if _existing_fill_id(connection, row.get("trade_uuid")) is None:
                    connection.execute(fills.insert().values(**checked(fills, row)))
            if values is None:
                connection.execute(positions.delete().where(positions.c.market == market))
            else:
                upsert(connection, positions, "market", values, frozenset({"opened_at"}))

    def delete_position(self, market: str) -> bool:
        """Delete the position for `market`; return whether there was one."""
        with self.engine.begin() as connection:
            result = connection.execute(positions.delete().where(positions.c.market == market))
            return bool(result.rowcount)

    def recent_results(self, limit: int = 20) -> list[float]:
        """Return the returns of the last closed positions (`position_closed`), oldest first."""
        stmt = (
            sa.select(events.c.payload)
            .where(events.c.type == "position_closed")
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            payloads = [payload for (payload,) in connection.execute(stmt)]
        return [float(p["return"]) for p in reversed(payloads) if p and "return" in p]
