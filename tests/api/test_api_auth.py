"""Who may do what: changes need the bearer token; reads are open on localhost only."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import TOKEN_MISSING, TOKEN_WRONG, is_loopback
from store.bus import InProcessBus
from store.journal import Journal

TOKEN = "tok-8f2c4e1b9d0a7f3e"


def client_for(journal: Journal, client_host: str, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), api_token=TOKEN, **kwargs)
    transport = httpx.ASGITransport(app=app, client=(client_host, 50123))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, TOKEN_MISSING), ({"Authorization": "Bearer nope"}, TOKEN_WRONG)],
    ids=["missing", "wrong"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/runs", {}),
        ("POST", "/api/runs/r1/replay", {}),
        ("POST", "/api/halt", {"reason": "x"}),
        ("POST", "/api/resume", {"reason": "x"}),
        ("POST", "/api/positions/KRW-BTC/sell", {}),
        ("PUT", "/api/prompts/groq_check", {"text": "x"}),
        ("POST", "/api/prompts/groq_check/rollback", {"version_id": 1}),
    ],
)
async def test_every_change_without_the_right_token_is_401_with_a_message(
    journal: Journal,
    headers: dict[str, str],
    message: str,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    async with client_for(journal, "127.0.0.1") as client:
        response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": message}
    assert journal.read_trading_control()["updated_by"] is None


async def test_reads_from_another_machine_need_the_token_when_bound_beyond_localhost(
    journal: Journal,
) -> None:
    async with client_for(journal, "10.0.0.7", reads_need_token=True) as remote:
        refused = await remote.get("/api/runs")
        allowed = await remote.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        refused_stream = await remote.get("/api/stream")
    async with client_for(journal, "127.0.0.1", reads_need_token=True) as local:
        local_read = await local.get("/api/runs")

    assert (refused.status_code, refused.json()) == (401, {"detail": TOKEN_MISSING})
    assert allowed.status_code == 200
    assert refused_stream.status_code == 401
    assert local_read.status_code == 200


def test_reads_need_token_without_a_token_is_refused_at_build_time(journal: Journal) -> None:
    with pytest.raises(ValueError, match="needs an api_token"):
        create_app(journal=journal, bus=InProcessBus(), reads_need_token=True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("10.0.0.7", False), (None, False)],
)
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_no_response_ever_contains_the_token(journal: Journal) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with client_for(journal, "127.0.0.1") as client:
        schema = (await client.get("/openapi.json")).json()
        paths = [
            path
            for path, item in schema["paths"].items()
            if "get" in item and "{" not in path and not path.endswith("stream")
        ]
        bodies = [(await client.get(path, headers=auth)).text for path in paths]
        bodies.append((await client.post("/api/auth/check", headers=auth)).text)
        bodies.append((await client.get("/docs")).text)
        bodies.append((await client.post("/api/halt", json={"reason": "test"}, headers=auth)).text)

    assert len(paths) >= 12
    assert all(TOKEN not in body for body in bodies)
    assert all(not re.search(r"api_token|groq_api_key|slack_webhook", b) for b in bodies)
