"""GET /api/trading-state (open), POST /api/halt and /api/resume (bearer token), bus events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
