"""GET /api/model: the model status the engine announced last; 404 before any engine started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from test_api_auth import TOKEN, client_for

from api.routes.model import NO_MODEL_STATUS
from store.journal import Journal

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def model_status(model_id: str, *, proven: bool, live: bool = False) -> dict[str, Any]:
    """A `model_status` payload as app.wiring `model_status` builds it."""
    return {
        "model_id": model_id,
        "proven": proven,
        "verdict": "its policy made +1.20% after fees on its hold-out window"
        if proven
        else "its policy made no trade on its hold-out window: no evidence of an edge",
        "live": live,
        "allow_unproven_model": False,
        "block_entries": live and not proven,
        "evaluation_window": {
            "first_ts": "2025-09-15T10:48:00+00:00",
            "last_ts": "2025-09-17T23:59:00+00:00",
            "bars": 3672,
            "markets": ["KRW-BTC", "KRW-ETH"],
        },
        "evaluation_return": 0.012 if proven else 0.0,
        "evaluation_entries": 4 if proven else 0,
        "buy_and_hold_return": 0.0194,
    }


async def test_model_status_before_any_engine_started_is_404_saying_so(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/model")

    assert response.status_code == 404
    assert response.json() == {"detail": NO_MODEL_STATUS}


async def test_model_status_is_the_newest_one_the_engine_announced(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.record_event(None, "model_status", model_status("old", proven=True), T0)
    newer = T0 + timedelta(hours=1)
    journal.record_event(None, "model_status", model_status("new", proven=False, live=True), newer)

    response = await client.get("/api/model")

    assert response.status_code == 200
    body = response.json()
    assert (body["model_id"], body["proven"], body["live"], body["block_entries"]) == (
        "new",
        False,
        True,
        True,
    )
    assert body["verdict"].startswith("its policy made no trade")
    assert body["recorded_at"] == "2026-12-01T10:00:00Z"
    assert body["evaluation_window"] == {
        "first_ts": "2025-09-15T10:48:00Z",
        "last_ts": "2025-09-17T23:59:00Z",
        "bars": 3672,
        "markets": ["KRW-BTC", "KRW-ETH"],
    }
    assert (body["evaluation_entries"], body["buy_and_hold_return"]) == (0, 0.0194)


async def test_model_status_without_an_evaluation_window_reads_null(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    status = {**model_status("bare", proven=False), "evaluation_window": None}
    status.update(evaluation_return=None, evaluation_entries=None, buy_and_hold_return=None)
    journal.record_event(None, "model_status", status, T0)

    body = (await client.get("/api/model")).json()

    assert body["evaluation_window"] is None
    assert body["evaluation_return"] is None


async def test_model_status_from_another_machine_needs_the_token(journal: Journal) -> None:
    journal.record_event(None, "model_status", model_status("m", proven=True), T0)

    async with client_for(journal, "10.0.0.7", reads_need_token=True) as remote:
        refused = await remote.get("/api/model")
        allowed = await remote.get("/api/model", headers={"Authorization": f"Bearer {TOKEN}"})

    assert refused.status_code == 401
    assert allowed.json()["model_id"] == "m"
