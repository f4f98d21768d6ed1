"""Past decisions for people: listed, counted, hold reasons, and the equity and price lines."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables, as_dicts, check_page, equal_to, in_period
from store.schema import decisions

__all__ = ["RunHistory"]


def _decision_filters(
    *,
    market: str | None = None,
    action: str | None = None,
    session_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[sa.ColumnElement[bool]]:
    """Decisions of a market, action and session, with `since <= bar_ts < until`."""
    return [
        *equal_to(decisions, market=market, action=action, session_id=session_id),
        *in_period(decisions.c.bar_ts, since, until),
    ]


class RunHistory(JournalTables):
    """Read the decisions the viewer, the API and `lxa status` show."""

    def list_decisions(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        market: str | None = None,
        action: str | None = None,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Return decisions newest first (by `bar_ts`); `since` is inclusive, `until` exclusive."""
        check_page(limit, offset)
        conditions = _decision_filters(
            market=market, action=action, session_id=session_id, since=since, until=until
        )
        stmt = (
            decisions.select()
            .where(*conditions)
            .order_by(
                decisions.c.bar_ts.desc(), decisions.c.created_at.desc(), decisions.c.run_id.desc()
            )
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def count_decisions(
        self,
        session_id: str | None = None,
        *,
        market: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Count decisions matching the same filters as `list_decisions`."""
        conditions = _decision_filters(
            market=market, action=action, session_id=session_id, since=since, until=until
        )
        stmt = sa.select(sa.func.count()).select_from(decisions).where(*conditions)
        with self.engine.connect() as connection:
            return int(connection.execute(stmt).scalar_one())

    def hold_reasons(self, session_id: str | None = None) -> dict[str, int]:
        """Count `hold` decisions by reason, most frequent first."""
        count = sa.func.count().label("count")
        stmt = (
            sa.select(decisions.c.reason, count)
            .where(*_decision_filters(action="hold", session_id=session_id))
            .group_by(decisions.c.reason)
            .order_by(count.desc(), decisions.c.reason)
        )
        with self.engine.connect() as connection:
            return {reason: int(n) for reason, n in connection.execute(stmt)}

    def equity_history(
        self,
        session_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Return (run_id, bar_ts, account, closes) of a session's decisions, oldest first.

        The account and closes are what each run was given (`nodes.input`).
        """
        conditions = _decision_filters(session_id=session_id, since=since, until=until)
        stmt = (
            sa.select(decisions.c.run_id, decisions.c.bar_ts, decisions.c.nodes)
            .where(*conditions)
            .order_by(decisions.c.bar_ts, decisions.c.created_at, decisions.c.run_id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(stmt).all()
        history = []
        for run_id, bar_ts, nodes_json in rows:
            given = (nodes_json or {}).get("input") or {}
            history.append(
                {
                    "run_id": run_id,
                    "bar_ts": bar_ts,
                    "account": given.get("account") or {},
                    "closes": given.get("closes") or {},
                }
            )
        return history

    def price_history(
        self,
        market: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 2_000,
    ) -> list[dict[str, Any]]:
        """Return (bar_ts, close) of a market per bar, the newest `limit`, oldest first.

        The closes are what each run was given (`nodes.input.closes`); runs on the same bar
        (a manual run beside the bar run, or another session) give one point, the bar run's.
        Runs whose close is missing or not a positive finite number are skipped.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        conditions = _decision_filters(since=since, until=until)
        bar_first = sa.case((decisions.c.trigger == "bar", 0), else_=1)
        stmt = (
            sa.select(decisions.c.bar_ts, decisions.c.nodes)
            .where(*conditions)
            .order_by(
                decisions.c.bar_ts.desc(),
                bar_first,
                decisions.c.created_at.desc(),
                decisions.c.run_id.desc(),
            )
            .execution_options(yield_per=500)
        )
        points: list[dict[str, Any]] = []
        seen: set[datetime] = set()
        with self.engine.connect() as connection:
            for bar_ts, nodes_json in connection.execute(stmt):
                if len(points) >= limit:
                    break
                if bar_ts in seen:
                    continue
                close = _given_close(nodes_json, market)
                if close is None:
                    continue
                seen.add(bar_ts)
                points.append({"bar_ts": bar_ts, "close": close})
        points.reverse()
        return points


def _given_close(nodes_json: Any, market: str) -> int | float | str | None:
    """The close of `market` a run was given, as stored; None unless a positive finite number."""
    given = (nodes_json or {}).get("input") or {}
    closes = given.get("closes") if isinstance(given, dict) else None
    close = closes.get(market) if isinstance(closes, dict) else None
    if isinstance(close, bool) or not isinstance(close, int | float | str):
        return None
    try:
        value = float(close)
    except ValueError:
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return close
