"""The running engine takes up a new champion between two bars, with no bar missed, and every
decision records the model set it used. Driven over the bundled real candles, like the other
engine tests; the two sets are renamed copies of the bundled set (`champion_kit`)."""

from __future__ import annotations

import json
from pathlib import Path

from champion_kit import copy_set

from app.models import promote_by_hand
from app.settings import Settings
from app.wiring import open_services
from exchange.feed import BarClose
from ml.champion import ModelRegistry
from ml.features import WARMUP_BARS


def _registry_settings(settings: Settings) -> Settings:
    """The engine fixture's settings, following the registry instead of a pinned set."""
    return settings.model_copy(update={"model_dir": None})


async def test_the_engine_switches_to_a_promoted_champion_between_two_bars(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = _registry_settings(settings)
    old = copy_set(settings.models_dir, "set-old")
    copy_set(settings.models_dir, "set-new", created_at="2000-01-01T00:00:00Z")
    ModelRegistry(settings.models_dir).adopt(old, reason="serving")
    closes = bundled_closes[: WARMUP_BARS + 6]
    async with open_services(
        settings, session_id="sw", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(closes[:WARMUP_BARS])
        before = [await engine.on_bar_close(c) for c in closes[WARMUP_BARS : WARMUP_BARS + 3]]
        promote_by_hand(settings, "set-new", reason="test")
        after = [await engine.on_bar_close(c) for c in closes[WARMUP_BARS + 3 :]]

        rows = list(reversed(services.journal.list_decisions(session_id="sw", limit=100)))
        status = services.journal.latest_event("model_status")

    assert len(before) + len(after) == len(rows) == 6
    assert [r["run_id"] for r in rows] == [engine.run_id_for(c.ts) for c in closes[WARMUP_BARS:]]
    assert [r["ml"]["model_id"] for r in rows] == ["set-old"] * 3 + ["set-new"] * 3
    assert status is not None
    assert status["payload"]["model_id"] == "set-new"
    assert status["payload"]["switched_from"] == "set-old"


async def test_a_pinned_model_dir_is_never_switched_and_a_broken_champion_is_not_taken(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    pinned = settings
    async with open_services(
        pinned, session_id="pin", account_path=tmp_path / "a.json"
    ) as services:
        assert services.engine.models is None

    settings = _registry_settings(settings)
    old = copy_set(settings.models_dir, "set-old")
    broken = copy_set(settings.models_dir, "set-broken")
    (broken / "model_buy.txt").write_text("not a LightGBM model\n")
    registry = ModelRegistry(settings.models_dir)
    registry.adopt(old, reason="serving")
    closes = bundled_closes[: WARMUP_BARS + 2]
    async with open_services(
        settings, session_id="br", account_path=tmp_path / "b.json"
    ) as services:
        engine = services.engine
        engine.warm_up(closes[:WARMUP_BARS])
        registry.promote("set-broken", by="operator", reason="test")
        results = [await engine.on_bar_close(c) for c in closes[WARMUP_BARS:]]
        rows = services.journal.list_decisions(session_id="br", limit=10)

    assert len(results) == len(rows) == 2
    assert {r["ml"]["model_id"] for r in rows} == {"set-old"}
    pointer = json.loads((settings.models_dir / "champion.json").read_text())
    assert pointer["model_id"] == "set-broken"  # the pointer moved; the engine kept trading
