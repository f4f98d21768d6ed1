"""Tests for ml.data: loading candle files and regularizing one market's bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.data import SEGMENT_GAP, load_candles, regularize


def _bars(minutes: list[int], start: str = "2025-09-01T00:00Z") -> pd.DataFrame:
    """Build KRW-BTC bars at the given minute offsets, close = 100 + offset."""
    base = pd.Timestamp(start)
    close = np.array([100.0 + m for m in minutes])
    return pd.DataFrame(
        {
            "market": "KRW-BTC",
            "ts": [base + pd.Timedelta(minutes=m) for m in minutes],
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.ones(len(minutes)),
        }
    )


def test_load_candles_returns_sorted_columns_for_selected_markets(upbit_1m_path: Path) -> None:
    candles = load_candles([upbit_1m_path], markets=["KRW-ETH", "KRW-BTC"])

    assert list(candles.columns) == ["market", "ts", "open", "high", "low", "close", "volume"]
    assert set(candles["market"]) == {"KRW-BTC", "KRW-ETH"}
    assert str(candles["ts"].dt.tz) == "UTC"
    assert not candles.duplicated(["market", "ts"]).any()
    keys = list(zip(candles["market"], candles["ts"], strict=True))
    assert keys == sorted(keys)


def test_load_candles_drops_duplicate_market_ts_across_files(
    upbit_1m_path: Path, tmp_path: Path
) -> None:
    raw = pd.read_parquet(upbit_1m_path)
    part = raw[raw["market"] == "KRW-XRP"].iloc[:50]
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    part.iloc[:30].to_parquet(first)
    part.iloc[20:].to_parquet(second)

    candles = load_candles([first, second])

    assert len(candles) == 50
    assert candles["ts"].is_monotonic_increasing


def test_load_candles_names_missing_column_and_file(tmp_path: Path) -> None:
    frame = _bars([0, 1, 2]).drop(columns=["volume"])
    path = tmp_path / "no_volume.parquet"
    frame.to_parquet(path)

    with pytest.raises(ValueError, match=r"no_volume\.parquet.*'volume'"):
        load_candles([path])


def test_regularize_fills_quiet_minute_with_flat_zero_volume_bar() -> None:
    bars = _bars([0, 1, 3, 4])

    regular = regularize(bars)

    assert len(regular) == 5
    quiet = regular.iloc[2]
    assert quiet["ts"] == pd.Timestamp("2025-09-01T00:02Z")
    assert quiet[["open", "high", "low", "close"]].tolist() == [101.0] * 4
    assert quiet["volume"] == 0.0
    assert bool(quiet["filled"]) is True
    assert regular["filled"].sum() == 1
    assert (regular["segment"] == 0).all()
    assert regular.loc[regular["ts"] == pd.Timestamp("2025-09-01T00:03Z"), "close"].item() == 103


def test_regularize_splits_segments_at_a_jump_longer_than_max_gap() -> None:
    gap = int(SEGMENT_GAP / pd.Timedelta(minutes=1))
    bars = _bars([0, 1, 1 + gap, 2 + gap, 3 + gap + gap + 1, 4 + 2 * gap + 1])

    regular = regularize(bars)

    # A jump of exactly max_gap is filled; one bar more starts a new segment.
    assert regular["segment"].dtype.kind == "i"
    assert regular.groupby("segment").size().tolist() == [gap + 3, 2]
    assert regular["filled"].sum() == gap - 1
    assert regular["close"].notna().all() and (regular["close"] > 0).all()


def test_regularize_rejects_two_markets() -> None:
    bars = pd.concat([_bars([0, 1]), _bars([0, 1]).assign(market="KRW-ETH")])

    with pytest.raises(ValueError, match="one market"):
        regularize(bars)


def test_regularize_keeps_real_upbit_rows_and_fills_only_gaps(upbit_1m: pd.DataFrame) -> None:
    sol = upbit_1m[upbit_1m["market"] == "KRW-SOL"]

    regular = regularize(sol)

    span_minutes = (sol["ts"].max() - sol["ts"].min()) / pd.Timedelta(minutes=1)
    assert len(regular) == span_minutes + 1
    assert (~regular["filled"]).sum() == len(sol)
    assert regular["segment"].nunique() == 1
    assert (regular.loc[regular["filled"], "volume"] == 0).all()
