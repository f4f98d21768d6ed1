"""The full model set: sequences and windows at data jumps, models, stack, registry, predictor."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml.anomaly import (
    ALERT_SCORE,
    ANCHOR_QUANTILES,
    AnomalyModel,
    BarAnomalyScorer,
    fit_score_map,
    window_channels,
    windows_from_bars,
)
from ml.data import regularize
from ml.features import compute_features
from ml.full import FullConfig, train_full
from ml.models import AutoencoderConfig, HybridConfig, HybridSignalNet
from ml.predict import FullPredictor, Predictor, minute_of_day
from ml.registry import FULL_KIND, META_FIELDS, read_meta
from ml.sequences import market_tables, sequence_ends
from ml.trainer import HybridTrainConfig, anomaly_windows, train_autoencoder
from ml.walkforward import walk_forward

UNTIL = datetime(2025, 9, 5, tzinfo=UTC)


def _with_jump(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Four days of two markets with a 3-hour hole cut out of the middle (a data jump)."""
    rows = upbit_1m[
        upbit_1m["market"].isin(["KRW-BTC", "KRW-ETH"])
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-03T00:00Z"))
    ]
    hole = (rows["ts"] >= pd.Timestamp("2025-09-02T00:00Z")) & (
        rows["ts"] < pd.Timestamp("2025-09-02T03:00Z")
    )
    return rows[~hole].reset_index(drop=True)


def test_no_sequence_or_label_crosses_a_data_jump(upbit_1m: pd.DataFrame) -> None:
    tables = market_tables(_with_jump(upbit_1m), horizon=10, threshold=0.002)

    for table in tables:
        assert set(np.unique(table.segment)) == {0, 1}
        first_after = int(np.flatnonzero(table.segment == 1)[0])
        ends = sequence_ends(table, 60)
        starts = ends - 59
        assert np.all(table.segment[starts] == table.segment[ends])
        assert np.all(table.warmed[starts])
        # The first sequence after the jump ends no earlier than warm-up + 59 bars into it.
        after = ends[ends >= first_after]
        assert after[0] - first_after >= 103 + 59
        # Labels of the last 10 bars before the jump are unknown (they would cross it).
        assert np.isnan(table.label_buy[first_after - 10 : first_after]).all()
        assert not np.isnan(table.label_buy[first_after - 11])
        # Autoencoder windows: one per bar of a segment with 30 bars behind it, none across.
        windows, _ = anomaly_windows([table], [np.arange(len(table))], 30)
        lengths = np.bincount(table.segment)
        assert len(windows) == int(np.sum(np.maximum(lengths - 30, 0)))


def test_the_hybrid_maps_sequences_to_two_logits_and_is_causal() -> None:
    torch.manual_seed(0)
    model = HybridSignalNet(HybridConfig(n_features=18, seq_len=60)).eval()
    x = torch.randn(5, 60, 18)

    out = model(x)

    assert out.shape == (5, 2)
    # The convolution is causal: changing the newest bar changes no earlier conv output.
    h = torch.nn.functional.pad(x.transpose(1, 2), (model.pad, 0))
    changed = x.clone()
    changed[:, -1, :] += 1.0
    h2 = torch.nn.functional.pad(changed.transpose(1, 2), (model.pad, 0))
    assert torch.equal(model.conv1(h)[:, :, :-1], model.conv1(h2)[:, :, :-1])
    assert not torch.equal(model(changed), out)


def test_numpy_anomaly_score_matches_torch_and_0_95_is_rare(upbit_1m: pd.DataFrame) -> None:
    btc = regularize(upbit_1m[upbit_1m["market"] == "KRW-BTC"].iloc[:8000].reset_index(drop=True))
    bars = btc[["high", "low", "close", "volume"]].to_numpy()
    windows = windows_from_bars(bars[:, 0], bars[:, 1], bars[:, 2], bars[:, 3], 30)
    config = AutoencoderConfig(window=30)

    torch_model, exported, _ = train_autoencoder(windows, config, epochs=1, threads=1)

    # Torch (float64) against the numpy forward pass on the same windows.
    x = exported.normalise(windows[:500])
    with torch.no_grad():
        recon = torch_model.double()(torch.from_numpy(x)).numpy()
    torch_scores = exported.score_map.many(np.mean((recon - x) ** 2, axis=1))
    numpy_scores = np.array([exported.score(w) for w in windows[:500]])
    assert np.max(np.abs(torch_scores - numpy_scores)) < 1e-6
    # Calibrated on these windows: 0.95 is reached by about one window in 10,000.
    all_scores = exported.score_map.many(exported.errors(windows))
    assert np.mean(all_scores >= ALERT_SCORE) <= 1 - ANCHOR_QUANTILES[-1] + 2 / len(windows)
    assert np.all((all_scores >= 0) & (all_scores < 1))
    # The exported .npz gives the same scores.
    reloaded = AnomalyModel.from_bytes(exported.to_bytes())
    assert reloaded.score(windows[7]) == exported.score(windows[7])


def test_the_score_map_is_monotone_and_puts_0_95_at_the_9999th_percentile() -> None:
    errors = np.random.default_rng(1).lognormal(size=200_000)
    score_map = fit_score_map(errors)

    grid = np.exp(np.linspace(-8, 8, 2000))
    scores = score_map.many(grid)

    assert np.all(np.diff(scores) >= 0)
    assert score_map(float(np.quantile(errors, 0.9999))) == pytest.approx(0.95)
    assert score_map(float(np.quantile(errors, 0.99))) == pytest.approx(0.75)
    assert score_map(1e9) < 1.0
    assert math.isnan(score_map(float("nan")))


def test_the_bar_scorer_fills_quiet_minutes_and_matches_the_batch_windows(
    upbit_1m: pd.DataFrame,
) -> None:
    raw = upbit_1m[upbit_1m["market"] == "KRW-XRP"].iloc[:3000].reset_index(drop=True)
    raw = raw.drop(index=[500, 501, 1200]).reset_index(drop=True)  # quiet minutes
    regular = regularize(raw)
    bars = regular[["high", "low", "close", "volume"]].to_numpy()
    windows = windows_from_bars(bars[:, 0], bars[:, 1], bars[:, 2], bars[:, 3], 30)
    _, model, _ = train_autoencoder(windows, AutoencoderConfig(window=30), epochs=1, threads=1)
    scorer = BarAnomalyScorer(model)

    live: list[float] = []
    for row in raw.itertuples(index=False):
        score = scorer.update(
            "KRW-XRP", row.ts.to_pydatetime(), row.open, row.high, row.low, row.close, row.volume
        )
        if score is not None:
            live.append(score)
    batch = model.score_map.many(model.errors(windows))

    # Live scores come at real bars only; compare each to the batch window ending there.
    real_rows = np.flatnonzero(~regular["filled"].to_numpy())
    expected = batch[real_rows[real_rows >= 30] - 30]
    assert len(live) == len(expected)
    assert np.max(np.abs(np.array(live) - expected)) < 1e-9
    assert window_channels(bars[:31, 0], bars[:31, 1], bars[:31, 2], bars[:31, 3]).shape == (30, 3)


def test_walk_forward_keeps_the_purge_between_train_and_test(upbit_1m: pd.DataFrame) -> None:
    candles = upbit_1m[upbit_1m["ts"] < pd.Timestamp("2025-09-05T00:00Z")]
    tables = market_tables(candles, horizon=10, threshold=0.002)

    folds = walk_forward(
        tables,
        {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1},
        period_start=pd.Timestamp("2025-09-01T00:00Z"),
        period_end=pd.Timestamp("2025-09-05T00:00Z"),
        purge=pd.Timedelta(minutes=10),
        folds=2,
        rounds=20,
    )

    assert len(folds) == 2
    for fold in folds:
        gap = pd.Timestamp(fold["test_start"]) - pd.Timestamp(fold["train_until"])
        assert gap >= pd.Timedelta(minutes=10)
        assert 0.5 < fold["auc_buy"] < 1 and 0.5 < fold["baseline_auc_vol60"] < 1
    assert pd.Timestamp(folds[0]["test_end"]) == pd.Timestamp(folds[1]["test_start"])


@pytest.fixture(scope="module")
def full_set(upbit_1m: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small full model set trained on four days (minutes of CPU at most)."""
    config = FullConfig(
        lgb_rounds=40,
        hybrid=HybridTrainConfig(epochs=1, samples_per_epoch=3000, threads=1),
        autoencoder_epochs=1,
        walk_forward_folds=2,
        threads=1,
    )
    return train_full(
        upbit_1m, tmp_path_factory.mktemp("models"), until=UNTIL, config=config, data_files=[]
    )


def test_a_full_set_is_saved_with_its_config_features_window_hash_and_metrics(
    full_set: Path,
) -> None:
    meta = read_meta(full_set)

    assert meta["kind"] == FULL_KIND and meta["model_id"].startswith("full-")
    assert all(field in meta for field in META_FIELDS)
    for name in ("model_buy.txt", "model_sell.txt", "hybrid.pt", "stack_buy.txt", "anomaly.npz"):
        assert (full_set / name).is_file()
    assert max(span["last_ts"] for span in meta["training_window"].values()) < UNTIL.isoformat()
    assert len(meta["metrics"]["walk_forward"]) == 2
    held = meta["metrics"]["held_out"]
    assert 0.5 < held["auc_buy_stack_calibrated"] < 1
    assert set(meta["metrics"]["autoencoder"]["alerts_training"]) == set(meta["markets"])
    checkpoint = torch.load(full_set / "hybrid.pt", weights_only=True)
    assert checkpoint["meta"]["feature_names"] == meta["hybrid"]["feature_names"]
    assert "history" in checkpoint["metrics"]
    assert set(meta["stack"]["calibration"]["buy"]) >= {"*", "KRW-BTC"}
    json.dumps(meta, allow_nan=False)


def test_live_predictions_bar_by_bar_match_the_batch_scores(
    full_set: Path, upbit_1m: pd.DataFrame
) -> None:
    predictor = Predictor.load(full_set)
    assert isinstance(predictor, FullPredictor)
    candles = upbit_1m[
        (upbit_1m["ts"] >= pd.Timestamp(UNTIL))
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-05T05:00Z"))
    ]
    frames = {}
    for market, rows in candles.groupby("market"):
        regular = regularize(rows.reset_index(drop=True))
        features = compute_features(regular)
        frames[str(market)] = features.assign(ts=regular["ts"], segment=regular["segment"])
    batch = predictor.score_frames(frames)

    live = {m: np.full((len(f), 2), np.nan) for m, f in frames.items()}
    length = min(len(f) for f in frames.values())
    with_sequence = 0
    for i in range(length):
        rows = {m: f.iloc[i].drop(["ts", "segment"]).to_dict() for m, f in frames.items()}
        if any(math.isnan(r["ret_60"]) or math.isnan(r["macd_signal"]) for r in rows.values()):
            continue
        out = predictor.predict(rows)
        for market, p in out.items():
            live[market][i] = (p.p_buy, p.p_sell)
        with_sequence += all(len(predictor._sequences[m]) == predictor.seq_len for m in rows)

    assert with_sequence > 60
    for market in frames:
        both = ~np.isnan(live[market][:length, 0])
        assert both.sum() > 100
        np.testing.assert_allclose(
            live[market][:length][both], batch[market][:length][both], atol=1e-5
        )
        assert np.all((batch[market][both] > 0) & (batch[market][both] < 1))


def test_the_full_predictor_restarts_a_sequence_after_a_missed_minute(full_set: Path) -> None:
    predictor = Predictor.load(full_set)
    assert isinstance(predictor, FullPredictor)
    names = predictor.feature_names

    def row(minute: int) -> dict[str, float]:
        values = dict.fromkeys(names, 0.001)
        angle = 2 * math.pi * minute / 1440
        values["tod_sin"], values["tod_cos"] = math.sin(angle), math.cos(angle)
        return values

    for minute in range(10, 20):
        predictor.predict({"KRW-BTC": row(minute)})
    assert len(predictor._sequences["KRW-BTC"]) == 10
    predictor.predict({"KRW-BTC": row(19)})  # the same bar again: replaces, no growth
    assert len(predictor._sequences["KRW-BTC"]) == 10
    predictor.predict({"KRW-BTC": row(25)})
    assert len(predictor._sequences["KRW-BTC"]) == 1
    assert minute_of_day(math.sin(0.0), math.cos(0.0)) == 0


def test_tune_returns_parameters_from_a_tiny_search(upbit_1m: pd.DataFrame) -> None:
    pytest.importorskip("optuna")
    from ml.tune import tune_lightgbm

    best = tune_lightgbm(upbit_1m, until=UNTIL, trials=2, rounds=10, config=FullConfig(threads=1))

    assert set(best) == {
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "lambda_l2",
    }
    assert 0.01 <= best["learning_rate"] <= 0.15


def test_the_full_sets_probabilities_pass_the_lookahead_check(
    full_set: Path, upbit_1m: pd.DataFrame
) -> None:
    from ml.lookahead import check_lookahead

    predictor = Predictor.load(full_set)
    candles = upbit_1m[
        (upbit_1m["market"] == "KRW-ETH")
        & (upbit_1m["ts"] >= pd.Timestamp(UNTIL))
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-05T08:00Z"))
    ]

    report = check_lookahead(candles, predictor=predictor, cut_points=3, seed=3, tolerance=1e-6)

    assert report.ok, report.to_json()
    assert report.rows_compared > 500
