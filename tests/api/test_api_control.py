"""GET /api/trading-state (open), POST /api/halt and /api/resume (bearer token), bus events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.app import create_app
from store.bus import InProcessBus
from store.journal import Journal

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def guarded_client(journal: Journal, bus: InProcessBus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(journal=journal, bus=bus, api_token=TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def next_event(bus: InProcessBus, after_seq: int) -> dict[str, Any]:
    events = bus.subscribe(after_seq)
    try:
        return await asyncio.wait_for(anext(events), timeout=5)
    finally:
        await events.aclose()


async def test_trading_state_reads_active_before_anyone_set_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/trading-state")

    assert response.status_code == 200
    assert response.json() == {
        "state": "active",
        "reason": "",
        "flatten_requested": False,
        "updated_at": None,
        "updated_by": None,
        "effective_state": "active",
        "effective_reason": "",
        "entries_allowed": True,
        "monthly": None,
        "daily": None,
    }


@pytest.mark.parametrize("path", ["/api/halt", "/api/resume"])
async def test_changes_are_forbidden_when_no_token_is_configured(
    client: httpx.AsyncClient, journal: Journal, path: str
) -> None:
    response = await client.post(path, json={"reason": "x"}, headers=AUTH)

    assert response.status_code == 403
    assert journal.read_trading_control()["updated_by"] is None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
@pytest.mark.parametrize("path", ["/api/halt", "/api/resume"])
async def test_changes_without_the_right_token_are_unauthorized(
    guarded_client: httpx.AsyncClient, journal: Journal, path: str, headers: dict[str, str]
) -> None:
    response = await guarded_client.post(path, json={"reason": "x"}, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert journal.read_trading_control()["updated_by"] is None


async def test_halt_with_the_token_writes_the_journal_and_publishes(
    guarded_client: httpx.AsyncClient, journal: Journal, bus: InProcessBus
) -> None:
    seq = bus.last_seq

    response = await guarded_client.post(
        "/api/halt", json={"reason": "market crash", "flatten": True}, headers=AUTH
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["reason"], body["flatten_requested"], body["updated_by"]) == (
        "halted",
        "market crash",
        True,
        "api",
    )
    assert (await guarded_client.get("/api/trading-state")).json() == body
    assert journal.read_trading_control()["state"] == "halted"
    event = await next_event(bus, seq)
    assert event["type"] == "trading_state"
    assert (event["state"], event["reason"], event["flatten_requested"]) == (
        "halted",
        "market crash",
        True,
    )
    assert event["updated_at"] == body["updated_at"]


async def test_resume_after_halt_reads_back_active(
    guarded_client: httpx.AsyncClient, bus: InProcessBus
) -> None:
    await guarded_client.post("/api/halt", json={"reason": "pause"}, headers=AUTH)
    seq = bus.last_seq

    response = await guarded_client.post("/api/resume", json={"reason": "ok again"}, headers=AUTH)

    assert response.status_code == 200
    state = (await guarded_client.get("/api/trading-state")).json()
    assert (state["state"], state["reason"], state["flatten_requested"]) == (
        "active",
        "ok again",
        False,
    )
    assert (await next_event(bus, seq))["state"] == "active"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/halt", {}, "reason"),
        ("/api/halt", {"reason": ""}, "reason"),
        ("/api/halt", {"reason": "x" * 201}, "reason"),
        ("/api/halt", {"reason": "x", "flatten": "maybe"}, "flatten"),
        ("/api/halt", {"reason": "x", "flaten": True}, "flaten"),
        ("/api/resume", {}, "reason"),
        ("/api/resume", {"reason": 5}, "reason"),
    ],
)
async def test_bad_bodies_answer_422_naming_the_field(
    guarded_client: httpx.AsyncClient,
    journal: Journal,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await guarded_client.post(path, json=body, headers=AUTH)

    assert response.status_code == 422
    assert field in [error["loc"][-1] for error in response.json()["detail"]]
    assert journal.read_trading_control()["updated_by"] is None


# ---- the loss limits and the model status in the trading state -----------------------------

BREACH_REASON = (
    "monthly loss cap: -3.2% since 2026-12 began at 1000000 (cap 3.0%); entries resume next "
    "month or on `lxa resume`"
)


def monthly_figures(*, breached: bool, seen_at: datetime | None = None) -> dict[str, Any]:
    """The figures the engine writes for the monthly cap (app.engine `_save_monthly`)."""
    return {
        "month": "2026-12",
        "start_equity": "1000000",
        "last_equity": "968000" if breached else "990000",
        "loss_pct": 3.2 if breached else 1.0,
        "cap_pct": 3.0,
        "breached": breached,
        "reason": BREACH_REASON if breached else None,
        "breached_at": "2026-12-14T03:21:00+00:00" if breached else None,
        "seen_at": None if seen_at is None else seen_at.isoformat(),
    }


class FakeEngine:
    """An engine as the API sees it, with a breached daily loss limit."""

    async def account(self) -> dict[str, Any]:
        return {"krw": Decimal(0), "equity": Decimal(0), "balances": [], "positions": {}}

    def watchdog_state(self) -> dict[str, Any]:
        return {"enabled": False, "config": {}, "exchange_healthy": True, "cooldowns": {}}

    def daily_limit(self) -> dict[str, Any]:
        return {
            "trading_day": "2026-12-14",
            "start_equity": "1000000",
            "last_equity": "965000",
            "loss_pct": 3.5,
            "limit_pct": 3.0,
            "breached": True,
        }


async def test_a_breached_monthly_cap_makes_the_effective_state_reducing_with_its_figures(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.write_loss_limit("monthly", monthly_figures(breached=True, seen_at=datetime.now(UTC)))

    body = (await client.get("/api/trading-state")).json()

    assert (body["state"], body["effective_state"], body["entries_allowed"]) == (
        "active",
        "reducing",
        False,
    )
    assert body["effective_reason"] == BREACH_REASON
    monthly = body["monthly"]
    assert (monthly["month"], monthly["start_equity"], monthly["last_equity"]) == (
        "2026-12",
        "1000000",
        "968000",
    )
    assert (monthly["loss_pct"], monthly["cap_pct"], monthly["breached"]) == (3.2, 3.0, True)
    assert monthly["reason"] == BREACH_REASON
    assert monthly["breached_at"] == "2026-12-14T03:21:00Z"
    assert monthly["clears_on"] == "2027-01-01"
    assert monthly["resume_pending"] is False
    assert "2027-01-01" in monthly["how_to_clear"]
    assert "lxa resume" in monthly["how_to_clear"]


async def test_a_monthly_cap_within_its_limit_leaves_trading_active(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.write_loss_limit("monthly", monthly_figures(breached=False))

    body = (await client.get("/api/trading-state")).json()

    assert (body["effective_state"], body["effective_reason"], body["entries_allowed"]) == (
        "active",
        "",
        True,
    )
    assert (body["monthly"]["loss_pct"], body["monthly"]["breached"]) == (1.0, False)
    assert (body["monthly"]["reason"], body["monthly"]["how_to_clear"]) == (None, None)


async def test_a_halt_wins_over_a_breached_monthly_cap(
    guarded_client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.write_loss_limit("monthly", monthly_figures(breached=True, seen_at=datetime.now(UTC)))

    body = (await guarded_client.post("/api/halt", json={"reason": "storm"}, headers=AUTH)).json()

    assert (body["effective_state"], body["effective_reason"]) == ("halted", "storm")
    assert body["monthly"]["breached"] is True


async def test_a_resume_after_a_monthly_breach_is_shown_pending_and_published(
    guarded_client: httpx.AsyncClient, journal: Journal, bus: InProcessBus
) -> None:
    seen_before = datetime.now(UTC) - timedelta(minutes=5)
    journal.write_loss_limit("monthly", monthly_figures(breached=True, seen_at=seen_before))
    seq = bus.last_seq

    body = (
        await guarded_client.post("/api/resume", json={"reason": "reviewed"}, headers=AUTH)
    ).json()

    assert body["monthly"]["resume_pending"] is True
    assert "next bar" in body["monthly"]["how_to_clear"]
    assert body["effective_state"] == "reducing"  # until the engine clears it
    event = await next_event(bus, seq)
    assert event["type"] == "trading_state"
    assert event["monthly"]["resume_pending"] is True


async def test_a_resume_written_before_the_breach_does_not_clear_it(
    guarded_client: httpx.AsyncClient, journal: Journal
) -> None:
    await guarded_client.post("/api/resume", json={"reason": "earlier"}, headers=AUTH)
    seen_after = datetime.now(UTC) + timedelta(minutes=5)
    journal.write_loss_limit("monthly", monthly_figures(breached=True, seen_at=seen_after))

    body = (await guarded_client.get("/api/trading-state")).json()

    assert body["monthly"]["resume_pending"] is False
    assert "2027-01-01" in body["monthly"]["how_to_clear"]


async def test_the_running_engines_daily_limit_is_shown_and_makes_the_state_reducing(
    journal: Journal, bus: InProcessBus
) -> None:
    app = create_app(journal=journal, bus=bus, account_source=FakeEngine())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        body = (await http.get("/api/trading-state")).json()

    assert (body["effective_state"], body["entries_allowed"]) == ("reducing", False)
    assert body["effective_reason"].startswith("daily loss limit: -3.50% today (limit 3.0%)")
    assert body["daily"] == {
        "trading_day": "2026-12-14",
        "start_equity": "1000000",
        "last_equity": "965000",
        "loss_pct": 3.5,
        "limit_pct": 3.0,
        "breached": True,
    }


@pytest.mark.parametrize(("block_entries", "allowed"), [(True, False), (False, True)])
async def test_an_unproven_model_refuses_entries_only_when_it_blocks_them(
    client: httpx.AsyncClient, journal: Journal, block_entries: bool, allowed: bool
) -> None:
    status = {
        "model_id": "lgbm-quick-x",
        "proven": False,
        "verdict": "its policy made no trade on its hold-out window: no evidence of an edge",
        "live": block_entries,
        "allow_unproven_model": False,
        "block_entries": block_entries,
    }
    journal.record_event(None, "model_status", status, datetime.now(UTC))

    body = (await client.get("/api/trading-state")).json()

    assert (body["effective_state"], body["entries_allowed"]) == ("active", allowed)
    if block_entries:
        assert body["effective_reason"].startswith("unproven model: its policy made no trade")
        assert "--allow-unproven-model" in body["effective_reason"]
    else:
        assert body["effective_reason"] == ""
