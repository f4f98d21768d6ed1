"""Tests for ml.lookahead: real features pass, injected leaks are caught, the CLI exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.data import SEGMENT_GAP
from ml.features import FEATURE_NAMES, compute_features
from ml.lookahead import LABEL_COLUMNS, check_lookahead
from ml.predict import Predictor
from ml.registry import latest_model_dir

ROOT = Path(__file__).resolve().parents[2]
DEMO_CANDLES = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
DEMO_MODELS = ROOT / "app" / "demo" / "model"
BARS_PER_MARKET = 400


@pytest.fixture()
def two_markets(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Return the first 400 real 1m bars of KRW-BTC and KRW-XRP."""
    pieces = [
        upbit_1m[upbit_1m["market"] == market].iloc[:BARS_PER_MARKET]
        for market in ("KRW-BTC", "KRW-XRP")
    ]
    return pd.concat(pieces, ignore_index=True)


def _with_leaks(frame: pd.DataFrame) -> pd.DataFrame:
    """The real features plus two that peek at the future."""
    features = compute_features(frame)
    close = frame["close"]
    features["next_return"] = close.shift(-1) / close - 1.0
    features["close_centred_5"] = close.rolling(5, center=True).mean() / close
    return features


def test_real_features_probabilities_and_labels_pass_on_real_candles(
    two_markets: pd.DataFrame,
) -> None:
    model_dir = latest_model_dir(DEMO_MODELS)
    assert model_dir is not None
    predictor = Predictor.load(model_dir)

    report = check_lookahead(two_markets, predictor=predictor, cut_points=5, seed=3)

    assert report.ok, [check.to_json() for check in report.leaks]
    assert report.markets == ["KRW-BTC", "KRW-XRP"]
    assert all(len(cuts) == 5 for cuts in report.cuts.values())
    assert report.rows_compared > 0
    names = {check.name for check in report.checks}
    assert set(FEATURE_NAMES) | {"p_buy", "p_sell"} | set(LABEL_COLUMNS) <= names
    # Every row up to each cut was compared, for every feature.
    assert report.check("ret_1").compared == report.rows_compared
    assert report.check("p_buy").compared == report.rows_compared


def test_a_leaky_feature_is_reported_by_name(two_markets: pd.DataFrame) -> None:
    report = check_lookahead(two_markets, cut_points=4, seed=1, feature_fn=_with_leaks)

    assert not report.ok
    assert {check.name for check in report.leaks} == {"next_return", "close_centred_5"}
    for name in ("next_return", "close_centred_5"):
        check = report.check(name)
        assert check.kind == "feature"
        assert check.first is not None
        first = check.first
        assert first.cut is not None and first.ts <= first.cut
        assert first.market in report.markets
        # The full data knows the value; the truncated data cannot.
        assert first.full_value is not None and np.isfinite(first.full_value)
        assert first.truncated_value is None or np.isnan(first.truncated_value)
    # shift(-1) differs only at the last row before each cut; a centred 5-bar mean at two.
    cuts = sum(len(c) for c in report.cuts.values())
    assert report.check("next_return").differing == cuts
    assert report.check("close_centred_5").differing == 2 * cuts


def test_cut_points_are_deterministic_with_the_seed(two_markets: pd.DataFrame) -> None:
    first = check_lookahead(two_markets, cut_points=3, seed=5)
    again = check_lookahead(two_markets, cut_points=3, seed=5)
    other = check_lookahead(two_markets, cut_points=3, seed=6)

    assert first.cuts == again.cuts
    assert first.cuts != other.cuts


def _labels_ignoring_the_end(frame: pd.DataFrame, horizon: int = 10) -> pd.DataFrame:
    """Leaky labels: the tail (no future bars yet) is filled as 'no move' instead of NA."""
    close = frame["close"]
    forward = (close.shift(-horizon) / close - 1.0).fillna(0.0)
    return pd.DataFrame(
        {
            "label_buy": (forward > 0.002).astype("Int8"),
            "label_sell": (forward < -0.002).astype("Int8"),
            "forward_return": forward,
        },
        index=frame.index,
    )


def _labels_across_gaps(frame: pd.DataFrame, horizon: int = 10) -> pd.DataFrame:
    """Leaky labels: the forward return ignores segment breaks."""
    close = frame["close"]
    forward = close.shift(-horizon) / close - 1.0
    known = forward.notna()
    return pd.DataFrame(
        {
            "label_buy": (forward > 0.002).astype("Int8").where(known, pd.NA),
            "label_sell": (forward < -0.002).astype("Int8").where(known, pd.NA),
            "forward_return": forward,
        },
        index=frame.index,
    )


def test_labels_known_without_their_horizon_are_reported(two_markets: pd.DataFrame) -> None:
    report = check_lookahead(two_markets, cut_points=3, label_fn=_labels_ignoring_the_end)

    assert {check.name for check in report.leaks} == set(LABEL_COLUMNS)
    first = report.check("forward_return").first
    assert first is not None and first.truncated_value == 0.0


def test_labels_across_a_segment_gap_are_reported(two_markets: pd.DataFrame) -> None:
    bars = two_markets.copy()
    btc = bars.index[bars["market"] == "KRW-BTC"]
    later = btc[250:]
    bars.loc[later, "ts"] = bars.loc[later, "ts"] + SEGMENT_GAP * 4

    honest = check_lookahead(bars, cut_points=3)
    leaky = check_lookahead(bars, cut_points=3, label_fn=_labels_across_gaps)

    assert honest.ok, [check.to_json() for check in honest.leaks]
    assert {check.name for check in leaky.leaks} == set(LABEL_COLUMNS)
    first = leaky.check("forward_return").first
    assert first is not None and first.market == "KRW-BTC"
    assert first.cut is None  # caught on the full data: the gap is there
    # The last 10 bars of the first segment.
    assert first.ts == bars.loc[btc[240], "ts"]


def test_cli_exits_0_on_the_bundled_candles() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "lookahead",
            "--candles",
            str(DEMO_CANDLES),
            "--model",
            str(DEMO_MODELS),
            "--cut-points",
            "3",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["leaks"] == []
    assert report["model_id"] is not None
    assert all(len(cuts) == 3 for cuts in report["cuts"].values())


def test_cli_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "lookahead", "--candles", str(tmp_path / "none.pq")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "not found" in result.stderr
