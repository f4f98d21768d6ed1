"""A model set older than LXA_MODEL_MAX_AGE_DAYS is flagged in `lxa status` (a warning line)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.settings import Settings
from app.status_text import model_age_days, model_age_warning, model_lines, model_warning
from app.wiring import model_status

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _status(created: datetime, max_age_days: float | None) -> dict[str, Any]:
    settings = Settings(_env_file=None, model_max_age_days=max_age_days)  # type: ignore[call-arg]
    meta = {
        "model_id": "set-x",
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "policy_evaluation": None,
    }
    return model_status(settings, meta)


def test_a_set_older_than_the_limit_gets_a_warning_line_naming_its_age() -> None:
    status = _status(NOW - timedelta(days=10), max_age_days=7)

    warning = model_age_warning(status, NOW)

    assert status["max_age_days"] == 7
    assert warning is not None and "stale model set-x: created 10.0 days ago" in warning
    assert round(model_age_days(status, NOW) or 0, 6) == 10.0
    assert any(line.strip().startswith("stale model set-x") for line in model_lines(status))


def test_a_young_set_or_no_limit_gives_no_age_warning() -> None:
    young = _status(NOW - timedelta(days=2), max_age_days=7)
    unlimited = _status(NOW - timedelta(days=400), max_age_days=None)

    assert model_age_warning(young, NOW) is None
    assert model_age_warning(unlimited, NOW) is None
    assert model_age_warning({}, NOW) is None


def test_a_stale_but_proven_set_still_warns() -> None:
    status = {**_status(datetime.now(UTC) - timedelta(days=30), 7), "proven": True}

    warning = model_warning(status)

    assert warning is not None and warning.startswith("stale model set-x")
