"""Order intents: the live order manager's journal (a mixin of `store.journal.Journal`).

An intent is written before its request leaves the process and moved through the states
pending -> sent -> open / done / cancel / rejected, or `unknown` when the exchange did not
answer; an unknown intent is resolved by looking the identifier up, never by sending again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from store.schema import fills, order_intents, utc_now

__all__ = ["INTENT_STATES", "OrderIntents"]

INTENT_STATES = frozenset({"pending", "sent", "unknown", "open", "done", "cancel", "rejected"})


class OrderIntents:
    """Order intent rows and once-only fills over `self.engine`."""

    engine: Engine

    def record_order_intent(self, row: Mapping[str, Any]) -> None:
        """Insert a new intent; raise ValueError if the identifier was already journaled."""
        values = _checked(row)
        for required in ("identifier", "market", "side", "ord_type", "state"):
            if not values.get(required):
                raise ValueError(f"order intent needs {required}")
        now = utc_now()
        values.setdefault("created_at", now)
        values.setdefault("updated_at", now)
        with self.engine.begin() as connection:
            exists = connection.execute(
                sa.select(order_intents.c.identifier).where(
                    order_intents.c.identifier == values["identifier"]
                )
            ).first()
            if exists is not None:
                raise ValueError(f"order intent {values['identifier']!r} is already journaled")
            connection.execute(order_intents.insert().values(**values))

    def update_order_intent(self, identifier: str, changes: Mapping[str, Any]) -> None:
        """Change columns of an intent; raise KeyError if there is none with that identifier."""
        values = _checked(changes)
        values.pop("identifier", None)
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            result = connection.execute(
                order_intents.update()
                .where(order_intents.c.identifier == identifier)
                .values(**values)
            )
            if not result.rowcount:
                raise KeyError(f"no order intent {identifier!r}")

    def get_order_intent(self, identifier: str) -> dict[str, Any] | None:
        """Return one intent, or None."""
        stmt = order_intents.select().where(order_intents.c.identifier == identifier)
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return None if row is None else dict(row._mapping)

    def list_order_intents(self, states: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Return intents oldest first, optionally only those in `states`."""
        stmt = order_intents.select().order_by(
            order_intents.c.created_at, order_intents.c.identifier
        )
        if states is not None:
            unknown = set(states) - INTENT_STATES
            if unknown:
                raise ValueError(f"unknown intent state(s) {sorted(unknown)}")
            stmt = stmt.where(order_intents.c.state.in_(sorted(states)))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def fills_for_order(self, identifier: str) -> list[dict[str, Any]]:
        """Return the fills recorded for one order, oldest first."""
        stmt = (
            fills.select()
            .where(fills.c.order_identifier == identifier)
            .order_by(fills.c.ts, fills.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    @staticmethod
    def _existing_fill_id(connection: sa.Connection, trade_uuid: str | None) -> int | None:
        """Return the id of the fill already recorded for `trade_uuid`, if any."""
        if not trade_uuid:
            return None
        found = connection.execute(
            sa.select(fills.c.id).where(fills.c.trade_uuid == trade_uuid)
        ).first()
        return None if found is None else int(found[0])


def _checked(row: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(row) - set(order_intents.c.keys()))
    if unknown:
        raise ValueError(f"unknown column(s) for order_intents: {', '.join(unknown)}")
    state = row.get("state")
    if state is not None and state not in INTENT_STATES:
        raise ValueError(
            f"order intent state must be one of {sorted(INTENT_STATES)}, got {state!r}"
        )
    return dict(row)
