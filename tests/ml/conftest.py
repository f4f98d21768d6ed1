"""Fixtures for the ml tests: the shared real candles, found beside the repository."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
UPBIT_1M = SHARED_DATA / "candles_upbit_1m.parquet"


@pytest.fixture(scope="session")
def upbit_1m_path() -> Path:
    """Return the shared Upbit 1m candle file, or skip when it is absent."""
    if not UPBIT_1M.is_file():
        pytest.skip(
            f"shared data not found at {UPBIT_1M} (expected ../shared/data beside the repo)"
        )
    return UPBIT_1M


@pytest.fixture(scope="session")
def upbit_1m(upbit_1m_path: Path) -> pd.DataFrame:
    """Return all shared Upbit 1m candles, loaded once."""
    from ml.data import load_candles

    return load_candles([upbit_1m_path])


@pytest.fixture()
def btc_bars(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Return the first 600 KRW-BTC 1m bars (a fresh copy)."""
    btc = upbit_1m[upbit_1m["market"] == "KRW-BTC"]
    return btc.iloc[:600].reset_index(drop=True).copy()
