"""Orders and their fills: written as the engine and the order manager see them, and read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.journal.base import (
    JournalTables,
    as_dicts,
    check_page,
    checked,
    equal_to,
    in_period,
    new_id,
    upsert,
)
from store.rows import FillRow, OrderRow
from store.schema import decisions, fills, orders, utc_now

__all__ = ["OrdersAndFills"]


def _fill_filters(
    *,
    session_id: str | None,
    since: datetime | None,
    until: datetime | None,
    market: str | None,
) -> list[sa.ColumnElement[bool]]:
    """Fills of a session's orders (order.run_id -> decision.session_id), period and market."""
    conditions: list[sa.ColumnElement[bool]] = []
    if session_id is not None:
        runs_in_session = sa.select(decisions.c.run_id).where(decisions.c.session_id == session_id)
        orders_in_session = sa.select(orders.c.identifier).where(
            orders.c.run_id.in_(runs_in_session)
        )
        conditions.append(fills.c.order_identifier.in_(orders_in_session))
    return [*conditions, *in_period(fills.c.ts, since, until), *equal_to(fills, market=market)]


def _existing_fill_id(connection: Connection, trade_uuid: str | None) -> int | None:
    """Return the id of the fill already recorded for `trade_uuid`, if any."""
    if not trade_uuid:
        return None
    found = connection.execute(
        sa.select(fills.c.id).where(fills.c.trade_uuid == trade_uuid)
    ).first()
    return None if found is None else int(found[0])


class OrdersAndFills(JournalTables):
    """Record orders and fills (a fill once per trade uuid); list, page and sum them."""

    # ---- orders -------------------------------------------------------------------------

    def record_order(self, row: OrderRow) -> None:
        """Insert an order, or update the given columns of the order with that identifier.

        `created_at` is kept from the first insert; `updated_at` defaults to now.
        """
        values = checked(orders, row)
        if "identifier" not in values:
            raise ValueError("order row needs an identifier")
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            upsert(connection, orders, "identifier", values, frozenset({"created_at"}))

    def list_orders(
        self,
        run_id: str | None = None,
        market: str | None = None,
        *,
        state: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return orders oldest first, optionally for one run, market or state."""
        stmt = (
            orders.select()
            .where(*equal_to(orders, run_id=run_id, market=market, state=state))
            .order_by(orders.c.created_at, orders.c.identifier)
        )
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def page_orders(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        run_id: str | None = None,
        market: str | None = None,
        state: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return one page of orders newest first, and how many match the filters."""
        check_page(limit, offset)
        conditions = equal_to(orders, run_id=run_id, market=market, state=state)
        stmt = (
            orders.select()
            .where(*conditions)
            .order_by(orders.c.created_at.desc(), orders.c.identifier.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(orders).where(*conditions)
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt)), int(connection.execute(count).scalar_one())

    # ---- fills --------------------------------------------------------------------------

    def record_fill(self, row: FillRow) -> int:
        """Insert one fill and return its id (a fill with a known `trade_uuid` is not re-added)."""
        with self.engine.begin() as connection:
            existing = _existing_fill_id(connection, row.get("trade_uuid"))
            if existing is not None:
                return existing
            result = connection.execute(fills.insert().values(**checked(fills, row)))
            return new_id(result)

    def list_fills(
        self,
        *,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        market: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return fills oldest first.

        `session_id` selects fills of orders placed by that session's runs (order.run_id ->
        decision.session_id); `since` is inclusive, `until` exclusive.
        """
        conditions = _fill_filters(session_id=session_id, since=since, until=until, market=market)
        return self._fills_where(*conditions)

    def total_fees(
        self,
        *,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        market: str | None = None,
    ) -> Decimal:
        """Sum the fees of the fills that `list_fills` would return with the same filters."""
        conditions = _fill_filters(session_id=session_id, since=since, until=until, market=market)
        stmt = sa.select(fills.c.fee).where(*conditions)
        with self.engine.connect() as connection:
            return sum((fee for (fee,) in connection.execute(stmt)), Decimal(0))

    def fills_for_run(self, run_id: str) -> list[dict[str, Any]]:
        """Return the fills of the orders a run placed, oldest first."""
        of_run = sa.select(orders.c.identifier).where(orders.c.run_id == run_id)
        return self._fills_where(fills.c.order_identifier.in_(of_run))

    def fills_for_order(self, identifier: str) -> list[dict[str, Any]]:
        """Return the fills recorded for one order, oldest first."""
        return self._fills_where(fills.c.order_identifier == identifier)

    def _fills_where(self, *conditions: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        stmt = fills.select().where(*conditions).order_by(fills.c.ts, fills.c.id)
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))
