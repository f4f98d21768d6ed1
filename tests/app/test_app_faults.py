"""What is worth waiting out, and journal writes kept while the database is away."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc
from alert_server import AlertServer
from pydantic import SecretStr

from app.engine.faults import DeferredWrites, is_transient, source_of
from app.settings import Settings
from app.wiring import open_services
from exchange.ratelimit import ExchangeBlocked
from exchange.types import ExchangeError


def database_down() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_the_exchange_and_the_database_failing_are_transient_a_block_and_bugs_are_not() -> None:
    assert is_transient(ExchangeError("500")) and source_of(ExchangeError("500")) == "exchange"
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    assert is_transient(database_down()) and source_of(database_down()) == "database"
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(ExchangeBlocked("418", group="order"))
    assert not is_transient(KeyError("decision"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")))


def test_writes_wait_in_order_while_the_database_is_away_and_land_once_it_is_back() -> None:
    written: list[str] = []
    up = {"db": False}

    def write(name: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            if not up["db"]:
                raise database_down()
            written.append(name)

        return run

    deferred = DeferredWrites()
    assert deferred.run("a", write("a")) is False
    assert deferred.run("b", write("b")) is False
    assert not deferred.flush() and written == []
    up["db"] = True
    assert deferred.run("c", write("c")) is True  # the kept ones go first, in order
    assert written == ["a", "b", "c"] and deferred.pending == []


def test_a_write_that_fails_for_another_reason_is_raised_not_kept() -> None:
    deferred = DeferredWrites()

    def broken() -> None:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        deferred.run("x", broken)
    assert deferred.pending == []


async def test_a_fatal_error_inside_the_services_is_alerted_before_they_close(
    settings: Settings, tmp_path: Path
) -> None:
    with AlertServer() as server:
        settings = settings.model_copy(
            update={"slack_webhook_url": SecretStr(server.url("/slack/hook"))}
        )
        with pytest.raises(RuntimeError, match="feed died"):
            async with open_services(settings, session_id="x", account_path=tmp_path / "a.json"):
                raise RuntimeError("feed died")
        texts = [p.json["text"] for p in server.posts("/slack/hook")]

    assert any("lxa stopped" in t and "RuntimeError: feed died" in t for t in texts), texts
