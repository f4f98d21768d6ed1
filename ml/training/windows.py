"""Full set, stage 1: the base, stack and calibration windows over the recent stretch.

Time is cut into three windows over the most recent stretch of data (the candles after the
last jump of more than a day across all markets; everything older is base-training data):

    [ base: LightGBM + hybrid fit ] purge [ stack: stacker fit ] purge [ calibration ]

A purge of the label horizon separates the windows, so no label of one reaches into the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.sequences import MarketTable

RECENT_GAP = pd.Timedelta(days=1)
WINDOWS = ("base", "stack", "calibration")


def recent_start(tables: Sequence[MarketTable]) -> pd.Timestamp:
    """Return the first bar time after the last jump of more than a day across all markets."""
    ts = np.unique(np.concatenate([t.ts for t in tables]))
    if len(ts) == 0:
        raise ValueError("no bars")
    jumps = np.flatnonzero(np.diff(ts) > np.timedelta64(RECENT_GAP.value, "ns"))
    first = ts[jumps[-1] + 1] if len(jumps) else ts[0]
    return pd.Timestamp(first, tz="UTC")


@dataclass(frozen=True)
class FullWindows:
    """Where the full set's windows start, and each table's rows in each window."""

    bounds: dict[str, pd.Timestamp]  # recent_start, stack, calibration, end
    purge: pd.Timedelta
    masks: list[dict[str, np.ndarray]]  # per table: a bool mask per name in WINDOWS
    usable: list[np.ndarray]  # per table: warmed-up rows with a known label

    def rows(self, window: str) -> list[np.ndarray]:
        """Return each table's usable rows in ``window`` (bool masks)."""
        return [m[window] & u for m, u in zip(self.masks, self.usable, strict=True)]

    def to_json(self) -> dict[str, str]:
        """Return the bounds as ISO strings (as meta.json and the log show them)."""
        return {key: value.isoformat() for key, value in self.bounds.items()}


def _masks(
    table: MarketTable, bounds: dict[str, pd.Timestamp], purge: pd.Timedelta
) -> dict[str, np.ndarray]:
    """Row masks of the three windows (purged before each boundary)."""
    ts = table.ts
    stack = bounds["stack"].tz_localize(None).to_datetime64()
    calib = bounds["calibration"].tz_localize(None).to_datetime64()
    gap = np.timedelta64(purge.value, "ns")
    return {
        "base": ts < stack - gap,
        "stack": (ts >= stack) & (ts < calib - gap),
        "calibration": ts >= calib,
    }


def cut_windows(
    tables: Sequence[MarketTable],
    *,
    purge: pd.Timedelta,
    stack_start: float,
    calibration_start: float,
) -> FullWindows:
    """Cut the recent stretch at the fractions ``stack_start`` and ``calibration_start``."""
    start = recent_start(tables)
    end = pd.Timestamp(max(t.ts.max() for t in tables), tz="UTC")
    span = end - start
    bounds = {
        "recent_start": start,
        "stack": start + span * stack_start,
        "calibration": start + span * calibration_start,
        "end": end,
    }
    return FullWindows(
        bounds=bounds,
        purge=purge,
        masks=[_masks(t, bounds, purge) for t in tables],
        usable=[t.warmed & ~np.isnan(t.label_buy) for t in tables],
    )
