"""The one check of the candles a model set trains on: columns, the ``until`` cut, order."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ml.data import BAR, REQUIRED_COLUMNS


def infer_bar(candles: pd.DataFrame) -> pd.Timedelta:
    """Return the most common spacing between a market's consecutive bars."""
    steps = candles.groupby("market", sort=False)["ts"].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        return BAR
    return pd.Timedelta(steps.mode().iloc[0])


def training_candles(
    candles: pd.DataFrame, *, until: datetime | None, caller: str
) -> tuple[pd.DataFrame, pd.Timedelta]:
    """Return the candles opened before ``until``, sorted by market and time, and their bar.

    ``caller`` names the training function in the error about a missing column.
    """
    for column in REQUIRED_COLUMNS:
        if column not in candles.columns:
            raise ValueError(f"{caller} needs candle column {column!r}")
    if until is not None:
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware (UTC)")
        candles = candles[candles["ts"] < pd.Timestamp(until).tz_convert("UTC")]
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    if candles.empty:
        before = "" if until is None else " before 'until'"
        raise ValueError(f"no candles{before} to train on")
    return candles, infer_bar(candles)
