"""Champion and challenger: judge a new model set against the one trading, and switch by hand.

`judge` runs both sets' policies over the most recent window neither has trained on
(`evaluation.promotion`), in the fast simulator with the service's settings; `judge_and_record`
applies the rule and writes the verdict and both results to the registry (`ml.champion`),
moving the champion pointer only when the challenger earned more after fees. `promote_by_hand`
and `rollback_by_hand` are `lxa models promote|rollback`: the pointer moves, and the journal
gets an event when one is configured. The engine picks a new champion up between bars
(`app.engine.models`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from app.settings import Settings
from app.simulation import prepare, simulation_settings
from app.training import HISTORY, warmed_start
from app.wiring import policy_params_from, resolve_model_dir
from evaluation.policy_result import evaluate
from evaluation.promotion import Promotion, decide, judging_start, too_short
from ml.champion import ModelRegistry
from ml.predict import Predictor
from ml.registry import read_meta
from store.journal import Journal

Log = Callable[[str], None]
JUDGING_SEEDS = 5  # random-entry baselines per judged set (figures only; they decide nothing)
PROMOTED_EVENT = "model_promoted"
ROLLBACK_EVENT = "model_rollback"
CANDIDATE_EVENT = "model_candidate"


def registry_for(settings: Settings) -> ModelRegistry:
    """The registry of the settings' models directory."""
    return ModelRegistry(settings.models_dir)


def _markets(candles: pd.DataFrame, settings: Settings) -> list[str]:
    present = {str(m) for m in pd.unique(candles["market"])}
    wanted = [m for m in settings.markets if m in present]
    return wanted or sorted(present)


def judge(
    champion_dir: Path,
    challenger_dir: Path,
    candles: pd.DataFrame,
    settings: Settings,
    *,
    min_gain: float = 0.0,
    seeds: int = JUDGING_SEEDS,
) -> Promotion:
    """Both policies on the newest window neither set trained on; the rule's verdict."""
    champion, challenger = Predictor.load(champion_dir), Predictor.load(challenger_dir)
    first = judging_start(champion.meta, challenger.meta)
    last = pd.Timestamp(candles["ts"].max()) if len(candles) else None
    short = too_short(first, last)
    if short is None:
        try:
            first = warmed_start(candles, first)
        except ValueError as exc:
            short = str(exc)
    if short is not None:
        return Promotion(False, f"not judged: {short}", {}, {})
    window = candles[candles["ts"] >= first - HISTORY].reset_index(drop=True)
    markets = _markets(window, settings)
    sim = simulation_settings(settings)
    results = []
    for predictor in (champion, challenger):
        prepared = prepare(window, predictor, settings, markets=markets, start=first)
        params = policy_params_from(settings, predictor.meta)
        results.append(evaluate(prepared, params, sim, seeds=seeds))
    return decide(champion.model_id, results[0], results[1], min_gain=min_gain)


def judge_and_record(
    registry: ModelRegistry,
    challenger_dir: Path,
    candles: pd.DataFrame,
    settings: Settings,
    *,
    champion_dir: Path | None = None,
    by: str = "retrain",
    min_gain: float = 0.0,
) -> Promotion:
    """Judge a challenger against the serving champion; promote it or keep it as a candidate.

    The verdict and both results go to the registry either way.
    """
    serving = champion_dir or resolve_model_dir(settings)
    if settings.model_dir is None:  # the set trading now stays champion unless beaten
        registry.adopt(serving, reason="the set trading when the first challenger was judged")
    challenger_id = str(read_meta(challenger_dir)["model_id"])
    promotion = judge(serving, challenger_dir, candles, settings, min_gain=min_gain)
    judged = {
        **promotion.to_json(),
        "champion_id": str(read_meta(serving)["model_id"]),
        "judged_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    if promotion.promote:
        registry.promote(
            challenger_id, by=by, reason=promotion.reason, judged=judged, serving=serving
        )
    else:
        registry.record(challenger_id, "candidate", promotion.reason, judged)
    return promotion


def has_journal(settings: Settings) -> bool:
    """Whether a journal is configured: a database URL, or the default SQLite journal exists."""
    return settings.database_url is not None or (settings.data_dir / "journal.db").is_file()


def journal_event(settings: Settings, kind: str, payload: Mapping[str, Any]) -> bool:
    """Record an event in the journal when one is configured; return whether it was written."""
    if not has_journal(settings):
        return False
    with Journal.open(settings.journal_url) as journal:
        journal.record_event(None, kind, dict(payload), datetime.now(UTC))
    return True


def promote_by_hand(settings: Settings, model_id: str, *, reason: str = "") -> dict[str, Any]:
    """`lxa models promote ID`: make a version the champion; return the pointer and the event."""
    registry = registry_for(settings)
    serving = None if registry.champion_dir() else resolve_model_dir(settings)
    pointer = registry.promote(
        model_id, by="operator", reason=reason or "promoted by hand", serving=serving
    )
    return _announce(settings, PROMOTED_EVENT, pointer)


def rollback_by_hand(
    settings: Settings, model_id: str | None = None, *, reason: str = ""
) -> dict[str, Any]:
    """`lxa models rollback [ID]`: back to the previous champion (or ID); return the pointer."""
    pointer = registry_for(settings).rollback(model_id, by="operator", reason=reason)
    return _announce(settings, ROLLBACK_EVENT, pointer)


def _announce(settings: Settings, kind: str, pointer: Mapping[str, Any]) -> dict[str, Any]:
    history = pointer.get("history") or []
    payload = {
        "model_id": pointer["model_id"],
        "previous": history[0].get("model_id") if history else None,
        "by": pointer.get("by"),
        "reason": pointer.get("reason"),
    }
    return {**payload, "event": kind, "journaled": journal_event(settings, kind, payload)}


def list_models(settings: Settings) -> dict[str, Any]:
    """`lxa models`: every version, the champion and the retrain's last run."""
    registry = registry_for(settings)
    versions = [v.to_json() for v in registry.versions()]
    champion = registry.read_champion()
    serving = registry.champion_id()
    if serving is None:
        try:
            serving = str(read_meta(resolve_model_dir(settings))["model_id"])
        except (RuntimeError, FileNotFoundError, ValueError):
            serving = None
    return {
        "models_dir": str(registry.models_dir),
        "champion": serving,
        "champion_pointer": {k: v for k, v in champion.items() if k != "history"} or None,
        "pinned": str(settings.model_dir) if settings.model_dir else None,
        "versions": versions,
        "retrain": registry.read_state(),
    }


def candle_sources(settings: Settings, extra: Sequence[Path] = ()) -> list[Path]:
    """What a retrain learns from: the base candles, then what `lxa record` wrote since."""
    sources = [*settings.retrain_candles, *extra]
    recorded = settings.data_dir / "ticks"
    if recorded.is_dir() and any(recorded.glob("bars/**/*.parquet")):
        sources.append(recorded)
    return list(dict.fromkeys(sources))
