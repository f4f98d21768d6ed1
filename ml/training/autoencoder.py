"""Full set, stage 6: the anomaly autoencoder, fit on the base and stack windows.

Its alert rates are reported on the windows it was fit on and on the calibration window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml.anomaly import ALERT_SCORE, CHANNELS, AnomalyModel, windows_from_bars
from ml.models import AutoencoderConfig
from ml.sequences import MarketTable
from ml.training.torch_loops import train_autoencoder
from ml.training.windows import FullWindows


def anomaly_windows(
    tables: Sequence[MarketTable], rows: Sequence[np.ndarray], window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return raw channel windows (N, window, 3) ending at the given rows, and their market index.

    A window covers ``window + 1`` bars of one segment (never across a jump).
    """
    pieces: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for index, (table, chosen) in enumerate(zip(tables, rows, strict=True)):
        chosen_set = np.zeros(len(table), dtype=bool)
        chosen_set[chosen] = True
        seg = table.segment
        bounds = np.flatnonzero(np.diff(seg)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [len(table)]])
        for start, stop in zip(starts, stops, strict=True):
            h, lo, c, v = (table.bars[start:stop, k] for k in range(4))
            windows = windows_from_bars(h, lo, c, v, window)  # row k ends at bar start + k + window
            if not len(windows):
                continue
            end_rows = start + window + np.arange(len(windows))
            keep = chosen_set[end_rows]
            pieces.append(windows[keep])
            owners.append(np.full(int(keep.sum()), index))
    if not pieces:
        return np.empty((0, window, len(CHANNELS))), np.empty(0, dtype="int64")
    windows_all = np.concatenate(pieces)
    finite = np.isfinite(windows_all).all(axis=(1, 2))
    return windows_all[finite], np.concatenate(owners)[finite]


def alert_rates(
    model: AnomalyModel, windows: np.ndarray, owners: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float | int]]:
    """Per market: windows scored, bars with score >= 0.95, and those per day (1-minute bars).

    ``episodes`` counts runs of consecutive alerting windows once (one event, many bars).
    """
    scores = model.score_map.many(model.errors(windows))
    out: dict[str, dict[str, float | int]] = {}
    for index, name in enumerate(names):
        mine = scores[owners == index]
        if not len(mine):
            continue
        alerts = mine >= 0.95
        episodes = int(np.sum(alerts & ~np.concatenate([[False], alerts[:-1]])))
        days = len(mine) / 1440.0
        out[name] = {
            "windows": len(mine),
            "alert_bars": int(alerts.sum()),
            "alert_bars_per_day": round(float(alerts.sum()) / days, 3),
            "alert_episodes": episodes,
            "alert_episodes_per_day": round(episodes / days, 3),
            "share_at_or_above_0.5": round(float(np.mean(mine >= 0.5)), 4),
        }
    return out


def fit_anomaly_autoencoder(
    tables: Sequence[MarketTable],
    windows: FullWindows,
    config: AutoencoderConfig,
    *,
    epochs: int,
    seed: int,
    threads: int,
) -> tuple[AnomalyModel, dict[str, Any]]:
    """Fit on the base and stack windows; return the exported model and its metrics."""
    masks = windows.masks
    fit_windows, fit_owners = anomaly_windows(
        tables, [np.flatnonzero(m["base"] | m["stack"]) for m in masks], config.window
    )
    _, anomaly, metrics = train_autoencoder(
        fit_windows, config, epochs=epochs, seed=seed, threads=threads
    )
    names = [t.market for t in tables]
    metrics["alert_score"] = ALERT_SCORE
    metrics["alerts_training"] = alert_rates(anomaly, fit_windows, fit_owners, names)
    held_windows, held_owners = anomaly_windows(
        tables, [np.flatnonzero(m["calibration"]) for m in masks], config.window
    )
    metrics["alerts_held_out"] = alert_rates(anomaly, held_windows, held_owners, names)
    return anomaly, metrics
