"""Per-market feature tables and the bar sequences cut from them, never across a data jump."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.data import BAR, SEGMENT_GAP, regularize
from ml.features import (
    FEATURE_NAMES,
    LONG_FEATURES,
    MISSING_FROM_CANDLES,
    WARMED_FEATURES,
    compute_features,
)
from ml.labels import make_labels

SEQUENCE_FEATURES: tuple[str, ...] = WARMED_FEATURES + LONG_FEATURES
"""Features the sequence model reads: the ones candles provide from WARMUP_BARS bars on, and
the four-hour ones, which are missing (standardised to 0, their mean) until LONG_BARS."""


def sequence_features(tables: Sequence[MarketTable], rows: Sequence[np.ndarray]) -> tuple[str, ...]:
    """Return SEQUENCE_FEATURES plus the live-only features that the given rows have.

    ``MISSING_FROM_CANDLES`` (``trade_intensity``, ``spread_bps``, the news columns) join when
    any of ``rows`` (the training rows, one mask or index array per table) has a value: bars
    recorded live carry the first two, candles with news put on them the others, plain
    candles none.
    """
    live = tuple(
        name
        for name in MISSING_FROM_CANDLES
        if any(
            np.isfinite(t.features[r, FEATURE_NAMES.index(name)]).any()
            for t, r in zip(tables, rows, strict=True)
        )
    )
    return SEQUENCE_FEATURES + live


@dataclass
class MarketTable:
    """One market's regularized bars with features and labels, row-aligned."""

    market: str
    ts: np.ndarray  # datetime64[ns] (UTC)
    segment: np.ndarray  # int64
    filled: np.ndarray  # bool: a quiet bar made up by regularize
    features: np.ndarray  # (n, len(FEATURE_NAMES)) float64
    label_buy: np.ndarray  # float64, NaN where unknown
    label_sell: np.ndarray
    warmed: np.ndarray  # bool: every WARMED_FEATURES column defined
    bars: np.ndarray  # (n, 4) float64: high, low, close, volume

    def __len__(self) -> int:
        """Return the number of bars."""
        return len(self.ts)


def market_tables(
    candles: pd.DataFrame,
    *,
    horizon: int,
    threshold: float,
    bar: pd.Timedelta = BAR,
    max_gap: pd.Timedelta = SEGMENT_GAP,
) -> list[MarketTable]:
    """Regularize each market, compute its features and labels (per segment)."""
    tables: list[MarketTable] = []
    candle_columns = [FEATURE_NAMES.index(n) for n in WARMED_FEATURES]
    for market, one in candles.groupby("market", sort=True):
        regular = regularize(one.reset_index(drop=True), bar=bar, max_gap=max_gap)
        features = compute_features(regular).to_numpy(dtype="float64")
        labels = make_labels(regular, horizon=horizon, threshold=threshold)
        tables.append(
            MarketTable(
                market=str(market),
                ts=pd.DatetimeIndex(regular["ts"]).tz_convert("UTC").tz_localize(None).to_numpy(),
                segment=regular["segment"].to_numpy(dtype="int64"),
                filled=regular["filled"].to_numpy(dtype=bool),
                features=features,
                label_buy=labels["label_buy"].to_numpy(dtype="float64", na_value=np.nan),
                label_sell=labels["label_sell"].to_numpy(dtype="float64", na_value=np.nan),
                warmed=~np.isnan(features[:, candle_columns]).any(axis=1),
                bars=regular[["high", "low", "close", "volume"]].to_numpy(dtype="float64"),
            )
        )
    return tables


def sequence_ends(table: MarketTable, seq_len: int, *, labelled: bool = True) -> np.ndarray:
    """Return the rows that can end a ``seq_len``-bar sequence of warmed rows in one segment.

    With ``labelled`` the end row must also have a label (which itself stays in the segment).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    n = len(table)
    if n < seq_len:
        return np.empty(0, dtype="int64")
    ok = table.warmed.astype("int64")
    # Count of warmed rows in the trailing window, and the segment at the window's start.
    counts = np.convolve(ok, np.ones(seq_len, dtype="int64"), mode="valid")  # ends seq_len-1..
    ends = np.arange(seq_len - 1, n)
    same_segment = table.segment[ends] == table.segment[ends - seq_len + 1]
    good = (counts == seq_len) & same_segment
    if labelled:
        good &= ~np.isnan(table.label_buy[ends])
    return ends[good].astype("int64")


def gather_sequences(matrix: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Return (len(ends), seq_len, F) windows of ``matrix`` rows ending at ``ends``."""
    offsets = np.arange(-seq_len + 1, 1, dtype="int64")
    return matrix[ends[:, None] + offsets[None, :]]
