"""The promotion rule on real candles: a challenger replaces the champion only when its policy
earns more after fees on the newest window neither set has trained on.

The sets are the bundled real model set and a degraded copy of it (`champion_kit.churning_set`:
a calibration that expects a gain at every bar, so its policy churns and pays fees). Which one
earns more on the window is measured by the simulator on the shared Upbit candles; the tests
check that the rule follows the measured figures, in both directions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from champion_kit import SHARED_1M, churning_set, copy_set

from app.models import judge_and_record, list_models, promote_by_hand, rollback_by_hand
from app.settings import Settings
from evaluation.promotion import seen_until
from ml.champion import ModelRegistry
from ml.data import load_candles
from ml.registry import read_meta
from store.journal import Journal

pytestmark = pytest.mark.skipif(not SHARED_1M.is_file(), reason="../shared/data is not here")


@pytest.fixture(scope="module")
def recent_candles() -> pd.DataFrame:
    """The last four days of the shared real Upbit 1m candles (2025-09-18..21), four markets."""
    candles = load_candles([SHARED_1M])
    return candles[candles["ts"] >= pd.Timestamp("2025-09-18T00:00Z")].reset_index(drop=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]


def _return(side: dict[str, object]) -> float:
    value = side["total_return"]
    assert isinstance(value, float)
    return value


def test_a_challenger_worse_on_the_recent_window_stays_a_candidate_with_the_reason(
    settings: Settings, recent_candles: pd.DataFrame
) -> None:
    registry = ModelRegistry(settings.models_dir)
    champion = copy_set(settings.models_dir, "champion-real")
    challenger = churning_set(settings.models_dir, "challenger-churning")
    registry.adopt(champion, reason="serving")

    promotion = judge_and_record(
        registry, challenger, recent_candles, settings, champion_dir=champion
    )

    assert _return(promotion.challenger) < _return(promotion.champion)  # measured, after fees
    assert promotion.promote is False
    assert registry.champion_id() == "champion-real"
    version = registry.version("challenger-churning")
    assert version.status == "candidate"
    assert version.reason is not None and version.reason.startswith("did not beat the champion")
    assert version.judged is not None
    assert version.judged["champion"]["window"] == version.judged["challenger"]["window"]
    first = pd.Timestamp(version.judged["challenger"]["window"]["first_ts"])
    assert first >= max(seen_until(read_meta(champion)), seen_until(read_meta(challenger)))


def test_a_challenger_better_on_the_recent_window_becomes_champion(
    settings: Settings, recent_candles: pd.DataFrame
) -> None:
    registry = ModelRegistry(settings.models_dir)
    champion = churning_set(settings.models_dir, "champion-churning")
    challenger = copy_set(settings.models_dir, "challenger-real")
    registry.adopt(champion, reason="serving")

    promotion = judge_and_record(
        registry, challenger, recent_candles, settings, champion_dir=champion
    )

    assert _return(promotion.challenger) > _return(promotion.champion)
    assert promotion.promote is True
    assert registry.champion_id() == "challenger-real"
    assert registry.version("champion-churning").status == "retired"
    judged = registry.version("challenger-real").judged
    assert judged is not None and judged["champion_id"] == "champion-churning"
    assert judged["champion"]["entries"] > 0  # the churner did trade: its fees were counted


def test_a_challenger_trained_up_to_the_end_is_not_judged_on_bars_it_saw(
    settings: Settings, recent_candles: pd.DataFrame
) -> None:
    registry = ModelRegistry(settings.models_dir)
    champion = copy_set(settings.models_dir, "champion-real")
    end = recent_candles["ts"].max().isoformat()
    challenger = copy_set(settings.models_dir, "challenger-saw-everything", until=end)

    promotion = judge_and_record(
        registry, challenger, recent_candles, settings, champion_dir=champion
    )

    assert promotion.promote is False
    assert promotion.reason.startswith("not judged:")
    assert registry.champion_id() == "champion-real"


def test_promote_and_rollback_by_hand_move_the_pointer_and_are_listed(
    settings: Settings,
) -> None:
    copy_set(settings.models_dir, "set-a")
    copy_set(settings.models_dir, "set-b")
    Journal.open(settings.journal_url).close()  # a journal is configured: the switches go in

    promoted = promote_by_hand(settings, "set-a", reason="the operator's choice")
    back = rollback_by_hand(settings)
    listing = list_models(settings)
    with Journal.open(settings.journal_url) as journal:
        promoted_event = journal.latest_event("model_promoted")
        rollback_event = journal.latest_event("model_rollback")

    assert promoted["model_id"] == "set-a" and promoted["journaled"] is True
    assert back["model_id"] == promoted["previous"]
    assert promoted_event is not None and promoted_event["payload"]["model_id"] == "set-a"
    assert promoted_event["payload"]["reason"] == "the operator's choice"
    assert rollback_event is not None and rollback_event["payload"]["model_id"] == "set-b"
    assert listing["champion"] == back["model_id"]
    assert {v["model_id"]: v["status"] for v in listing["versions"]}["set-a"] == "retired"
