"""`lxa train`'s policy steps and `lxa walkforward` on real candles (Upbit and Binance)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.backtest import resolve_backtest_model, run_backtest
from app.settings import Settings
from app.training import HISTORY, TrainedSet, train_model_set
from app.walkforward import run_walkforward, run_windows
from app.wiring import BUNDLED_MODELS
from evaluation.walkforward_report import Window, plan_windows
from ml.data import load_candles
from ml.registry import latest_model_dir

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
UPBIT = SHARED / "candles_upbit_1m.parquet"
BINANCE = SHARED / "candles_binance_1m.parquet"
needs_shared = pytest.mark.skipif(
    not (UPBIT.is_file() and BINANCE.is_file()), reason="../shared/data is not here"
)


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def binance_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedSet, pd.DataFrame]:
    """A quick set trained on eight real Binance days (2023-04-01..09)."""
    if not BINANCE.is_file():
        pytest.skip("../shared/data is not here")
    tmp = tmp_path_factory.mktemp("binance")
    candles = load_candles([str(BINANCE)])
    candles = candles[
        (candles["ts"] >= pd.Timestamp("2023-04-01", tz="UTC"))
        & (candles["ts"] < pd.Timestamp("2023-04-10", tz="UTC"))
    ].reset_index(drop=True)
    trained = train_model_set(
        candles, tmp / "models", _settings(tmp), until=datetime(2023, 4, 9, tzinfo=UTC)
    )
    return trained, candles


@needs_shared
def test_a_trained_set_carries_its_calibration_and_its_policys_hold_out_result(
    binance_set: tuple[TrainedSet, pd.DataFrame],
) -> None:
    trained, _ = binance_set
    meta = trained.meta
    evaluation = meta["policy_evaluation"]
    trained_until = max(pd.Timestamp(w["last_ts"]) for w in meta["training_window"].values())
    calibrated_until = pd.Timestamp(meta["expected_return"]["window"]["end_ts"])

    assert meta["expected_return"]["kind"] == "binned-scaled-return"
    assert list(meta["expected_return"]["z"]) == sorted(meta["expected_return"]["z"])
    # The hold-out window starts after every bar the models and the calibration used.
    assert pd.Timestamp(evaluation["window"]["first_ts"]) > trained_until
    assert pd.Timestamp(evaluation["window"]["first_ts"]) > calibrated_until
    assert pd.Timestamp(evaluation["window"]["last_ts"]) < pd.Timestamp("2023-04-09", tz="UTC")
    assert set(evaluation["window"]["markets"]) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"}
    assert evaluation["params"]["entry_margin_bps"] == 10.0
    for key in ("buy_and_hold_return", "vol_baseline_return", "random_entries", "strategy"):
        assert key in evaluation
    assert isinstance(evaluation["proven"], bool) and evaluation["verdict"]


@needs_shared
def test_binance_candles_backtest_through_the_engine_with_a_registry_folder(
    binance_set: tuple[TrainedSet, pd.DataFrame], tmp_path: Path
) -> None:
    trained, _ = binance_set
    candles = load_candles([str(BINANCE)])
    later = candles[
        (candles["ts"] >= pd.Timestamp("2023-04-10", tz="UTC"))
        & (candles["ts"] < pd.Timestamp("2023-04-11", tz="UTC"))
    ]
    path = tmp_path / "later.parquet"
    later.to_parquet(path)

    metrics = asyncio.run(
        run_backtest(
            _settings(tmp_path),
            candles_paths=[path],
            report_dir=tmp_path / "report",
            model_dir=trained.model_dir.parent,  # the registry folder: its newest set
            minutes=300,
        )
    )

    assert metrics["model_id"] == trained.meta["model_id"]
    assert metrics["markets"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    assert metrics["bars"] == 300
    assert metrics["policy"]["params"]["fee_rate"] == 0.0005
    assert metrics["fast_path"]["entries"] == metrics["buys"]
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["bars"] == 300


def test_a_registry_folder_resolves_to_its_newest_set() -> None:
    assert resolve_backtest_model(BUNDLED_MODELS) == latest_model_dir(BUNDLED_MODELS)


def _grid(*spans: tuple[str, str]) -> pd.DataFrame:
    rows = []
    for start, end in spans:
        for ts in pd.date_range(start, end, freq="1min", tz="UTC", inclusive="left"):
            rows.append({"market": "X", "ts": ts})
    return pd.DataFrame(rows)


def test_windows_never_straddle_a_gap_and_test_after_their_training() -> None:
    candles = _grid(("2021-01-01", "2021-01-20"), ("2021-03-01", "2021-03-10"))

    windows = plan_windows(candles, train_days=7, test_days=3, step_days=3)

    assert [(w.test_start.strftime("%m-%d"), w.test_end.strftime("%m-%d")) for w in windows] == [
        ("01-08", "01-11"),
        ("01-11", "01-14"),
        ("01-14", "01-17"),
        ("01-17", "01-20"),
        ("03-08", "03-10"),  # 2 of 3 test days: kept (more than half)
    ]
    for w in windows:
        assert w.train_start < w.test_start < w.test_end
        assert (w.test_start - w.train_start).days == 7


def test_bad_window_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        plan_windows(_grid(("2021-01-01", "2021-01-02")), train_days=0, test_days=1, step_days=1)


@needs_shared
def test_walkforward_on_real_upbit_candles_writes_its_report(tmp_path: Path) -> None:
    candles = load_candles([str(UPBIT)])

    report: dict[str, Any] = run_walkforward(
        candles,
        _settings(tmp_path),
        tmp_path / "wf",
        train_days=8,
        test_days=2,
        seeds=3,
        max_windows=1,
        files=[str(UPBIT)],
    )
    window = report["windows"][0]
    model_dir = next((tmp_path / "wf" / "models").iterdir())
    meta = json.loads((model_dir / "meta.json").read_text())
    seen_until = max(pd.Timestamp(w["last_ts"]) for w in meta["training_window"].values())

    assert window["test_start"] == "2025-09-09T00:00:00+00:00"
    assert seen_until < pd.Timestamp(window["test_start"])
    assert pd.Timestamp(meta["policy_evaluation"]["window"]["last_ts"]) < pd.Timestamp(
        window["test_start"]
    )
    assert set(window) >= {"configured", "swept", "sweep", "holdout", "model_id"}
    assert window["swept"]["random_entries"]["seeds"] == 3
    assert report["total"]["swept"]["windows"] == 1
    assert (tmp_path / "wf" / "report.html").read_text().count("<img") == 1


def _window_summary(
    candles: pd.DataFrame, window: Window, settings: Settings, models_dir: Path, **kw: Any
) -> dict[str, Any]:
    """A cheap stand-in for `run_window` (a worker process imports it by name): what it got."""
    kw["log"](f"window {window.number}: {len(candles)} rows")
    return {
        "window": window.number,
        "rows": len(candles),
        "first": candles["ts"].min().isoformat(),
        "last": candles["ts"].max().isoformat(),
        "pid": os.getpid(),
    }


@needs_shared
def test_walkforward_windows_in_worker_processes_get_only_their_candles_and_keep_their_order(
    tmp_path: Path,
) -> None:
    candles = load_candles([str(UPBIT)])
    windows = plan_windows(candles, train_days=3, test_days=1, step_days=1)[:3]
    lines: list[str] = []
    args = (_settings(tmp_path), tmp_path / "models", 2, {}, lines.append)

    one = run_windows(candles, windows, *args, workers=1, run=_window_summary)
    lines_one = list(lines)
    lines.clear()
    three = run_windows(candles, windows, *args, workers=3, run=_window_summary)

    assert [r["window"] for r in three] == [w.number for w in windows]
    assert [{k: v for k, v in r.items() if k != "pid"} for r in three] == [
        {k: v for k, v in r.items() if k != "pid"} for r in one
    ]
    assert {r["pid"] for r in one} == {os.getpid()}
    assert os.getpid() not in {r["pid"] for r in three}
    assert sorted(lines) == sorted(lines_one)  # each child's log lines came back
    for record, window in zip(three, windows, strict=True):
        assert pd.Timestamp(record["first"]) >= window.train_start - HISTORY
        assert pd.Timestamp(record["last"]) < window.test_end
    with pytest.raises(ValueError, match="workers"):
        run_windows(candles, windows, *args, workers=0, run=_window_summary)


@needs_shared
def test_a_quick_set_whose_validation_split_falls_in_a_gap_still_gets_its_policy_result(
    tmp_path: Path,
) -> None:
    # Binance April 2023 and Upbit September 2025: the quick set's validation split (the last
    # 20% of the time span) opens in the two-year gap between them.
    candles = load_candles([str(BINANCE), str(UPBIT)])
    candles = candles[
        (
            (candles["ts"] >= pd.Timestamp("2023-04-01", tz="UTC"))
            & (candles["ts"] < pd.Timestamp("2023-04-05", tz="UTC"))
        )
        | (candles["ts"] >= pd.Timestamp("2025-09-10", tz="UTC"))
    ].reset_index(drop=True)

    trained = train_model_set(
        candles, tmp_path / "models", _settings(tmp_path), until=datetime(2025, 9, 18, tzinfo=UTC)
    )

    window = trained.meta["expected_return"]["window"]
    assert pd.Timestamp(window["first_ts"]) >= pd.Timestamp("2025-09-10", tz="UTC")
    assert trained.meta["policy_evaluation"]["window"]["bars"] > 0
