"""Look-ahead check: features, model probabilities and labels recomputed on truncated data.

In the spirit of freqtrade's ``lookahead-analysis``. Per market, ``cut_points`` cut times are
picked among the market's real bars (one at random in each of ``cut_points`` equal slices of
the data, seeded). For each cut, everything after it is removed from the raw candles, the
rest is regularized again and the features (and, with a predictor, P(buy) and P(sell)) are
recomputed. Every row up to the cut must equal the full-data computation: a difference
larger than ``tolerance * max(1, |full value|)`` (NaN equal to NaN) is a look-ahead leak.

Labels look ahead by design, so they are checked the other way round: computed on the
truncated data, a label must be missing (NA) wherever fewer than ``horizon`` bars of its
segment follow it there, and a label that is present must equal the full-data label. The
full data itself is checked the same way (a label never reaches past its segment).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ml.data import BAR, SEGMENT_GAP, regularize
from ml.features import compute_features
from ml.labels import make_labels

if TYPE_CHECKING:
    from ml.predict import Predictor

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]
LABEL_COLUMNS: tuple[str, ...] = ("label_buy", "label_sell", "forward_return")
PROBABILITY_NAMES: tuple[str, ...] = ("p_buy", "p_sell")
DEFAULT_HORIZON = 10


class LabelFn(Protocol):
    """A label maker with the signature of ``ml.labels.make_labels``."""

    def __call__(self, frame: pd.DataFrame, /, *, horizon: int) -> pd.DataFrame:
        """Return LABEL_COLUMNS indexed like the input."""
        ...


@dataclass(frozen=True)
class Example:
    """The first row where a check failed."""

    market: str
    ts: pd.Timestamp
    cut: pd.Timestamp | None  # None: the check ran on the full data
    full_value: float | None
    truncated_value: float | None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict (NaN as None, times as ISO strings)."""
        return {
            "market": self.market,
            "ts": self.ts.isoformat(),
            "cut": None if self.cut is None else self.cut.isoformat(),
            "full_value": _json_float(self.full_value),
            "truncated_value": _json_float(self.truncated_value),
        }


@dataclass
class ColumnCheck:
    """How one feature, probability or label column fared across all cuts."""

    name: str
    kind: str  # "feature", "probability", "label" or "bars"
    compared: int = 0
    differing: int = 0
    first: Example | None = None

    @property
    def ok(self) -> bool:
        """Return True when no row differed."""
        return self.differing == 0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "compared": self.compared,
            "differing": self.differing,
            "first": None if self.first is None else self.first.to_json(),
        }


@dataclass
class LookaheadReport:
    """Outcome of ``check_lookahead``: one ColumnCheck per column, and what was compared."""

    markets: list[str]
    cut_points: int
    cuts: dict[str, list[pd.Timestamp]]
    horizon: int
    tolerance: float
    model_id: str | None
    rows_compared: int = 0
    label_rows_checked: int = 0
    checks: list[ColumnCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True when no column leaked."""
        return all(check.ok for check in self.checks)

    @property
    def leaks(self) -> list[ColumnCheck]:
        """Return the columns with at least one differing row."""
        return [check for check in self.checks if not check.ok]

    def check(self, name: str) -> ColumnCheck:
        """Return the check of the column ``name``."""
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "ok": self.ok,
            "markets": self.markets,
            "cut_points": self.cut_points,
            "cuts": {m: [ts.isoformat() for ts in cuts] for m, cuts in self.cuts.items()},
            "horizon": self.horizon,
            "tolerance": self.tolerance,
            "model_id": self.model_id,
            "rows_compared": self.rows_compared,
            "label_rows_checked": self.label_rows_checked,
            "leaks": [check.name for check in self.leaks],
            "checks": [check.to_json() for check in self.checks],
        }


def _json_float(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def _differs(full: np.ndarray, truncated: np.ndarray, tolerance: float) -> np.ndarray:
    """Return a bool mask of rows (per column) where the two values differ."""
    with np.errstate(invalid="ignore"):
        close = np.abs(full - truncated) <= tolerance * np.maximum(1.0, np.abs(full))
    same = close | (full == truncated) | (np.isnan(full) & np.isnan(truncated))
    return ~same


def _record(
    check: ColumnCheck,
    bad: np.ndarray,
    *,
    market: str,
    ts: np.ndarray,
    cut: pd.Timestamp | None,
    full: np.ndarray,
    truncated: np.ndarray,
) -> None:
    """Add one comparison's counts (and its first bad row, if the first) to ``check``."""
    check.compared += len(bad)
    count = int(bad.sum())
    if not count:
        return
    check.differing += count
    if check.first is None:
        i = int(np.flatnonzero(bad)[0])
        check.first = Example(
            market=market,
            ts=pd.Timestamp(ts[i], tz="UTC"),
            cut=cut,
            full_value=float(full[i]),
            truncated_value=float(truncated[i]),
        )


def _as_float(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Return the columns as a float64 matrix, NA as NaN."""
    if not columns:
        return np.empty((len(frame), 0))
    return np.column_stack(
        [frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in columns]
    ).reshape(len(frame), len(columns))


def _probabilities(predictor: Predictor, features: pd.DataFrame, bars: pd.DataFrame) -> np.ndarray:
    """Return P(buy), P(sell) per row (NaN where every model feature is missing).

    Goes through the predictor's batch path (``score_frames``), which a full model set needs
    for its bar sequences; ``bars`` gives the rows' ts and segment.
    """
    names = list(predictor.feature_names)
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise ValueError(f"the feature function gives no {missing} (the model needs them)")
    frame = features.copy()
    frame["ts"] = bars["ts"].to_numpy()
    frame["segment"] = bars["segment"].to_numpy()
    return predictor.score_frames({"market": frame})["market"]


def _followers(segment: np.ndarray) -> np.ndarray:
    """Return, per row, how many bars of its segment follow it."""
    n = len(segment)
    if n == 0:
        return np.empty(0, dtype="int64")
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    ends = np.concatenate([boundaries, [n]])
    lengths = np.diff(np.concatenate([[0], ends]))
    segment_end = np.repeat(ends, lengths)
    return segment_end - 1 - np.arange(n)


def _pick_cuts(real_ts: np.ndarray, cut_points: int, seed: int, market: str) -> np.ndarray:
    """Pick up to ``cut_points`` bar times, one at random per equal slice (not the last bar)."""
    candidates = real_ts[:-1]
    if len(candidates) == 0 or cut_points < 1:
        return candidates[:0]
    rng = np.random.default_rng([seed, zlib.crc32(market.encode())])
    edges = np.linspace(0, len(candidates), min(cut_points, len(candidates)) + 1).astype(int)
    picks = [int(rng.integers(lo, hi)) for lo, hi in itertools.pairwise(edges)]
    return np.asarray(candidates[np.unique(picks)])


def check_lookahead(
    candles: pd.DataFrame,
    *,
    predictor: Predictor | None = None,
    cut_points: int = 20,
    seed: int = 0,
    feature_fn: FeatureFn = compute_features,
    label_fn: LabelFn = make_labels,
    horizon: int | None = None,
    tolerance: float = 1e-12,
    bar: pd.Timedelta = BAR,
    max_gap: pd.Timedelta = SEGMENT_GAP,
) -> LookaheadReport:
    """Recompute features, probabilities and labels on data truncated at cut times.

    ``candles`` holds one or more markets in the shared schema (``ml.data.load_candles``).
    ``horizon`` defaults to the predictor's label horizon, else 10 bars.
    """
    if cut_points < 1:
        raise ValueError(f"cut_points must be at least 1, got {cut_points}")
    if horizon is None:
        label_meta = (predictor.meta.get("label") or {}) if predictor is not None else {}
        horizon = int(label_meta.get("horizon", DEFAULT_HORIZON))
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    markets = sorted(str(m) for m in pd.unique(candles["market"]))
    report = LookaheadReport(
        markets=markets,
        cut_points=cut_points,
        cuts={},
        horizon=horizon,
        tolerance=tolerance,
        model_id=None if predictor is None else predictor.model_id,
    )
    checks: dict[str, ColumnCheck] = {}

    def check_for(name: str, kind: str) -> ColumnCheck:
        if name not in checks:
            checks[name] = ColumnCheck(name, kind)
        return checks[name]

    bars_check = check_for("bars", "bars")
    for market in markets:
        one = candles[candles["market"] == market]
        full = regularize(one, bar=bar, max_gap=max_gap)
        full_ts = full["ts"].to_numpy(dtype="datetime64[ns]")
        full_features = feature_fn(full)
        names = [str(c) for c in full_features.columns]
        for name in names:
            check_for(name, "feature")
        if predictor is not None:
            for name in PROBABILITY_NAMES:
                check_for(name, "probability")
        for name in LABEL_COLUMNS:
            check_for(name, "label")
        full_values = _as_float(full_features, names)
        full_probs = None if predictor is None else _probabilities(predictor, full_features, full)
        full_labels = _as_float(label_fn(full, horizon=horizon), list(LABEL_COLUMNS))
        _check_labels(
            report,
            check_for,
            market=market,
            cut=None,
            ts=full_ts,
            segment=full["segment"].to_numpy(),
            labels=full_labels,
            full_labels=full_labels,
            tolerance=tolerance,
        )

        real_ts = np.sort(pd.unique(one["ts"].to_numpy(dtype="datetime64[ns]")))
        cuts = _pick_cuts(real_ts, cut_points, seed, market)
        report.cuts[market] = [pd.Timestamp(ts, tz="UTC") for ts in cuts]
        for cut_ts, cut in zip(cuts, report.cuts[market], strict=True):
            raw = one[one["ts"].to_numpy(dtype="datetime64[ns]") <= cut_ts]
            truncated = regularize(raw, bar=bar, max_gap=max_gap)
            trunc_ts = truncated["ts"].to_numpy(dtype="datetime64[ns]")
            k = int(np.searchsorted(full_ts, cut_ts, side="right"))
            if len(trunc_ts) != k or not np.array_equal(trunc_ts, full_ts[:k]):
                # Regularizing the truncated bars gave another grid: compare on shared times.
                bars_check.compared += max(k, len(trunc_ts))
                bars_check.differing += 1
                if bars_check.first is None:
                    bars_check.first = Example(market, cut, cut, float(k), float(len(trunc_ts)))
                continue
            bars_check.compared += k
            trunc_features = feature_fn(truncated)
            for j, name in enumerate(names):
                trunc_column = (
                    trunc_features[name].to_numpy(dtype="float64", na_value=np.nan)
                    if name in trunc_features.columns
                    else np.full(k, np.nan)
                )
                bad = _differs(full_values[:k, j], trunc_column, tolerance)
                _record(
                    checks[name],
                    bad,
                    market=market,
                    ts=trunc_ts,
                    cut=cut,
                    full=full_values[:k, j],
                    truncated=trunc_column,
                )
            report.rows_compared += k
            if predictor is not None and full_probs is not None:
                trunc_probs = _probabilities(predictor, trunc_features, truncated)
                for j, name in enumerate(PROBABILITY_NAMES):
                    bad = _differs(full_probs[:k, j], trunc_probs[:, j], tolerance)
                    _record(
                        checks[name],
                        bad,
                        market=market,
                        ts=trunc_ts,
                        cut=cut,
                        full=full_probs[:k, j],
                        truncated=trunc_probs[:, j],
                    )
            trunc_labels = _as_float(label_fn(truncated, horizon=horizon), list(LABEL_COLUMNS))
            _check_labels(
                report,
                check_for,
                market=market,
                cut=cut,
                ts=trunc_ts,
                segment=truncated["segment"].to_numpy(),
                labels=trunc_labels,
                full_labels=full_labels[:k],
                tolerance=tolerance,
            )
    report.checks = list(checks.values())
    return report


def _check_labels(
    report: LookaheadReport,
    check_for: Callable[[str, str], ColumnCheck],
    *,
    market: str,
    cut: pd.Timestamp | None,
    ts: np.ndarray,
    segment: np.ndarray,
    labels: np.ndarray,
    full_labels: np.ndarray,
    tolerance: float,
) -> None:
    """A label with fewer than ``horizon`` bars of its segment after it must be NA.

    A label that may be known must equal the full-data label.
    """
    must_be_missing = _followers(segment) < report.horizon
    report.label_rows_checked += len(ts)
    for j, name in enumerate(LABEL_COLUMNS):
        present = ~np.isnan(labels[:, j])
        bad = (must_be_missing & present) | (
            ~must_be_missing & _differs(full_labels[:, j], labels[:, j], tolerance)
        )
        _record(
            check_for(name, "label"),
            bad,
            market=market,
            ts=ts,
            cut=cut,
            full=full_labels[:, j],
            truncated=labels[:, j],
        )


def format_report(report: LookaheadReport) -> list[str]:
    """Return a readable summary, one line per string."""
    lines = [
        f"look-ahead check: {len(report.markets)} market(s) {', '.join(report.markets)}; "
        f"{report.cut_points} cut points per market; "
        f"{report.rows_compared:,} feature rows compared; "
        f"{report.label_rows_checked:,} label rows checked (horizon {report.horizon}); "
        f"tolerance {report.tolerance:g}"
        + (f"; model {report.model_id}" if report.model_id else "; no model"),
    ]
    width = max(len(check.name) for check in report.checks) if report.checks else 4
    for check in report.checks:
        status = "ok  " if check.ok else "LEAK"
        line = f"{status} {check.kind:<11} {check.name:<{width}} {check.differing:>9,} differing"
        if check.first is not None:
            first = check.first
            at = "full data" if first.cut is None else f"cut {first.cut.isoformat()}"
            line += (
                f"  first: {first.market} {first.ts.isoformat()} ({at}) "
                f"full={first.full_value!r} truncated={first.truncated_value!r}"
            )
        lines.append(line)
    lines.append(
        "OK: no look-ahead found"
        if report.ok
        else f"LEAK: {', '.join(check.name for check in report.leaks)}"
    )
    return lines
