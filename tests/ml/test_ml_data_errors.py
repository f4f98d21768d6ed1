"""Bad candle files: one `CandleFileError` line naming the file, and the market and column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.data import CandleFileError, load_candles


def _bars(markets: tuple[str, ...] = ("KRW-BTC", "KRW-ETH"), minutes: int = 10) -> pd.DataFrame:
    """`minutes` 1-minute bars of each market from 2025-09-01 00:00 UTC."""
    ts = pd.date_range("2025-09-01", periods=minutes, freq="1min", tz="UTC")
    frames = []
    for offset, market in enumerate(markets):
        close = 100.0 * (offset + 1) + np.arange(minutes, dtype="float64")
        frames.append(
            pd.DataFrame(
                {
                    "market": market,
                    "ts": ts,
                    "open": close,
                    "high": close + 1.0,
                    "low": close - 1.0,
                    "close": close,
                    "volume": np.ones(minutes),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path)
    return path


def test_a_file_that_is_not_parquet_is_named_with_arrows_reason(tmp_path: Path) -> None:
    path = tmp_path / "noise.parquet"
    path.write_bytes(np.random.default_rng(0).bytes(3000))

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    message = str(raised.value)
    assert message.startswith(f"candles file {path}: not a Parquet file (")
    assert "magic bytes" in message and "\n" not in message


def test_a_csv_file_renamed_parquet_is_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "candles.parquet"
    _bars().to_csv(path, index=False)

    with pytest.raises(CandleFileError, match=r"candles\.parquet: not a Parquet file"):
        load_candles([path])


def test_an_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.touch()

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    assert str(raised.value) == f"candles file {path}: the file is empty (0 bytes)"


def test_nan_prices_name_the_file_market_column_count_and_first_time(tmp_path: Path) -> None:
    frame = _bars()
    eth = frame.index[frame["market"] == "KRW-ETH"]
    frame.loc[eth[[3, 4, 7]], "close"] = np.nan
    path = _write(frame, tmp_path / "nan.parquet")

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    assert str(raised.value) == (
        f"candles file {path}, market KRW-ETH, column close: 3 NaN values "
        "(first at 2025-09-01 00:03 UTC)"
    )


def test_the_earliest_bad_market_is_named_and_the_others_listed(tmp_path: Path) -> None:
    frame = _bars(("KRW-BTC", "KRW-ETH", "KRW-XRP"))
    for market, minute in (("KRW-BTC", 6), ("KRW-XRP", 2)):
        frame.loc[frame.index[frame["market"] == market][minute], "high"] = np.nan
    path = _write(frame, tmp_path / "two.parquet")

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    assert str(raised.value) == (
        f"candles file {path}, market KRW-XRP, column high: 1 NaN value "
        "(first at 2025-09-01 00:02 UTC); also in KRW-BTC"
    )


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("open", math.inf, "1 infinite value"),
        ("low", 0.0, "1 value <= 0"),
        ("close", -5.0, "1 value <= 0"),
        ("volume", -1.0, "1 negative value"),
        ("volume", math.nan, "1 NaN value"),
    ],
)
def test_impossible_values_are_refused_by_column(
    tmp_path: Path, column: str, value: float, words: str
) -> None:
    frame = _bars(("KRW-SOL",))
    frame.loc[5, column] = value
    path = _write(frame, tmp_path / "bad.parquet")

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    assert str(raised.value) == (
        f"candles file {path}, market KRW-SOL, column {column}: {words} "
        "(first at 2025-09-01 00:05 UTC)"
    )


def test_zero_volume_is_a_quiet_bar_not_an_error(tmp_path: Path) -> None:
    frame = _bars(("KRW-BTC",))
    frame.loc[2, "volume"] = 0.0

    candles = load_candles([_write(frame, tmp_path / "quiet.parquet")])

    assert candles["volume"].iloc[2] == 0.0


def test_a_bad_market_left_out_by_the_market_filter_is_not_checked(tmp_path: Path) -> None:
    frame = _bars()
    frame.loc[frame["market"] == "KRW-ETH", "close"] = np.nan
    path = _write(frame, tmp_path / "eth_nan.parquet")

    candles = load_candles([path], markets=["KRW-BTC"])

    assert set(candles["market"]) == {"KRW-BTC"}
    with pytest.raises(CandleFileError, match="market KRW-ETH"):
        load_candles([path])


def test_a_missing_market_name_is_refused(tmp_path: Path) -> None:
    frame = _bars(("KRW-BTC",)).astype({"market": object})
    frame.loc[[1, 2], "market"] = None
    path = _write(frame, tmp_path / "no_market.parquet")

    with pytest.raises(CandleFileError) as raised:
        load_candles([path])

    assert str(raised.value) == f"candles file {path}, column market: 2 missing values"


def test_a_text_price_column_is_named(tmp_path: Path) -> None:
    frame = _bars(("KRW-BTC",)).astype({"close": str})
    frame.loc[3, "close"] = "n/a"
    path = _write(frame, tmp_path / "text.parquet")

    with pytest.raises(CandleFileError, match=r"text\.parquet: column 'close' is .*not numeric"):
        load_candles([path])


def test_a_candle_file_error_is_a_value_error_for_callers_that_catch_those(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.parquet"
    path.touch()

    with pytest.raises(ValueError, match="empty"):
        load_candles([path])


def test_a_missing_file_is_still_file_not_found_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"candles file .*absent\.parquet: not found"):
        load_candles([tmp_path / "absent.parquet"])
