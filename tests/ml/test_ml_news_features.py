"""The news features: NaN (never 0) without news, the same in batch and live, and a set
trained before them (the bundled model) predicting exactly as it did.

The candles are the bundled real Upbit bars; the news values put on them here are SYNTHETIC
numbers (no headline behind them), only to see where they go.
"""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS
from ml.data import NEWS_COLUMNS, load_candles, regularize
from ml.features import FEATURE_NAMES, MISSING_FROM_CANDLES, LiveFeatures, compute_features
from ml.predict import Predictor
from ml.registry import latest_model_dir

MARKET = "KRW-XRP"


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return load_candles([BUNDLED_CANDLES])


@pytest.fixture(scope="module")
def xrp(bundled: pd.DataFrame) -> pd.DataFrame:
    return bundled[bundled["market"] == MARKET].reset_index(drop=True)


def synthetic_news(bars: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """The bars with made-up news values: an index in [-1, 1] and a count, NaN on a third."""
    rng = np.random.default_rng(seed)
    n = len(bars)
    sentiment = rng.uniform(-1.0, 1.0, n)
    count = rng.integers(0, 12, n).astype("float64")
    none = rng.random(n) < 1 / 3
    sentiment[none] = np.nan
    count[none] = np.nan
    return bars.assign(news_sentiment=sentiment, news_count=count)


def test_the_news_features_are_live_only_columns_after_the_candle_ones() -> None:
    assert set(NEWS_COLUMNS) <= set(MISSING_FROM_CANDLES)
    assert FEATURE_NAMES[-len(NEWS_COLUMNS) :] == NEWS_COLUMNS


def test_candles_without_news_give_nan_news_features_never_zero(xrp: pd.DataFrame) -> None:
    features = compute_features(regularize(xrp))
    live = LiveFeatures()
    for bar in xrp.itertuples(index=False):
        live.update(bar.ts.to_pydatetime(), bar.open, bar.high, bar.low, bar.close, bar.volume)
    row = live.latest()

    assert features["rsi_14"].notna().sum() > 1000  # warmed rows exist
    assert features[list(NEWS_COLUMNS)].isna().all().all()
    assert row is not None
    assert all(math.isnan(row[name]) for name in NEWS_COLUMNS)


def test_news_on_the_bars_reaches_batch_and_live_rows_alike_and_never_a_quiet_bar(
    xrp: pd.DataFrame,
) -> None:
    bars = synthetic_news(xrp.iloc[:900].reset_index(drop=True))
    bars = bars.drop(index=[300, 301, 555, 702]).reset_index(drop=True)  # quiet minutes
    regular = regularize(bars)
    batch = compute_features(regular)
    grid = pd.Index(regular["ts"])
    live = LiveFeatures()
    compared = 0
    for bar in bars.itertuples(index=False):
        live.update(
            bar.ts.to_pydatetime(),
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            news_sentiment=bar.news_sentiment,
            news_count=bar.news_count,
        )
        row = live.latest()
        if row is None:
            continue
        at = grid.get_loc(bar.ts)
        want = batch.iloc[at][list(FEATURE_NAMES)].to_numpy(dtype="float64")
        got = np.array([row[name] for name in FEATURE_NAMES])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
        compared += 1

    filled = regular["filled"].to_numpy()
    assert compared > 500 and filled.sum() == 4
    assert batch.loc[filled, list(NEWS_COLUMNS)].isna().all().all()
    warmed = batch["rsi_14"].notna().to_numpy() & ~filled
    np.testing.assert_array_equal(
        batch.loc[warmed, "news_sentiment"].to_numpy(),
        regular.loc[warmed, "news_sentiment"].to_numpy(),
    )


def test_the_bundled_model_predicts_exactly_as_before_whatever_the_news(
    bundled: pd.DataFrame,
) -> None:
    model_dir = latest_model_dir(BUNDLED_MODELS)
    predictor = Predictor.load(model_dir)
    assert not set(NEWS_COLUMNS) & set(predictor.feature_names)  # trained before them
    frames, with_news, direct = {}, {}, {}
    boosters = {
        s: lgb.Booster(model_file=str(model_dir / f"model_{s}.txt")) for s in ("buy", "sell")
    }
    for market, one in bundled.groupby("market"):
        regular = regularize(one.reset_index(drop=True))
        features = compute_features(regular).assign(ts=regular["ts"], segment=regular["segment"])
        warmed = features["rsi_14"].notna()
        frames[str(market)] = features[warmed]
        news = synthetic_news(regular, seed=len(frames))
        with_news[str(market)] = features[warmed].assign(
            news_sentiment=news["news_sentiment"][warmed], news_count=news["news_count"][warmed]
        )
        # "Before": the bundled boosters fed the columns their own meta names, nothing else.
        matrix = features[warmed][list(predictor.feature_names)].to_numpy(dtype="float64")
        direct[str(market)] = np.column_stack(
            [boosters[s].predict(matrix) for s in ("buy", "sell")]
        )

    plain = predictor.score_frames(frames)
    news = predictor.score_frames(with_news)

    for market in frames:
        assert len(plain[market]) > 3000
        assert with_news[market]["news_count"].notna().sum() > 1000
        np.testing.assert_array_equal(news[market], plain[market])
        np.testing.assert_allclose(plain[market], direct[market], rtol=0, atol=1e-12)


def test_the_bundled_model_live_row_ignores_the_news_values(xrp: pd.DataFrame) -> None:
    predictor = Predictor.load(latest_model_dir(BUNDLED_MODELS))
    quiet, newsy = LiveFeatures(), LiveFeatures()
    for bar in xrp.iloc[:400].itertuples(index=False):
        ts = bar.ts.to_pydatetime()
        quiet.update(ts, bar.open, bar.high, bar.low, bar.close, bar.volume)
        newsy.update(
            ts, bar.open, bar.high, bar.low, bar.close, bar.volume,
            news_sentiment=-0.8, news_count=9.0,
        )  # fmt: skip
    quiet_row, newsy_row = quiet.latest(), newsy.latest()
    assert quiet_row is not None and newsy_row is not None
    assert newsy_row["news_sentiment"] == -0.8 and newsy_row["news_count"] == 9.0

    before = predictor.predict({MARKET: quiet_row})[MARKET]
    after = predictor.predict({MARKET: newsy_row})[MARKET]

    assert (after.p_buy, after.p_sell) == (before.p_buy, before.p_sell)
