"""GET /api/model flags a model set older than LXA_MODEL_MAX_AGE_DAYS as stale, with its age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from test_api_model import model_status

from store.journal import Journal


def _aged(days: float, max_age_days: float | None) -> dict[str, object]:
    created = datetime.now(UTC) - timedelta(days=days)
    return {
        **model_status("set-x", proven=True),
        "created_at": created.isoformat(),
        "max_age_days": max_age_days,
    }


async def test_a_set_older_than_the_limit_is_stale_with_its_age(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.record_event(None, "model_status", _aged(10, 7), datetime.now(UTC))

    body = (await client.get("/api/model")).json()

    assert body["stale"] is True
    assert 9.99 < body["age_days"] < 10.01
    assert body["max_age_days"] == 7


async def test_a_young_set_or_no_limit_is_not_stale(
    client: httpx.AsyncClient, journal: Journal
) -> None:
    journal.record_event(None, "model_status", _aged(2, 7), datetime.now(UTC))
    young = (await client.get("/api/model")).json()
    journal.record_event(None, "model_status", _aged(400, None), datetime.now(UTC))
    unlimited = (await client.get("/api/model")).json()

    assert (young["stale"], unlimited["stale"]) == (False, False)
    assert unlimited["age_days"] > 399
