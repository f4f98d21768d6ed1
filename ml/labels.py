"""Forward-return labels that never reach past their segment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def label_meta(horizon: int, threshold: float, bar: pd.Timedelta) -> dict[str, Any]:
    """Return how a set's labels were made, as its meta.json records them."""
    return {
        "horizon": int(horizon),
        "threshold": float(threshold),
        "bar": str(bar),
        "forward_return": "simple",
    }


def make_labels(
    frame_one_market: pd.DataFrame, horizon: int = 10, threshold: float = 0.002
) -> pd.DataFrame:
    """Label each bar by its simple return from its close to the close ``horizon`` bars on.

    Returns float ``forward_return`` and nullable Int8 ``label_buy`` (return > threshold) and
    ``label_sell`` (return < -threshold), indexed like the input. A bar whose horizon passes
    the end of its segment gets NaN / <NA>.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    for column in ("close", "segment"):
        if column not in frame_one_market.columns:
            hint = " (run ml.data.regularize first)" if column == "segment" else ""
            raise ValueError(f"make_labels needs column {column!r}{hint}")
    close = frame_one_market["close"].to_numpy(dtype="float64")
    segment = frame_one_market["segment"].to_numpy()
    n = len(close)
    forward_return = np.full(n, np.nan)
    if n > horizon:
        same_segment = segment[horizon:] == segment[:-horizon]
        ratio = close[horizon:] / close[:-horizon] - 1.0
        forward_return[:-horizon] = np.where(same_segment, ratio, np.nan)
    known = ~np.isnan(forward_return)
    label_buy = pd.array(np.where(known, forward_return > threshold, 0), dtype="Int8")
    label_sell = pd.array(np.where(known, forward_return < -threshold, 0), dtype="Int8")
    label_buy[~known] = pd.NA
    label_sell[~known] = pd.NA
    return pd.DataFrame(
        {"label_buy": label_buy, "label_sell": label_sell, "forward_return": forward_return},
        index=frame_one_market.index,
    )
