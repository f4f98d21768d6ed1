"""The retrain: a challenger trained on real candles is judged and recorded; in its own process,
a crash there (an exception, a kill) leaves the champion serving; the daily schedule runs once a
KST day, also across restarts (an injected clock; the scheduled job in those tests is a
stand-in that only counts its calls)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from champion_kit import SHARED_1M, copy_set

from app.retrain import (
    DailyRetrain,
    RetrainFailed,
    RetrainJob,
    daily_retrain,
    retrain_in_child,
    run_retrain,
)
from app.settings import Settings
from ml.champion import ModelRegistry
from ml.data import load_candles
from store.journal import Journal


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]


@pytest.fixture
def serving(settings: Settings) -> ModelRegistry:
    """A registry whose champion is a copy of the bundled real set."""
    registry = ModelRegistry(settings.models_dir)
    registry.adopt(copy_set(settings.models_dir, "champion-real"), reason="serving")
    return registry


def _sets(registry: ModelRegistry) -> list[str]:
    return sorted(v.model_id for v in registry.versions())


def test_a_retrain_that_raises_leaves_the_champion_serving(
    settings: Settings, serving: ModelRegistry, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    pointer = serving.champion_path.read_bytes()

    with pytest.raises(RetrainFailed, match="CandleFileError") as failed:
        retrain_in_child(RetrainJob(settings, (broken,)))

    assert "the champion is unchanged" in str(failed.value)
    assert serving.champion_path.read_bytes() == pointer
    assert _sets(serving) == ["champion-real"]


def test_a_killed_retrain_leaves_the_champion_serving(
    settings: Settings, serving: ModelRegistry
) -> None:
    pointer = serving.champion_path.read_bytes()

    def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    with pytest.raises(RetrainFailed, match="exit code -9"):
        retrain_in_child(RetrainJob(settings, (SHARED_1M,)), on_started=kill)

    assert serving.champion_path.read_bytes() == pointer
    assert serving.serving_dir() == (settings.models_dir / "champion-real").resolve()


@pytest.mark.skipif(not SHARED_1M.is_file(), reason="../shared/data is not here")
def test_a_retrain_trains_on_the_candles_judges_and_records_the_challenger(
    settings: Settings, serving: ModelRegistry, tmp_path: Path
) -> None:
    recent = tmp_path / "recent.parquet"
    candles = load_candles([SHARED_1M])
    candles[candles["ts"] >= pd.Timestamp("2025-09-19T00:00Z")].to_parquet(recent)

    Journal.open(settings.journal_url).close()  # a journal (no verdicts yet): weighted
    result = run_retrain(RetrainJob(settings, (recent,)))  # the child's work, run here

    challenger = serving.version(result["challenger"])
    assert result["champion_before"] == "champion-real"
    assert challenger.judged is not None
    mine, theirs = challenger.judged["challenger"], challenger.judged["champion"]
    assert mine["window"] == theirs["window"]
    assert pd.Timestamp(mine["window"]["first_ts"]) >= pd.Timestamp(str(challenger.until))
    beat = mine["total_return"] > theirs["total_return"]
    assert result["promoted"] is beat
    assert serving.champion_id() == (result["challenger"] if beat else "champion-real")
    assert not (settings.models_dir / ".retrain").exists()
    assert result["weighted"] is True
    assert challenger.weights is not None and challenger.weights["verdicts_known"] == 0


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _scheduler(registry: ModelRegistry, clock: Clock, calls: list[datetime]) -> DailyRetrain:
    async def job() -> dict[str, Any]:
        calls.append(clock())
        return {"promoted": False}

    return DailyRetrain(time(4, 0), registry, job, clock=clock)


async def test_the_daily_retrain_runs_once_a_kst_day_also_across_restarts(
    settings: Settings,
) -> None:
    registry = ModelRegistry(settings.models_dir)
    calls: list[datetime] = []
    clock = Clock(datetime(2026, 3, 1, 18, 59, tzinfo=UTC))  # 03:59 KST on 2 March
    scheduler = _scheduler(registry, clock, calls)

    assert await scheduler.tick() is None  # before 04:00 KST
    clock.now = datetime(2026, 3, 1, 19, 0, tzinfo=UTC)  # 04:00 KST
    first = await scheduler.tick()
    clock.now = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 08:00 KST, same day
    again = await scheduler.tick()
    restarted = _scheduler(registry, clock, calls)  # a new process, same registry
    after_restart = await restarted.tick()
    clock.now = datetime(2026, 3, 2, 19, 5, tzinfo=UTC)  # 04:05 KST the next day
    next_day = await restarted.tick()

    assert first is not None and first["last_run_kst_date"] == "2026-03-02"
    assert first["status"] == "done"
    assert again is None and after_restart is None
    assert next_day is not None and next_day["last_run_kst_date"] == "2026-03-03"
    assert len(calls) == 2
    assert registry.read_state()["last_run_kst_date"] == "2026-03-03"


async def test_a_failed_daily_retrain_is_recorded_and_not_retried_the_same_day(
    settings: Settings,
) -> None:
    registry = ModelRegistry(settings.models_dir)
    clock = Clock(datetime(2026, 3, 1, 20, 0, tzinfo=UTC))  # 05:00 KST
    seen: list[dict[str, Any]] = []

    async def failing() -> dict[str, Any]:
        raise RetrainFailed("the retraining process ended with exit code -9")

    scheduler = DailyRetrain(time(4, 0), registry, failing, clock=clock, on_done=seen.append)

    record = await scheduler.tick()
    retried = await scheduler.tick()

    assert record is not None and record["status"] == "failed"
    assert "exit code -9" in record["error"]
    assert seen == [record]
    assert retried is None


class RecordingOutbox:
    """Keeps what the service's outbox would journal, publish and alert."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.alerts: list[str] = []

    def record(self, run_id: str | None, kind: str, payload: dict[str, Any]) -> None:
        self.records.append((kind, payload))

    def publish(self, event: dict[str, Any]) -> None:
        pass

    def alert(self, kind: str, title: str, text: str) -> None:
        self.alerts.append(title)


async def test_the_service_reports_a_daily_retrain_that_could_not_run_and_goes_on(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"retrain_at_kst": "00:00"})  # always due
    outbox = RecordingOutbox()

    async with daily_retrain(settings, outbox) as scheduler:
        assert scheduler is not None
        await scheduler.tick()  # runs it, unless the service's own check already did
    async with daily_retrain(settings.model_copy(update={"retrain_at_kst": None}), outbox) as off:
        assert off is None

    assert [kind for kind, _ in outbox.records] == ["retrain"]
    payload = outbox.records[0][1]
    assert payload["status"] == "failed" and "LXA_RETRAIN_CANDLES" in payload["error"]
    assert outbox.alerts == ["daily retrain failed"]


def test_the_retrain_time_is_read_as_kst_hh_mm_and_a_bad_one_names_the_variable() -> None:
    from app.settings import SettingsError, load_settings

    assert load_settings(_env_file=None, retrain_at_kst="4:05").retrain_at_kst == "04:05"
    with pytest.raises(SettingsError, match="LXA_RETRAIN_AT_KST: not a time of day"):
        load_settings(_env_file=None, retrain_at_kst="25:00")
