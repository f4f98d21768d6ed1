"""GET /api/models (versions, the champion, promotion decisions) and GET /api/reviewers/record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_runs import decision_row

from api.app import create_app
from app.serve import ModelCatalog
from app.settings import Settings
from app.wiring import BUNDLED_MODELS
from ml.champion import ModelRegistry
from ml.registry import latest_model_dir
from store.bus import InProcessBus
from store.journal import Journal

CHALLENGER = {
    "window": {"first_ts": "2025-09-18T00:00:00+00:00", "last_ts": "2025-09-20T00:00:00+00:00"},
    "total_return": -0.0125,
    "entries": 4,
}
CHAMPION = {**CHALLENGER, "total_return": 0.003, "entries": 2}


def model_set(models_dir: Path, model_id: str, created_at: str) -> Path:
    """A copy of the bundled set's meta.json under another id (all the registry reads)."""
    bundled = latest_model_dir(BUNDLED_MODELS)
    assert bundled is not None
    meta = json.loads((bundled / "meta.json").read_text())
    meta.update(model_id=model_id, created_at=created_at)
    path = models_dir / model_id
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def registry_with_a_refused_challenger(models_dir: Path) -> ModelRegistry:
    """`old` promoted by hand, `new` promoted over it, then `late` judged and refused."""
    for model_id, created in (
        ("old", "2026-01-01T00:00:00Z"),
        ("new", "2026-02-01T00:00:00Z"),
        ("late", "2026-03-01T00:00:00Z"),
    ):
        model_set(models_dir, model_id, created)
    registry = ModelRegistry(models_dir)
    registry.promote("old", by="operator", reason="promoted by hand")
    registry.promote("new", by="retrain", reason="beat the champion: +0.300%")
    reason = "did not beat the champion: -1.250% (4 entries) against new's +0.300% (2 entries)"
    registry.record(
        "late",
        "candidate",
        reason,
        {"promote": False, "reason": reason, "champion": CHAMPION, "challenger": CHALLENGER},
    )
    return registry


def client_for(journal: Journal, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_models_list_versions_the_champion_and_the_promotion_decisions(
    journal: Journal, tmp_path: Path
) -> None:
    registry_with_a_refused_challenger(tmp_path / "models")
    journal.record_event(
        None,
        "model_promoted",
        {
            "model_id": "new",
            "by": "operator",
            "reason": "by hand",
            "history": [{"model_id": "old"}],
        },
        datetime(2026, 2, 2, tzinfo=UTC),
    )
    settings = Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path / "models")  # type: ignore[call-arg]
    async with client_for(journal, model_source=ModelCatalog(settings)) as client:
        body = (await client.get("/api/models")).json()

    assert body["available"] is True and body["champion"] == "new"
    assert body["champion_pointer"]["by"] == "retrain"
    versions = {v["model_id"]: v for v in body["versions"]}
    assert [v["model_id"] for v in body["versions"]] == ["late", "new", "old"]
    assert (versions["old"]["status"], versions["late"]["status"]) == ("retired", "candidate")
    assert versions["late"]["training_window"]["first_ts"] == "2025-09-01T00:00:00+00:00"
    assert versions["late"]["evaluation"]["window"]["bars"] == 3672
    assert [h["model_id"] for h in body["history"]] == ["old"]
    refused, by_hand = body["decisions"][0], body["decisions"][1]
    assert (refused["model_id"], refused["promote"], refused["kind"]) == ("late", False, "judged")
    assert refused["challenger"]["total_return"] == -0.0125
    assert refused["champion"]["total_return"] == 0.003
    assert refused["reason"].startswith("did not beat the champion")
    assert (by_hand["kind"], by_hand["model_id"], by_hand["previous"]) == (
        "model_promoted", "new", "old",
    )  # fmt: skip


async def test_models_say_so_when_no_registry_was_handed_in(journal: Journal) -> None:
    async with client_for(journal) as client:
        body = (await client.get("/api/models")).json()
    assert body["available"] is False and body["versions"] == []
    assert "no model registry" in body["note"]


async def test_a_damaged_registry_is_a_503_naming_the_file(
    journal: Journal, tmp_path: Path
) -> None:
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json")
    settings = Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path / "models")  # type: ignore[call-arg]
    async with client_for(journal, model_source=ModelCatalog(settings)) as client:
        response = await client.get("/api/models")
    assert response.status_code == 503
    assert "meta.json" in response.json()["detail"]


def proposal(
    run_id: str, minute: int, close: float, groq: str, ollama: str | None
) -> dict[str, Any]:
    verdicts: dict[str, Any] = {"groq": {"verdict": groq}}
    if ollama is not None:
        verdicts["ollama"] = {"verdict": ollama}
    return decision_row(
        run_id,
        minute,
        action="buy" if groq == "buy" and ollama != "hold" else "hold",
        market="KRW-BTC",
        reason="agreed",
        nodes={
            "input": {"closes": {"KRW-BTC": close}},
            "ml_signal": {
                "proposal": {"action": "buy", "market": "KRW-BTC"},
                "horizon_minutes": 10,
            },
        },
        verdicts=verdicts,
    )


async def test_the_record_counts_right_and_wrong_per_kst_day_and_waits_for_the_horizon(
    journal: Journal,
) -> None:
    base = decision_row("x", 0)["bar_ts"]
    # Minute 0: a buy both passed, the price 10 minutes later is 2% up: both right.
    journal.record_decision(proposal("up", 0, 100.0, "buy", "buy"))
    # Minute 5: Groq passed, Ollama vetoed; 10 minutes later 1% down: Groq wrong, Ollama right.
    journal.record_decision(proposal("down", 5, 100.0, "buy", "hold"))
    journal.record_decision(
        decision_row("c10", 10, nodes={"input": {"closes": {"KRW-BTC": 102.0}}})
    )
    journal.record_decision(decision_row("c15", 15, nodes={"input": {"closes": {"KRW-BTC": 99.0}}}))
    # Minute 20: its horizon has not passed: pending.
    journal.record_decision(proposal("open", 20, 99.0, "buy", None))
    # The outcome job's row wins over the closes (it judged Groq right on "down").
    journal.record_outcomes(
        [
            {
                "run_id": "down",
                "subject": "groq",
                "bar_ts": base + timedelta(minutes=5),
                "window_end": base + timedelta(minutes=16),
                "correct": True,
            }
        ]
    )
    async with client_for(journal) as client:
        body = (await client.get("/api/reviewers/record", params={"days": 7})).json()

    assert body["days"] == 7 and body["horizon_minutes"] == 10
    assert body["totals"]["groq"] == {"right": 2, "wrong": 0, "pending": 1, "accuracy": 1.0}
    assert body["totals"]["ollama"] == {"right": 2, "wrong": 0, "pending": 0, "accuracy": 1.0}
    assert (body["from_outcomes"], body["from_ledger"]) == (1, 3)
    assert len(body["series"]) == 1
    day = body["series"][0]
    kst_day = (base.astimezone(UTC) + timedelta(hours=9)).date().isoformat()
    assert day["day"] == kst_day
    assert day["reviewers"]["groq"]["right"] == 2


@pytest.mark.parametrize("params", [{"days": 0}, {"days": 367}, {"until": "soon"}])
async def test_a_bad_record_window_is_a_422(journal: Journal, params: dict[str, Any]) -> None:
    async with client_for(journal) as client:
        response = await client.get("/api/reviewers/record", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in response.text
