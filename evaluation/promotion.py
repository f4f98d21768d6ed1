"""The promotion rule: a challenger replaces the champion only if it earns more, after fees, on
the most recent window neither has trained on.

Both sets trade the same window in the fast simulator with the same policy settings (each with
its own label horizon); the window starts where the later of the two stopped learning
(`seen_until`) and runs to the newest candle. A tie (most often: neither trades) keeps the
champion. `app.models` runs it; this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

MIN_JUDGING_MINUTES = 240  # a shorter unseen window decides nothing: the champion stays


def seen_until(meta: Mapping[str, Any]) -> pd.Timestamp:
    """The first time a set never learned from: its training cutoff (``until``), else the end of
    its training window plus the label horizon (the labels looked that far ahead)."""
    until = meta.get("until")
    if until:
        return pd.Timestamp(until).tz_convert("UTC")
    window = meta.get("training_window") or {}
    lasts = [pd.Timestamp(span["last_ts"]) for span in window.values() if span.get("last_ts")]
    if not lasts:
        raise ValueError(f"model set {meta.get('model_id')} records no training window")
    horizon = int((meta.get("label") or {}).get("horizon", 10))
    return (max(lasts) + pd.Timedelta(minutes=horizon + 1)).tz_convert("UTC")


def judging_start(champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> pd.Timestamp:
    """Where the window neither set has trained on begins."""
    return max(seen_until(champion), seen_until(challenger))


def result_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a policy result the registry keeps (`evaluation.policy_result.evaluate`)."""
    strategy = result.get("strategy") or {}
    return {
        "window": result.get("window"),
        "total_return": strategy.get("total_return"),
        "entries": strategy.get("entries"),
        "round_trips": strategy.get("round_trips"),
        "fees": strategy.get("fees"),
        "max_drawdown": strategy.get("max_drawdown"),
        "sharpe": strategy.get("sharpe"),
        "win_rate": strategy.get("win_rate"),
        "buy_and_hold_return": result.get("buy_and_hold_return"),
    }


@dataclass(frozen=True)
class Promotion:
    """The rule's answer, with the figures it was given."""

    promote: bool
    reason: str
    champion: dict[str, Any]
    challenger: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """What the registry records for the challenger."""
        return {
            "promote": self.promote,
            "reason": self.reason,
            "champion": self.champion,
            "challenger": self.challenger,
        }


def decide(
    champion_id: str,
    champion_result: Mapping[str, Any],
    challenger_result: Mapping[str, Any],
    *,
    min_gain: float = 0.0,
) -> Promotion:
    """Promote when the challenger's return after fees beats the champion's by more than
    `min_gain` (a fraction of capital) on the same window."""
    mine, theirs = result_summary(challenger_result), result_summary(champion_result)
    if mine["window"] != theirs["window"]:
        raise ValueError("the champion and the challenger must be judged on the same window")
    ours, best = float(mine["total_return"] or 0.0), float(theirs["total_return"] or 0.0)
    figures = (
        f"{ours * 100:+.3f}% ({mine['entries']} entries) against {champion_id}'s "
        f"{best * 100:+.3f}% ({theirs['entries']} entries) after fees"
    )
    window = mine["window"] or {}
    where = f" on {window.get('first_ts')} .. {window.get('last_ts')}"
    if ours > best + min_gain:
        return Promotion(True, f"beat the champion: {figures}{where}", theirs, mine)
    verdict = "did not beat the champion" if min_gain <= 0 else f"gain below {min_gain * 100:g}%"
    return Promotion(False, f"{verdict}: {figures}{where}", theirs, mine)


def too_short(first: pd.Timestamp, last: pd.Timestamp | None) -> str | None:
    """Why a judging window from `first` to `last` decides nothing, or None when long enough."""
    if last is None or last < first:
        return f"no candle after {first.isoformat()} that neither set has trained on"
    minutes = (last - first).total_seconds() / 60
    if minutes < MIN_JUDGING_MINUTES:
        return (
            f"only {minutes:.0f} unseen minutes after {first.isoformat()} "
            f"(at least {MIN_JUDGING_MINUTES} are needed to judge)"
        )
    return None


__all__ = [
    "MIN_JUDGING_MINUTES",
    "Promotion",
    "decide",
    "judging_start",
    "result_summary",
    "seen_until",
    "too_short",
]
