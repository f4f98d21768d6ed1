"""Fixtures for the ml tests: the shared real candles, and the small model sets trained once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ml_kit import FULL_UNTIL, QUICK_UNTIL

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


@pytest.fixture(scope="session")
def quick_slice(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Return four days of all four markets (the last day is after QUICK_UNTIL)."""
    return upbit_1m[upbit_1m["ts"] < pd.Timestamp("2025-09-05T00:00Z")].reset_index(drop=True)


@pytest.fixture(scope="session")
def quick_set(
    quick_slice: pd.DataFrame, upbit_1m_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Train the quick set once on the slice and return its directory."""
    from ml.training.quick_pair import train_quick

    return train_quick(
        quick_slice,
        tmp_path_factory.mktemp("models"),
        until=QUICK_UNTIL,
        data_files=[str(upbit_1m_path)],
    )


@pytest.fixture(scope="session")
def full_set(upbit_1m: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small full model set trained on four days (minutes of CPU at most)."""
    from ml.training.full_set import FullConfig, train_full
    from ml.training.torch_loops import HybridTrainConfig

    config = FullConfig(
        lgb_rounds=40,
        hybrid=HybridTrainConfig(epochs=1, samples_per_epoch=3000, threads=1),
        autoencoder_epochs=1,
        walk_forward_folds=2,
        threads=1,
    )
    return train_full(
        upbit_1m, tmp_path_factory.mktemp("models"), until=FULL_UNTIL, config=config, data_files=[]
    )
