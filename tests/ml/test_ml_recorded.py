"""Bars recorded by `lxa record` feed training and scoring with their live-only features.

The OHLCV of these bars are real Upbit candles; their trade intensity and spread are
SYNTHETIC (made up per bar here: no trade ticks or orderbooks have been recorded yet). They
test the plumbing: the recorder's folder loads, the values reach the feature slots in batch
exactly as they do live, and a model trained on them reads them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exchange.bars import LiveBarClose, LiveBarFeatures
from exchange.recorder import ParquetRecorder
from exchange.types import Bar
from ml.data import LIVE_COLUMNS, NEWS_COLUMNS, load_candles, regularize
from ml.features import (
    FEATURE_NAMES,
    MISSING_FROM_CANDLES,
    WARMUP_BARS,
    LiveFeatures,
    compute_features,
)
from ml.predict import Predictor
from ml.registry import candles_sha256, read_meta
from ml.training.full_set import FullConfig, train_full
from ml.training.torch_loops import HybridTrainConfig

MARKET = "KRW-BTC"
UNTIL = datetime(2025, 9, 4, tzinfo=UTC)
CANDLE_COLUMNS = ["market", "ts", "open", "high", "low", "close", "volume"]


def synthetic_live(bar: pd.Series, index: int) -> LiveBarFeatures:
    """Made-up live values for one real bar: every 7th bar has no orderbook (NaN spread)."""
    rng = np.random.default_rng(index)
    volume = float(bar["volume"])
    buy_share = float(rng.uniform(0.05, 0.95))
    return LiveBarFeatures(
        trades=int(rng.integers(1, 50)),
        buy_volume=volume * buy_share,
        sell_volume=volume * (1.0 - buy_share),
        spread_bps=math.nan if index % 7 == 0 else float(rng.uniform(0.05, 3.0)),
        bid_depth_krw=1e8,
        ask_depth_krw=1e8,
        orderbooks=0 if index % 7 == 0 else 3,
    )


def record(bars: pd.DataFrame, folder: Path) -> list[LiveBarClose]:
    """Record `bars` (one market) as `lxa record` would, with synthetic live values."""
    recorder = ParquetRecorder(folder, flush_interval_s=3600)
    closes = []
    for index, (_, row) in enumerate(bars.iterrows()):
        ts = row["ts"].to_pydatetime()
        bar = Bar(MARKET, ts, row["open"], row["high"], row["low"], row["close"], row["volume"])
        close = LiveBarClose(ts, {MARKET: bar}, live={MARKET: synthetic_live(row, index)})
        recorder.add_bars(close)
        closes.append(close)
    recorder.close()
    return closes


def test_a_record_folder_loads_its_bars_with_market_and_live_columns(
    btc_bars: pd.DataFrame, tmp_path: Path
) -> None:
    closes = record(btc_bars.iloc[:50], tmp_path / "ticks")

    loaded = load_candles([tmp_path / "ticks"])

    assert list(loaded.columns) == [*CANDLE_COLUMNS, *LIVE_COLUMNS]
    assert (loaded["market"] == MARKET).all() and len(loaded) == 50
    expected = pd.DataFrame([c.live[MARKET].as_features() for c in closes])
    np.testing.assert_array_equal(loaded["close"], btc_bars["close"].iloc[:50])
    for column in LIVE_COLUMNS:
        np.testing.assert_array_equal(loaded[column], expected[column])
    assert loaded["spread_bps"].isna().sum() == 8  # no orderbook: missing, never 0


def test_candle_files_beside_a_recording_get_missing_live_values(
    btc_bars: pd.DataFrame, upbit_1m_path: Path, tmp_path: Path
) -> None:
    record(btc_bars.iloc[:50], tmp_path / "ticks")

    both = load_candles([tmp_path / "ticks", upbit_1m_path], markets=[MARKET, "KRW-ETH"])
    candles_only = load_candles([upbit_1m_path], markets=[MARKET])

    recorded = both["ts"].isin(btc_bars["ts"].iloc[:50]) & (both["market"] == MARKET)
    assert recorded.sum() == 50  # the recording, listed first, wins the shared minutes
    assert both.loc[recorded, "trade_intensity"].notna().all()
    assert both.loc[~recorded, list(LIVE_COLUMNS)].isna().all().all()
    assert list(candles_only.columns) == CANDLE_COLUMNS


def test_the_data_hash_covers_recorded_live_values(btc_bars: pd.DataFrame, tmp_path: Path) -> None:
    record(btc_bars.iloc[:30], tmp_path / "ticks")
    loaded = load_candles([tmp_path / "ticks"])
    altered = loaded.copy()
    altered.loc[3, "trade_intensity"] = -altered.loc[3, "trade_intensity"]

    assert candles_sha256(loaded) != candles_sha256(altered)
    assert candles_sha256(loaded.drop(columns=list(LIVE_COLUMNS))) == candles_sha256(
        btc_bars.iloc[:30].reset_index(drop=True)
    )


def test_regularize_leaves_live_values_missing_on_filled_minutes(
    btc_bars: pd.DataFrame, tmp_path: Path
) -> None:
    record(btc_bars.drop(index=[20]).iloc[:40], tmp_path / "ticks")

    regular = regularize(load_candles([tmp_path / "ticks"]))

    quiet = regular[regular["filled"]]
    assert len(quiet) == 1 and quiet[list(LIVE_COLUMNS)].isna().all().all()
    assert regular.loc[~regular["filled"], "trade_intensity"].notna().all()


def test_recorded_live_values_reach_the_features_in_batch_exactly_as_live(
    btc_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bars = btc_bars.drop(index=[150, 151]).reset_index(drop=True)  # two quiet minutes
    closes = record(bars, tmp_path / "ticks")
    regular = regularize(load_candles([tmp_path / "ticks"]))
    batch = compute_features(regular).set_index(regular["ts"])
    live = LiveFeatures()

    compared = 0
    for close in closes:
        bar = close.bars[MARKET]
        live.update(
            bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume,
            **close.live[MARKET].as_features(),
        )  # fmt: skip
        row = live.latest()
        expected = batch.loc[pd.Timestamp(bar.ts)]
        if row is None:
            assert expected.isna().all()
            continue
        got = np.array([row[name] for name in FEATURE_NAMES])
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=0, atol=1e-9)
        compared += 1

    assert compared == len(bars) - (WARMUP_BARS - 1)
    slots = batch[list(MISSING_FROM_CANDLES)].iloc[WARMUP_BARS - 1 :]
    assert slots["trade_intensity"].notna().sum() == len(bars) - (WARMUP_BARS - 1)
    assert batch[list(MISSING_FROM_CANDLES)].iloc[: WARMUP_BARS - 1].isna().all().all()


def test_a_live_bar_replacing_the_newest_replaces_its_live_values(btc_bars: pd.DataFrame) -> None:
    live = LiveFeatures()
    for bar in btc_bars.iloc[:WARMUP_BARS].itertuples(index=False):
        ts = bar.ts.to_pydatetime()
        live.update(ts, bar.open, bar.high, bar.low, bar.close, bar.volume, trade_intensity=0.5)
    newest = btc_bars.iloc[WARMUP_BARS - 1]
    args = (newest.ts.to_pydatetime(), newest.open, newest.high, newest.low, newest.close)

    live.update(*args, newest.volume, trade_intensity=-0.25, spread_bps=1.5)
    replaced = live.latest()
    live.update(*args, newest.volume)
    candle_only = live.latest()

    assert replaced is not None and candle_only is not None
    assert (replaced["trade_intensity"], replaced["spread_bps"]) == (-0.25, 1.5)
    assert math.isnan(candle_only["trade_intensity"]) and math.isnan(candle_only["spread_bps"])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("trade_intensity", 1.5, "outside"),
        ("spread_bps", -2.0, "outside"),
        ("spread_bps", math.inf, "infinite"),
    ],
)
def test_a_recorded_live_value_out_of_range_is_an_error_naming_file_and_column(
    btc_bars: pd.DataFrame, tmp_path: Path, column: str, value: float, message: str
) -> None:
    record(btc_bars.iloc[:10], tmp_path / "ticks")
    part = next((tmp_path / "ticks" / "bars").glob("**/*.parquet"))
    table = pq.read_table(part).to_pandas()
    table.loc[4, column] = value
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)

    with pytest.raises(ValueError, match=message) as raised:
        load_candles([tmp_path / "ticks"])

    assert str(part) in str(raised.value) and repr(column) in str(raised.value)


def test_a_parquet_file_without_market_outside_a_market_folder_is_refused(
    btc_bars: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "loose.parquet"
    btc_bars.drop(columns=["market"]).to_parquet(path)

    with pytest.raises(ValueError, match="'market'"):
        load_candles([path])


def test_a_full_set_trained_on_recorded_bars_reads_their_live_values(
    upbit_1m: pd.DataFrame, tmp_path: Path
) -> None:
    # Four days of two markets. Here the SYNTHETIC trade intensity leans on the next ten
    # minutes' return (a leak no real recording has), so a model that reads it must use it.
    candles = upbit_1m[
        upbit_1m["market"].isin(["KRW-BTC", "KRW-XRP"])
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-05T00:00Z"))
    ]
    recorder = ParquetRecorder(tmp_path / "ticks", flush_interval_s=3600)
    for market, rows in candles.groupby("market"):
        rows = rows.reset_index(drop=True)
        ahead = rows["close"].shift(-10) / rows["close"] - 1.0
        lean = np.clip(ahead.fillna(0.0).to_numpy() / 0.004, -0.9, 0.9)
        for index, row in rows.iterrows():
            base = synthetic_live(row, int(index))
            share = 0.5 + 0.5 * float(lean[int(index)])
            live = LiveBarFeatures(
                base.trades,
                row["volume"] * share,
                row["volume"] * (1.0 - share),
                base.spread_bps,
                base.bid_depth_krw,
                base.ask_depth_krw,
                base.orderbooks,
            )
            ts = row["ts"].to_pydatetime()
            bar = Bar(
                str(market), ts, row["open"], row["high"], row["low"], row["close"], row["volume"]
            )
            recorder.add_bars(LiveBarClose(ts, {str(market): bar}, live={str(market): live}))
    recorder.close()
    recorded = load_candles([tmp_path / "ticks"])
    config = FullConfig(
        lgb_rounds=40,
        lgb_params={"num_leaves": 7, "min_data_in_leaf": 100, "learning_rate": 0.1},
        hybrid=HybridTrainConfig(epochs=1, samples_per_epoch=3000, threads=1),
        autoencoder_epochs=1,
        walk_forward_folds=2,
        threads=1,
    )

    model_dir = train_full(recorded, tmp_path / "models", until=UNTIL, config=config)

    meta = read_meta(model_dir)
    assert set(MISSING_FROM_CANDLES) <= set(meta["feature_names"])
    # The hybrid reads the live-only features the rows have: recorded bars, no news.
    assert meta["hybrid"]["feature_names"][-2:] == list(LIVE_COLUMNS)
    assert not set(NEWS_COLUMNS) & set(meta["hybrid"]["feature_names"])
    for side in ("buy", "sell"):
        booster = lgb.Booster(model_file=str(model_dir / f"model_{side}.txt"))
        splits = dict(zip(booster.feature_name(), booster.feature_importance(), strict=True))
        assert splits["trade_intensity"] > 0, side
    predictor = Predictor.load(model_dir)
    frames, blanked = {}, {}
    for market, rows in recorded[recorded["ts"] >= pd.Timestamp(UNTIL)].groupby("market"):
        regular = regularize(rows.reset_index(drop=True))
        features = compute_features(regular).assign(ts=regular["ts"], segment=regular["segment"])
        frames[str(market)] = features
        blanked[str(market)] = features.assign(trade_intensity=np.nan, spread_bps=np.nan)
    with_live = predictor.score_frames(frames)
    without = predictor.score_frames(blanked)
    for market in frames:
        scored = ~np.isnan(with_live[market][:, 0])
        assert scored.sum() > 1000
        assert not np.allclose(with_live[market][scored], without[market][scored])
