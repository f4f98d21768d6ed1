"""The full set's models after training: hybrid, anomaly scorer, stacker and predictor."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
from ml_kit import FULL_UNTIL

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
from ml.models import AutoencoderConfig, HybridConfig, HybridSignalNet
from ml.predict import (
    BASE_LOG_ABS_RETURN,
    BASE_PROBABILITY,
    FullPredictor,
    Predictor,
    base_score,
    minute_of_day,
)
from ml.stack import LinearStacker
from ml.training.torch_loops import train_autoencoder


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


def test_live_predictions_bar_by_bar_match_the_batch_scores(
    full_set: Path, upbit_1m: pd.DataFrame
) -> None:
    predictor = Predictor.load(full_set)
    assert isinstance(predictor, FullPredictor)
    candles = upbit_1m[
        (upbit_1m["ts"] >= pd.Timestamp(FULL_UNTIL))
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
    with_sequence = before_long = 0
    for i in range(length):
        rows = {m: f.iloc[i].drop(["ts", "segment"]).to_dict() for m, f in frames.items()}
        if any(math.isnan(r["ret_60"]) or math.isnan(r["macd_signal"]) for r in rows.values()):
            continue
        out = predictor.predict(rows)
        for market, p in out.items():
            live[market][i] = (p.p_buy, p.p_sell)
        full = all(len(predictor._sequences[m]) == predictor.seq_len for m in rows)
        with_sequence += full
        # The four-hour features are missing before LONG_BARS: the sequences run on anyway.
        before_long += full and all(math.isnan(r["volatility_240"]) for r in rows.values())

    assert with_sequence > 60
    assert before_long > 30
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


def test_the_full_sets_probabilities_pass_the_lookahead_check(
    full_set: Path, upbit_1m: pd.DataFrame
) -> None:
    from ml.lookahead import check_lookahead

    predictor = Predictor.load(full_set)
    # Over two days: more sequences than one hybrid batch (2048), so a cut ends a batch short.
    candles = upbit_1m[
        (upbit_1m["market"] == "KRW-ETH")
        & (upbit_1m["ts"] >= pd.Timestamp(FULL_UNTIL))
        & (upbit_1m["ts"] < pd.Timestamp(FULL_UNTIL) + pd.Timedelta(days=2))
    ]

    # The default tolerance (1e-12): the float32 hybrid scores a bar identically however
    # much data follows it (its batches always have the same shape).
    # Two threads, as `lxa lookahead` runs: how torch splits a batch between them depends on
    # the batch size, which is what changed a bar's last bits before batches were padded.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = check_lookahead(candles, predictor=predictor, cut_points=12, seed=3)
    finally:
        torch.set_num_threads(threads)

    assert report.tolerance == 1e-12
    assert report.ok, report.to_json()
    assert report.rows_compared > 2 * 2048


def test_base_scores_are_logits_of_probabilities_or_raw_log_returns() -> None:
    p = np.array([0.1, 0.5, np.nan])
    np.testing.assert_allclose(base_score(p, BASE_PROBABILITY)[:2], [math.log(1 / 9), 0.0])
    assert math.isnan(base_score(p, BASE_PROBABILITY)[2])
    raw = np.array([-7.2, -6.1])
    np.testing.assert_array_equal(base_score(raw, BASE_LOG_ABS_RETURN), raw)
    with pytest.raises(ValueError, match="base model output"):
        base_score(raw, "odds")


def test_the_logistic_stacker_never_decreases_in_a_base_score_and_covers_missing_nn() -> None:
    """SYNTHETIC rows: the label rises with lgb_logit and volatility and falls with nn_logit."""
    rng = np.random.default_rng(3)
    n = 4000
    lgb_score = rng.normal(size=n)
    vol = np.exp(rng.normal(-7, 0.5, size=n))
    nn = rng.normal(size=n)  # a plain fit would give it a negative weight
    z = 1.5 * lgb_score - nn + (np.log(vol) + 7) + rng.logistic(size=n)
    labels = (z > 1.0).astype("float64")
    inputs = np.column_stack([lgb_score, nn, vol])
    inputs[:500, 1] = np.nan  # no hybrid sequence yet on these rows

    stacker = LinearStacker.fit(inputs, labels)

    assert stacker.with_nn[1] == 0.0  # dropped rather than fit negative
    assert stacker.with_nn[0] > 0 and stacker.without_nn[0] > 0
    p = stacker.predict(inputs)
    assert np.all((p > 0) & (p < 1))
    higher = inputs.copy()
    higher[:, 0] += 0.5
    assert np.all(stacker.predict(higher) >= p)
    assert LinearStacker.from_json(json.loads(json.dumps(stacker.to_json()))) == stacker
    missing_vol = inputs[:3].copy()
    missing_vol[:, 2] = np.nan
    assert np.all(np.isfinite(stacker.predict(missing_vol)))


def test_a_stacker_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="linear stacker"):
        LinearStacker.from_json({"mean": [0, 0, 0]})
    with pytest.raises(ValueError, match="3 means"):
        LinearStacker.from_json(
            {"mean": [0, 0], "std": [1, 1, 1], "with_nn": [1, 1, 1, 0], "without_nn": [1, 0, 1, 0]}
        )
    with pytest.raises(ValueError, match="both labels"):
        LinearStacker.fit(np.ones((10, 3)), np.zeros(10))


def test_a_set_saved_with_the_older_tree_stacker_still_loads_and_scores(
    full_set: Path, tmp_path: Path
) -> None:
    """Older sets carry a LightGBM stacker per side in its own file, named in meta.json."""
    old = tmp_path / "old-set"
    shutil.copytree(full_set, old)
    meta = json.loads((old / "meta.json").read_text())
    rng = np.random.default_rng(5)
    old_inputs = ["lgb_logit", "nn_logit", "ctx_volatility_60"]  # with cross-market context
    x = rng.normal(size=(600, 3))
    y = (x[:, 0] + rng.logistic(size=600) > 0).astype("float64")
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1},
        lgb.Dataset(x, label=y, feature_name=old_inputs),
        num_boost_round=5,
    )
    for side in ("buy", "sell"):
        booster.save_model(str(old / f"stack_{side}.txt"))
    meta["stack"].pop("kind")
    meta["stack"].pop("models")
    meta["stack"]["files"] = {"buy": "stack_buy.txt", "sell": "stack_sell.txt"}
    meta["stack"]["inputs"] = old_inputs
    (old / "meta.json").write_text(json.dumps(meta))

    predictor = Predictor.load(old)

    assert isinstance(predictor, FullPredictor)
    assert isinstance(predictor._stackers["buy"], lgb.Booster)
    row = {name: 0.001 for name in predictor.feature_names}
    prediction = predictor.predict({"KRW-BTC": row})["KRW-BTC"]
    assert 0 < prediction.p_buy < 1 and 0 < prediction.p_sell < 1
