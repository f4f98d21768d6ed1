"""Sample weights for retraining: the reviewers' record per period, times recency.

A reviewer's verdict is judged once its window has closed (`evaluation.outcomes`, written to
the journal's `outcomes` table): right when it agreed with a proposal that then paid after
fees, or vetoed one that would have lost; wrong otherwise. Time is cut into periods of
`period_minutes`; a period's score is (right - wrong) / (right + wrong) over the verdicts given
in it (0 with fewer than `min_verdicts`). A training row takes its period's factor:

- ``step``: `right_weight` when the score is positive, `wrong_weight` when negative, else 1;
- ``linear``: 1 + score * (right_weight - 1) for a positive score, 1 + |score| *
  (wrong_weight - 1) for a negative one (a period split half and half stays at 1);
- ``none``: 1 everywhere.

That factor is multiplied by a recency factor, 0.5 ** (age / half-life) with the age counted
back from the newest row (FreqAI's idea, with a half-life in days instead of a share of the
rows), and the product is scaled to a mean of 1 so LightGBM's leaf sizes keep their meaning.

No hindsight: only verdicts whose window closed by `known_at` count, and rows before
`frozen_before` (the training cutoff of the set being replaced) are weighted only with the
verdicts known at that cutoff, so what was learned after it never re-labels them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

WEIGHT_RULES = ("none", "step", "linear")
_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class WeightRule:
    """How verdicts and age become weights (LXA_RETRAIN_* settings)."""

    rule: str = "linear"
    right_weight: float = 1.5  # a period where every judged verdict was right
    wrong_weight: float = 0.5  # a period where every judged verdict was wrong
    period_minutes: int = 60
    min_verdicts: int = 1
    recency_half_life_days: float | None = None  # None: no recency weighting

    def check(self) -> None:
        """Raise ValueError naming the first field training cannot use."""
        if self.rule not in WEIGHT_RULES:
            raise ValueError(f"rule must be one of {WEIGHT_RULES}, got {self.rule!r}")
        if not self.right_weight >= 1:
            raise ValueError(f"right_weight must be >= 1, got {self.right_weight}")
        if not 0 < self.wrong_weight <= 1:
            raise ValueError(f"wrong_weight must be in (0, 1], got {self.wrong_weight}")
        if self.period_minutes < 1:
            raise ValueError(f"period_minutes must be >= 1, got {self.period_minutes}")
        if self.min_verdicts < 1:
            raise ValueError(f"min_verdicts must be >= 1, got {self.min_verdicts}")
        half_life = self.recency_half_life_days
        if half_life is not None and not half_life > 0:
            raise ValueError(f"recency_half_life_days must be > 0 or unset, got {half_life}")

    def to_json(self) -> dict[str, Any]:
        """The rule and its parameters as plain JSON."""
        return asdict(self)


@dataclass(frozen=True)
class JudgedVerdict:
    """One reviewer verdict with a known outcome: when given, when its window closed, right?"""

    bar_ts: datetime
    closes_at: datetime
    right: bool


def utc_ns(values: Any) -> np.ndarray:
    """Timestamps (aware, naive UTC, or datetime64) as int64 nanoseconds since the epoch, UTC."""
    return np.asarray(
        pd.DatetimeIndex(pd.to_datetime(np.asarray(values), utc=True)).as_unit("ns").asi8
    )


def _one_ns(value: datetime) -> int:
    return int(utc_ns([value])[0])


def period_scores(
    verdicts: Iterable[JudgedVerdict], rule: WeightRule, *, known_at: datetime
) -> dict[int, tuple[int, int]]:
    """Per period (`period_minutes` since the epoch): (right, wrong) known at `known_at`."""
    verdicts = list(verdicts)
    if not verdicts:
        return {}
    period = rule.period_minutes * 60 * 10**9
    bars = utc_ns([v.bar_ts for v in verdicts])
    closes = utc_ns([v.closes_at for v in verdicts])
    right = np.array([v.right for v in verdicts], dtype=bool)
    known = closes <= _one_ns(known_at)  # a window still open at `known_at` is unknown then
    keys, where = np.unique(bars[known] // period, return_inverse=True)
    rights = np.bincount(where, weights=right[known], minlength=len(keys))
    totals = np.bincount(where, minlength=len(keys))
    return {int(k): (int(r), int(t - r)) for k, r, t in zip(keys, rights, totals, strict=True)}


def _factor(score: float, rule: WeightRule) -> float:
    if rule.rule == "none" or score == 0:
        return 1.0
    if rule.rule == "step":
        return rule.right_weight if score > 0 else rule.wrong_weight
    if score > 0:
        return 1.0 + score * (rule.right_weight - 1.0)
    return 1.0 + (-score) * (rule.wrong_weight - 1.0)


def _factors_from(
    ts_ns: np.ndarray, counts: dict[int, tuple[int, int]], rule: WeightRule
) -> np.ndarray:
    out = np.ones(len(ts_ns))
    scored = {
        key: _factor((right - wrong) / (right + wrong), rule)
        for key, (right, wrong) in counts.items()
        if right + wrong >= rule.min_verdicts
    }
    if not scored or not len(ts_ns):
        return out
    periods = np.array(sorted(scored), dtype="int64")
    factors = np.array([scored[int(k)] for k in periods])
    keys = ts_ns // (rule.period_minutes * 60 * 10**9)
    index = np.minimum(np.searchsorted(periods, keys), len(periods) - 1)
    hit = periods[index] == keys
    out[hit] = factors[index[hit]]
    return out


def reviewer_factors(
    ts: Any,
    verdicts: Sequence[JudgedVerdict],
    rule: WeightRule,
    *,
    known_at: datetime,
    frozen_before: datetime | None = None,
) -> np.ndarray:
    """Each row's factor from its period's verdicts (see the module docstring)."""
    ts_ns = utc_ns(ts)
    out = _factors_from(ts_ns, period_scores(verdicts, rule, known_at=known_at), rule)
    if frozen_before is not None:
        frozen = min(_one_ns(frozen_before), _one_ns(known_at))
        before = ts_ns < frozen
        if before.any():
            as_then = period_scores(verdicts, rule, known_at=pd.Timestamp(frozen, tz="UTC"))
            out[before] = _factors_from(ts_ns[before], as_then, rule)
    return out


def recency_factors(ts: Any, half_life_days: float | None) -> np.ndarray:
    """0.5 ** (age / half-life), the age counted back from the newest row (1 when off)."""
    ts_ns = utc_ns(ts)
    if half_life_days is None or len(ts_ns) == 0:
        return np.ones(len(ts_ns))
    age_days = (ts_ns.max() - ts_ns) / _DAY_NS
    return np.asarray(0.5 ** (age_days / half_life_days), dtype="float64")


def training_weights(
    ts: Any,
    verdicts: Sequence[JudgedVerdict],
    rule: WeightRule,
    *,
    known_at: datetime,
    frozen_before: datetime | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Weights for rows at `ts` (mean 1) and the summary a model set records in its meta."""
    rule.check()
    reviewed = reviewer_factors(ts, verdicts, rule, known_at=known_at, frozen_before=frozen_before)
    combined = reviewed * recency_factors(ts, rule.recency_half_life_days)
    if len(combined):
        combined = combined / combined.mean()
    known = period_scores(verdicts, rule, known_at=known_at)
    summary: dict[str, Any] = {
        "rule": rule.rule,
        "params": rule.to_json(),
        "rows": len(combined),
        "mean": float(combined.mean()) if len(combined) else None,
        "min": float(combined.min()) if len(combined) else None,
        "max": float(combined.max()) if len(combined) else None,
        "up_weighted": int(np.count_nonzero(reviewed > 1.0)),
        "down_weighted": int(np.count_nonzero(reviewed < 1.0)),
        "verdicts_known": sum(r + w for r, w in known.values()),
        "periods_right": sum(1 for r, w in known.values() if r > w),
        "periods_wrong": sum(1 for r, w in known.values() if w > r),
        "known_at": pd.Timestamp(known_at).isoformat(),
        "frozen_before": None if frozen_before is None else pd.Timestamp(frozen_before).isoformat(),
        "normalised": "mean 1",
    }
    return combined, summary


@dataclass(frozen=True)
class TrainingWeights:
    """What a trainer needs to weight its rows: the judged verdicts, the rule, the cutoffs."""

    verdicts: tuple[JudgedVerdict, ...]
    rule: WeightRule
    known_at: datetime
    frozen_before: datetime | None = None

    def until(self, cutoff: datetime | None) -> TrainingWeights:
        """These weights as known at a training cutoff: nothing learned after it counts."""
        if cutoff is None or _one_ns(cutoff) >= _one_ns(self.known_at):
            return self
        return replace(self, known_at=pd.Timestamp(_one_ns(cutoff), tz="UTC").to_pydatetime())

    def weights(self, ts: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Weights for rows at `ts` and their summary (`training_weights`)."""
        return training_weights(
            ts,
            self.verdicts,
            self.rule,
            known_at=self.known_at,
            frozen_before=self.frozen_before,
        )
