"""Expected forward return from a model set's scores, calibrated on bars it never trained on.

The policy needs money, not a ranking: how much a market is expected to move over the label
horizon. The model's buy and sell probabilities mostly measure how much the price will move,
barely which way, so the calibration separates the two. The direction comes from the score
``p_buy - p_sell``; the size from the bar's 60-minute volatility:

    E[r] = g(score) * volatility_60 * sqrt(horizon)

``g`` is the mean volatility-scaled forward return ``z = r / (volatility_60 * sqrt(h))`` in
quantile bins of the score, fitted on a window after the models' training window, each bin's
mean shrunk towards 0 by how noisy it is (empirical Bayes: a prior N(0, tau^2) whose tau^2 is
the spread of the bin means beyond their sampling noise), then made non-decreasing in the score
(weighted isotonic regression). A score that predicts nothing gives tau = 0 and g = 0: an
expected return of zero, which never pays the costs, so the policy does not trade. The
window's trend is taken out first (each bin's mean is measured from the window's mean): a week
that rose is not a forecast, and a week that fell must not make every position look like a
sell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

VOLATILITY_FEATURE = "volatility_60"
SCORE = "p_buy - p_sell"
DEFAULT_BINS = 20
Z_CLIP = 8.0  # a single bar's scaled return counts at most this much (outliers, gaps)
MIN_ROWS = 2000


class CalibrationError(ValueError):
    """Too little or unusable data to fit the expected-return calibration."""


def _isotonic(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> np.ndarray:
    """Weighted pool-adjacent-violators: the closest non-decreasing sequence."""
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            value_b, weight_b, count_b = blocks.pop()
            value_a, weight_a, count_a = blocks.pop()
            total = weight_a + weight_b
            blocks.append(
                [(value_a * weight_a + value_b * weight_b) / total, total, count_a + count_b]
            )
    out: list[float] = []
    for value, _, count in blocks:
        out.extend([value] * int(count))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class ExpectedReturn:
    """The fitted calibration: bin edges of the score and the scaled mean return per bin."""

    horizon: int
    edges: tuple[float, ...]  # inner edges, len(z) - 1 of them, increasing
    z: tuple[float, ...]  # non-decreasing
    details: dict[str, Any]

    def scale(self, volatility: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The size part: volatility_60 * sqrt(horizon) (NaN where volatility is unknown)."""
        vol = np.asarray(volatility, dtype=np.float64)
        return np.where(vol >= 0, vol, np.nan) * math.sqrt(self.horizon)

    def predict(
        self, p_buy: npt.ArrayLike, p_sell: npt.ArrayLike, volatility: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Expected simple return over the horizon, before costs; NaN where an input is."""
        score = np.asarray(p_buy, dtype=np.float64) - np.asarray(p_sell, dtype=np.float64)
        index = np.searchsorted(np.asarray(self.edges), np.nan_to_num(score), side="right")
        g = np.asarray(self.z, dtype=np.float64)[index]
        expected = g * self.scale(volatility)
        return np.where(np.isnan(score), np.nan, expected)

    def one(self, p_buy: float, p_sell: float, volatility: float | None) -> float | None:
        """`predict` for one market's row; None when it cannot be known."""
        if volatility is None or not math.isfinite(volatility):
            return None
        value = float(self.predict([p_buy], [p_sell], [volatility])[0])
        return value if math.isfinite(value) else None

    def to_json(self) -> dict[str, Any]:
        """What meta.json stores under `expected_return`."""
        return {
            "kind": "binned-scaled-return",
            "score": SCORE,
            "volatility_feature": VOLATILITY_FEATURE,
            "horizon": self.horizon,
            "edges": list(self.edges),
            "z": list(self.z),
            **self.details,
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ExpectedReturn:
        """Read it back from meta.json."""
        if values.get("kind") != "binned-scaled-return":
            raise CalibrationError(f"unknown expected-return kind {values.get('kind')!r}")
        edges = tuple(float(e) for e in values["edges"])
        z = tuple(float(v) for v in values["z"])
        if len(z) != len(edges) + 1:
            raise CalibrationError(f"{len(edges)} edges need {len(edges) + 1} values, got {len(z)}")
        details = {
            k: v
            for k, v in values.items()
            if k not in ("kind", "score", "volatility_feature", "horizon", "edges", "z")
        }
        return cls(horizon=int(values["horizon"]), edges=edges, z=z, details=details)


def fit_expected_return(
    p_buy: npt.ArrayLike,
    p_sell: npt.ArrayLike,
    volatility: npt.ArrayLike,
    forward_return: npt.ArrayLike,
    *,
    horizon: int,
    bins: int = DEFAULT_BINS,
    window: dict[str, Any] | None = None,
) -> ExpectedReturn:
    """Fit the calibration on out-of-sample scores and the realised forward returns."""
    score = np.asarray(p_buy, dtype=np.float64) - np.asarray(p_sell, dtype=np.float64)
    vol = np.asarray(volatility, dtype=np.float64)
    ret = np.asarray(forward_return, dtype=np.float64)
    keep = np.isfinite(score) & np.isfinite(vol) & (vol > 0) & np.isfinite(ret)
    if int(keep.sum()) < MIN_ROWS:
        raise CalibrationError(
            f"expected-return calibration needs at least {MIN_ROWS} scored rows with a "
            f"volatility and a forward return, got {int(keep.sum())}"
        )
    score, vol, ret = score[keep], vol[keep], ret[keep]
    z = np.clip(ret / (vol * math.sqrt(horizon)), -Z_CLIP, Z_CLIP)
    edges = np.unique(np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(edges, score, side="right")
    k = len(edges) + 1
    counts = np.bincount(index, minlength=k).astype(np.float64)
    sums = np.bincount(index, weights=z, minlength=k)
    squares = np.bincount(index, weights=z * z, minlength=k)
    safe = np.maximum(counts, 1.0)
    raw = sums / safe
    variances = np.maximum(squares / safe - raw**2, 1e-12)
    trend = float(np.mean(z))
    means = raw - trend
    se2 = variances / np.maximum(counts - 1.0, 1.0)
    se2 = np.where(counts > 1, se2, np.inf)
    finite = np.isfinite(se2)
    tau2 = max(0.0, float(np.mean(means[finite] ** 2) - np.mean(se2[finite])))
    shrink = np.where(finite, tau2 / (tau2 + np.where(finite, se2, 1.0)), 0.0)
    shrunk = means * shrink
    g = _isotonic(shrunk, np.maximum(counts, 1e-9))
    details = {
        "bins": int(k),
        "rows": len(score),
        "tau": round(math.sqrt(tau2), 6),
        "trend_z_removed": round(trend, 6),
        "bin_counts": [int(c) for c in counts],
        "raw_z": [round(float(m), 6) for m in raw],
        "z_clip": Z_CLIP,
        "window": window or {},
        "method": "quantile bins of p_buy - p_sell; mean of r / (volatility_60 * sqrt(h)) per "
        "bin, shrunk to 0 (empirical Bayes), made non-decreasing (isotonic); E[r] = g * "
        "volatility_60 * sqrt(h)",
    }
    return ExpectedReturn(
        horizon=int(horizon),
        edges=tuple(float(e) for e in edges),
        z=tuple(round(float(v), 8) for v in g),
        details=details,
    )
