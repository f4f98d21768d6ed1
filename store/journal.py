"""The journal: decisions, LLM calls, orders, fills, positions and events in SQLite or Postgres."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from store import schema
from store.driver import DriverInsert, DriverSelectOne, driver_cursor, supports
from store.order_intents import OrderIntents
from store.schema import (
    decisions,
    events,
    fills,
    llm_cache,
    llm_calls,
    loss_limits,
    orders,
    positions,
    prompt_versions,
    trading_control,
    utc_now,
)

__all__ = [
    "MIGRATIONS_DIR",
    "Journal",
    "JournalResponseCache",
    "alembic_config",
    "json_default",
    "normalise_url",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

TRADING_STATES = frozenset({"active", "reducing", "halted"})
TRADING_CONTROL_WRITERS = frozenset({"cli", "api", "engine"})
_CONTROL_ROW_ID = 1

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_SCHEMES = {"postgres", "postgresql"}
# Any constant works: it only serialises concurrent `Journal.open` calls on one Postgres database.
_MIGRATION_LOCK_KEY = 0x4C5841_5354


def normalise_url(url: str | URL) -> URL:
    """Parse a journal URL; Postgres URLs get the psycopg 3 driver.

    Raises ValueError naming the scheme when it is neither SQLite nor PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r}") from exc
    scheme = parsed.drivername
    if scheme in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+pysqlite")
    if scheme.split("+", 1)[0] in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported journal URL scheme {scheme!r}: use sqlite:///path.db or postgresql://..."
    )


def json_default(value: Any) -> Any:
    """Encode the non-JSON values the journal and the event stream carry (Decimal, datetime)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite_only(value: Any) -> Any:
    """Replace NaN and infinities (not JSON; PostgreSQL refuses them) with null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_only(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(item) for item in value]
    return value


def _json_dumps(value: Any) -> str:
    try:  # the usual case, all finite: the same text without first copying the value
        return json.dumps(value, default=json_default, ensure_ascii=False, allow_nan=False)
    except ValueError:
        pass
    return json.dumps(
        _finite_only(value), default=json_default, ensure_ascii=False, allow_nan=False
    )


def _create_engine(url: URL) -> Engine:
    if url.drivername.startswith("sqlite"):
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory:
            engine = sa.create_engine(
                url,
                json_serializer=_json_dumps,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, json_serializer=_json_dumps)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=30000")
            finally:
                cursor.close()

        return engine
    return sa.create_engine(url, json_serializer=_json_dumps, pool_pre_ping=True)


def alembic_config() -> Config:
    """Return an Alembic config for the store migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the journal schema to `revision` in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _checked(table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"unknown column(s) for {table.name}: {', '.join(unknown)}")
    return dict(row)


def _as_dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None or key[0] is None:  # pragma: no cover - both backends report the new id
        raise RuntimeError("the database did not report the new row's id")
    return int(key[0])


def _upsert(
    connection: Connection,
    table: sa.Table,
    key: str,
    values: dict[str, Any],
    keep_on_update: frozenset[str],
) -> None:
    """Update the given columns of the row with `values[key]`, or insert it when missing.

    A partial row can update an existing one; inserting needs every NOT NULL column. The
    insert still carries ON CONFLICT so that a concurrent insert of the same key updates.
    """
    updates = {name: value for name, value in values.items() if name != key}
    updates = {name: value for name, value in updates.items() if name not in keep_on_update}
    if updates:
        result = connection.execute(
            table.update().where(table.c[key] == values[key]).values(**updates)
        )
        if result.rowcount:
            return
    dialect = connection.dialect.name
    insert: Any
    if dialect == "sqlite":
        insert = sqlite.insert(table)
    elif dialect == "postgresql":
        insert = postgresql.insert(table)
    else:  # pragma: no cover - normalise_url admits only these two
        raise ValueError(f"unsupported dialect {dialect!r}")
    stmt = insert.values(**values)
    if updates:
        excluded = {name: stmt.excluded[name] for name in updates}
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=excluded)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[key]])
    connection.execute(stmt)


# Inserts run with their rows as parameters, not `.values(...)`: compiled once, then cached.
_INSERT_DECISION = decisions.insert()
_INSERT_LLM_CALL = llm_calls.insert()
_INSERT_EVENT = events.insert()
_INSERT_EVENTS_RETURNING_IDS = events.insert().returning(events.c.id, sort_by_parameter_order=True)


class Journal(OrderIntents):
    """Record and query what the trader decided and did (sync, over a SQLAlchemy Engine)."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose database is already migrated; prefer `Journal.open`."""
        self.engine = engine
        # The per-bar statements (store.driver) go to SQLite's driver directly.
        self._driver = supports(engine)
        self._driver_inserts: dict[tuple[str, frozenset[str]], DriverInsert | None] = {}
        self._control_select = (
            DriverSelectOne(trading_control, "id", engine.dialect) if self._driver else None
        )

    @classmethod
    def open(cls, url: str) -> Journal:
        """Connect to `url`, run `alembic upgrade head`, and return the journal.

        Accepts `sqlite:///path.db` (parent folders are created; WAL is enabled),
        `sqlite://` (in memory) and `postgresql://` / `postgresql+psycopg://` URLs.
        """
        engine = _create_engine(normalise_url(url))
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.close_claims()
        self.engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- writes -------------------------------------------------------------------------

    def record_decision(self, row: Mapping[str, Any]) -> None:
        """Insert one decision; keys are column names."""
        with self.engine.begin() as connection:
            connection.execute(decisions.insert().values(**_checked(decisions, row)))

    def record_llm_call(self, row: Mapping[str, Any]) -> int:
        """Insert one LLM call and return its id."""
        with self.engine.begin() as connection:
            return self._insert_llm_call(connection, _checked(llm_calls, row))

    def record_order(self, row: Mapping[str, Any]) -> None:
        """Insert an order, or update the given columns of the order with that identifier.

        `created_at` is kept from the first insert; `updated_at` defaults to now.
        """
        values = _checked(orders, row)
        if "identifier" not in values:
            raise ValueError("order row needs an identifier")
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            _upsert(connection, orders, "identifier", values, frozenset({"created_at"}))

    def record_fill(self, row: Mapping[str, Any]) -> int:
        """Insert one fill and return its id (a fill with a known `trade_uuid` is not re-added)."""
        with self.engine.begin() as connection:
            existing = self._existing_fill_id(connection, row.get("trade_uuid"))
            if existing is not None:
                return existing
            result = connection.execute(fills.insert().values(**_checked(fills, row)))
            return _new_id(result)

    def upsert_position(self, row: Mapping[str, Any]) -> None:
        """Insert or update the position for `row["market"]`.

        `opened_at` is kept from the first insert; `updated_at` defaults to now.
        """
        values = _checked(positions, row)
        if "market" not in values:
            raise ValueError("position row needs a market")
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            _upsert(connection, positions, "market", values, frozenset({"opened_at"}))

    def delete_position(self, market: str) -> bool:
        """Delete the position for `market`; return whether there was one."""
        with self.engine.begin() as connection:
            result = connection.execute(positions.delete().where(positions.c.market == market))
            return bool(result.rowcount)

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
            return self._insert_event(connection, values)

    def record_run(
        self,
        decision: Mapping[str, Any],
        llm_calls: Sequence[Mapping[str, Any]] = (),
        events: Sequence[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Write a decision with its LLM calls and events in one transaction; return event ids.

        LLM call and event rows without a `run_id` get the decision's.
        """
        decision_values = _checked(decisions, decision)
        run_id = decision_values.get("run_id")
        call_rows = [_checked(schema.llm_calls, {"run_id": run_id, **c}) for c in llm_calls]
        event_rows = [_checked(schema.events, {"run_id": run_id, **e}) for e in events]
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
                self._insert_llm_call(connection, call)
            return self._insert_events(connection, event_rows)

    @staticmethod
    def _insert_llm_call(connection: Connection, values: dict[str, Any]) -> int:
        return _new_id(connection.execute(_INSERT_LLM_CALL, values))

    @staticmethod
    def _insert_event(connection: Connection, values: dict[str, Any]) -> int:
        return _new_id(connection.execute(_INSERT_EVENT, values))

    def _driver_plan(
        self, rows: Sequence[tuple[sa.Table, Mapping[str, Any]]]
    ) -> list[DriverInsert] | None:
        """The driver-level insert of each row, or None when any must go through Core."""
        if not self._driver:
            return None
        plan = []
        for table, row in rows:
            key = (table.name, frozenset(row))
            if key not in self._driver_inserts:
                self._driver_inserts[key] = DriverInsert.compile(table, key[1], self.engine.dialect)
            statement = self._driver_inserts[key]
            if statement is None:
                return None
            plan.append(statement)
        return plan

    @classmethod
    def _insert_events(cls, connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert events in order and return their ids: one statement when the rows agree."""
        if len(rows) < 2 or len({frozenset(row) for row in rows}) > 1:
            return [cls._insert_event(connection, row) for row in rows]
        result = connection.execute(_INSERT_EVENTS_RETURNING_IDS, rows)
        return [int(new_id) for new_id in result.scalars()]

    # ---- queries ------------------------------------------------------------------------

    def get_decision(self, run_id: str) -> dict[str, Any] | None:
        """Return one decision with its `llm_calls`, `orders` and `events` lists, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(decisions.select().where(decisions.c.run_id == run_id)).first()
            if row is None:
                return None
            decision = dict(row._mapping)
            decision["llm_calls"] = _as_dicts(
                connection.execute(
                    llm_calls.select().where(llm_calls.c.run_id == run_id).order_by(llm_calls.c.id)
                )
            )
            decision["orders"] = _as_dicts(
                connection.execute(
                    orders.select()
                    .where(orders.c.run_id == run_id)
                    .order_by(orders.c.created_at, orders.c.identifier)
                )
            )
            decision["events"] = _as_dicts(
                connection.execute(
                    events.select().where(events.c.run_id == run_id).order_by(events.c.id)
                )
            )
            return decision

    @staticmethod
    def _decision_filters(
        *,
        market: str | None = None,
        action: str | None = None,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if market is not None:
            conditions.append(decisions.c.market == market)
        if action is not None:
            conditions.append(decisions.c.action == action)
        if session_id is not None:
            conditions.append(decisions.c.session_id == session_id)
        if since is not None:
            conditions.append(decisions.c.bar_ts >= since)
        if until is not None:
            conditions.append(decisions.c.bar_ts < until)
        return conditions

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
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        conditions = self._decision_filters(
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
            return _as_dicts(connection.execute(stmt))

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
        conditions = self._decision_filters(
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
            .where(decisions.c.action == "hold")
            .group_by(decisions.c.reason)
            .order_by(count.desc(), decisions.c.reason)
        )
        if session_id is not None:
            stmt = stmt.where(decisions.c.session_id == session_id)
        with self.engine.connect() as connection:
            return {reason: int(n) for reason, n in connection.execute(stmt)}

    def list_orders(
        self,
        run_id: str | None = None,
        market: str | None = None,
        *,
        state: str | None = None,
    ) -> list[dict[str, Any]]:
        """Return orders oldest first, optionally for one run, market or state."""
        stmt = orders.select().order_by(orders.c.created_at, orders.c.identifier)
        if run_id is not None:
            stmt = stmt.where(orders.c.run_id == run_id)
        if market is not None:
            stmt = stmt.where(orders.c.market == market)
        if state is not None:
            stmt = stmt.where(orders.c.state == state)
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt))

    @staticmethod
    def _order_filters(
        run_id: str | None, market: str | None, state: str | None
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if run_id is not None:
            conditions.append(orders.c.run_id == run_id)
        if market is not None:
            conditions.append(orders.c.market == market)
        if state is not None:
            conditions.append(orders.c.state == state)
        return conditions

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
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
        conditions = self._order_filters(run_id, market, state)
        stmt = (
            orders.select()
            .where(*conditions)
            .order_by(orders.c.created_at.desc(), orders.c.identifier.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(orders).where(*conditions)
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt)), int(connection.execute(count).scalar_one())

    def fills_for_run(self, run_id: str) -> list[dict[str, Any]]:
        """Return the fills of the orders a run placed, oldest first."""
        of_run = sa.select(orders.c.identifier).where(orders.c.run_id == run_id)
        stmt = (
            fills.select()
            .where(fills.c.order_identifier.in_(of_run))
            .order_by(fills.c.ts, fills.c.id)
        )
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt))

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

    def events_of_type(
        self, types: Sequence[str], *, limit: int = 100, market: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the newest events of the given types, newest first (optionally one market)."""
        stmt = events.select().where(events.c.type.in_(list(types)))
        stmt = stmt.order_by(events.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = _as_dicts(connection.execute(stmt))
        if market is not None:
            rows = [r for r in rows if (r["payload"] or {}).get("market") == market]
        return rows

    def latest_event(self, type: str) -> dict[str, Any] | None:
        """Return the newest event of `type` (id, run_id, type, ts, payload), or None."""
        rows = self.events_of_type([type], limit=1)
        return rows[0] if rows else None

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
        conditions = self._decision_filters(session_id=session_id, since=since, until=until)
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
        conditions = self._decision_filters(since=since, until=until)
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
                given = (nodes_json or {}).get("input") or {}
                closes = given.get("closes") if isinstance(given, dict) else None
                close = closes.get(market) if isinstance(closes, dict) else None
                if isinstance(close, bool) or not isinstance(close, int | float | str):
                    continue
                try:
                    value = float(close)
                except ValueError:
                    continue
                if not math.isfinite(value) or value <= 0:
                    continue
                seen.add(bar_ts)
                points.append({"bar_ts": bar_ts, "close": close})
        points.reverse()
        return points

    def latest_session_id(self) -> str | None:
        """Return the session of the newest decision, or None."""
        stmt = (
            sa.select(decisions.c.session_id)
            .order_by(decisions.c.created_at.desc(), decisions.c.run_id.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    # ---- prompt versions ----------------------------------------------------------------

    def record_prompt_version(
        self,
        name: str,
        sha256: str,
        text: str,
        *,
        created_by: str,
        message: str = "",
        previous_sha256: str | None = None,
        diff: str = "",
    ) -> dict[str, Any]:
        """Append one prompt version and return it."""
        values = {
            "name": name,
            "sha256": sha256,
            "text": text,
            "created_at": utc_now(),
            "created_by": created_by,
            "message": message,
            "previous_sha256": previous_sha256,
            "diff": diff,
        }
        with self.engine.begin() as connection:
            new_id = _new_id(connection.execute(prompt_versions.insert().values(**values)))
        return {"id": new_id, **values}

    def prompt_versions(self, name: str, *, with_text: bool = False) -> list[dict[str, Any]]:
        """Return a prompt's versions newest first (texts only when asked)."""
        columns = [c for c in prompt_versions.c if with_text or c.name != "text"]
        stmt = (
            sa.select(*columns)
            .where(prompt_versions.c.name == name)
            .order_by(prompt_versions.c.id.desc())
        )
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt))

    def prompt_version(self, version_id: int) -> dict[str, Any] | None:
        """Return one prompt version with its text, or None."""
        stmt = prompt_versions.select().where(prompt_versions.c.id == version_id)
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return None if row is None else dict(row._mapping)

    @staticmethod
    def _fill_filters(
        *,
        session_id: str | None,
        since: datetime | None,
        until: datetime | None,
        market: str | None,
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if session_id is not None:
            runs_in_session = sa.select(decisions.c.run_id).where(
                decisions.c.session_id == session_id
            )
            orders_in_session = sa.select(orders.c.identifier).where(
                orders.c.run_id.in_(runs_in_session)
            )
            conditions.append(fills.c.order_identifier.in_(orders_in_session))
        if since is not None:
            conditions.append(fills.c.ts >= since)
        if until is not None:
            conditions.append(fills.c.ts < until)
        if market is not None:
            conditions.append(fills.c.market == market)
        return conditions

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
        conditions = self._fill_filters(
            session_id=session_id, since=since, until=until, market=market
        )
        stmt = fills.select().where(*conditions).order_by(fills.c.ts, fills.c.id)
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt))

    def total_fees(
        self,
        *,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        market: str | None = None,
    ) -> Decimal:
        """Sum the fees of the fills that `list_fills` would return with the same filters."""
        conditions = self._fill_filters(
            session_id=session_id, since=since, until=until, market=market
        )
        stmt = sa.select(fills.c.fee).where(*conditions)
        with self.engine.connect() as connection:
            return sum((fee for (fee,) in connection.execute(stmt)), Decimal(0))

    def positions(self) -> dict[str, dict[str, Any]]:
        """Return the open positions keyed by market."""
        with self.engine.connect() as connection:
            rows = _as_dicts(connection.execute(positions.select().order_by(positions.c.market)))
        return {row["market"]: row for row in rows}

    def events_after(self, event_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Return up to `limit` events with id > `event_id`, oldest first."""
        stmt = events.select().where(events.c.id > event_id).order_by(events.c.id).limit(limit)
        with self.engine.connect() as connection:
            return _as_dicts(connection.execute(stmt))

    # ---- engine restart support ---------------------------------------------------------

    def first_bar_ts(self, session_id: str) -> datetime | None:
        """Return the earliest bar a session decided on, or None."""
        stmt = sa.select(sa.func.min(decisions.c.bar_ts)).where(
            decisions.c.session_id == session_id, decisions.c.trigger == "bar"
        )
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    def last_bar_ts(self, session_id: str) -> datetime | None:
        """Return the latest bar a session decided on, or None."""
        stmt = sa.select(sa.func.max(decisions.c.bar_ts)).where(
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

    def recent_results(self, limit: int = 20) -> list[float]:
        """Return the returns of the last closed positions, oldest first."""
        stmt = (
            sa.select(events.c.payload)
            .where(events.c.type == "position_closed")
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            payloads = [payload for (payload,) in connection.execute(stmt)]
        return [float(p["return"]) for p in reversed(payloads) if p and "return" in p]

    # ---- LLM response cache -------------------------------------------------------------

    def cached_response(self, key: str) -> dict[str, Any] | None:
        """Return a stored LLM answer by its cache key, or None."""
        stmt = sa.select(llm_cache.c.response).where(llm_cache.c.key == key)
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    def store_response(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an LLM answer under its cache key (the first answer stored wins)."""
        row = {
            "key": key,
            "provider": str(value.get("provider", "")),
            "model": str(value.get("model", "")),
            "prompt_ref": str(value.get("prompt_ref", "")),
            "created_at": utc_now(),
            "response": dict(value),
        }
        with self.engine.begin() as connection:
            exists = connection.execute(
                sa.select(llm_cache.c.key).where(llm_cache.c.key == key)
            ).first()
            if exists is None:
                connection.execute(llm_cache.insert().values(**row))

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
            _upsert(connection, loss_limits, "name", values, frozenset())

    # ---- trading control (halt, resume, flatten) ----------------------------------------

    @staticmethod
    def _control_row(connection: Connection) -> dict[str, Any] | None:
        row = connection.execute(
            trading_control.select().where(trading_control.c.id == _CONTROL_ROW_ID)
        ).first()
        if row is None:
            return None
        values = dict(row._mapping)
        del values["id"]
        return values

    def read_trading_control(self) -> dict[str, Any]:
        """Return the operator's trading state: state, reason, flatten_requested, updated_*.

        Before anyone wrote one: active, no reason, `updated_at` and `updated_by` None.
        """
        if self._control_select is not None:  # the engine reads it at every bar close
            with driver_cursor(self.engine) as cursor:
                row = self._control_select.fetch(cursor, _CONTROL_ROW_ID)
            if row is not None:
                del row["id"]
        else:
            with self.engine.connect() as connection:
                row = self._control_row(connection)
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
    ) -> dict[str, Any]:
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
            previous = self._control_row(connection)
            pending = bool(previous and previous["flatten_requested"])
            values = {
                "id": _CONTROL_ROW_ID,
                "state": state,
                "reason": reason,
                "flatten_requested": flatten or (pending and state == "halted"),
                "updated_at": now,
                "updated_by": by,
            }
            _upsert(connection, trading_control, "id", values, frozenset())
            row = self._control_row(connection)
            assert row is not None
            self._insert_event(
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
            row = self._control_row(connection)
            assert row is not None
            self._insert_event(
                connection,
                {
                    "run_id": None,
                    "type": "trading_state",
                    "ts": now,
                    "payload": {**row, "previous_state": row["state"], "flattened": True},
                },
            )
        return True


class JournalResponseCache:
    """The LLM response cache kept in the journal database (survives restarts)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored answer or None."""
        return self._journal.cached_response(key)

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an answer."""
        self._journal.store_response(key, value)
