"""`lxa backtest` on the bundled real candles: metrics, report files and refusals."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.backtest import LLM_OFF, AgreeReviewer, BacktestError, run_backtest
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS
from graph.review import ReviewRequest
from ml.registry import latest_model_dir
from store.journal import Journal

REQUIRED_KEYS = {
    "auc_buy",
    "baseline_auc_vol60",
    "auc_sell",
    "n_trades",
    "win_rate",
    "total_return",
    "buy_and_hold_return",
    "vol_baseline_return",
    "max_drawdown",
    "sharpe",
    "fees_paid",
    "per_market",
    "model_id",
    "candles",
    "warmup_bars",
    "bars",
    "notes",
}
PER_MARKET_KEYS = {
    "auc_buy",
    "baseline_auc_vol60",
    "auc_sell",
    "n_trades",
    "win_rate",
    "pnl_krw",
    "fees_paid",
    "buy_and_hold_return",
}


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def backtest_300(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp_path = tmp_path_factory.mktemp("backtest")
    report = tmp_path / "report"
    metrics = asyncio.run(
        run_backtest(
            _settings(tmp_path), candles_paths=[BUNDLED_CANDLES], report_dir=report, minutes=300
        )
    )
    return metrics, report


def test_agree_reviewer_passes_the_proposed_action_under_its_own_name() -> None:
    request = ReviewRequest(
        role="groq_check",
        action="buy",
        market="KRW-BTC",
        entry_probability=0.7,
        exit_probability=0.1,
        features={},
        position=None,
    )
    verdict = asyncio.run(AgreeReviewer().review(request))
    assert verdict.verdict == "buy"
    assert verdict.reviewer == LLM_OFF


def test_backtest_writes_metrics_with_every_required_key_and_finite_numbers(
    backtest_300: tuple[dict[str, Any], Path],
) -> None:
    metrics, report = backtest_300
    written = json.loads((report / "metrics.json").read_text())
    assert set(written) >= REQUIRED_KEYS
    assert written["bars"] == 300
    assert set(written["per_market"]) == {"KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP"}
    for row in written["per_market"].values():
        assert set(row) >= PER_MARKET_KEYS
    for key in ("auc_buy", "baseline_auc_vol60", "auc_sell"):
        assert 0.0 <= written[key] <= 1.0
    for key in ("total_return", "buy_and_hold_return", "vol_baseline_return", "fees_paid"):
        assert math.isfinite(written[key])
    assert 0.0 <= written["max_drawdown"] < 1.0
    assert written["sharpe"] is None or math.isfinite(written["sharpe"])
    assert written["candles"]["first_ts"].startswith("2025-09-19")
    assert written == json.loads(json.dumps(metrics))


def test_backtest_trades_and_fees_agree_with_its_journal(
    backtest_300: tuple[dict[str, Any], Path],
) -> None:
    metrics, report = backtest_300
    with Journal.open(f"sqlite:///{report / 'journal.db'}") as journal:
        closed = [
            e for e in journal.events_after(0, limit=100_000) if e["type"] == "position_closed"
        ]
        fees = float(journal.total_fees())
    assert metrics["n_trades"] == len(closed)
    assert metrics["n_trades"] == sum(m["n_trades"] for m in metrics["per_market"].values())
    assert metrics["fees_paid"] == pytest.approx(fees, abs=0.01)
    pnl = sum(m["pnl_krw"] for m in metrics["per_market"].values())
    assert pnl == pytest.approx(metrics["final_equity"] - metrics["initial_equity"], abs=1.0)
    assert metrics["reviewers"] == LLM_OFF


def test_backtest_writes_the_chart_and_a_self_contained_report(
    backtest_300: tuple[dict[str, Any], Path],
) -> None:
    _, report = backtest_300
    assert (report / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "vol_baseline_return" in page and "2025-09-15" in page  # definitions, training window


def test_backtest_refuses_a_model_whose_training_window_overlaps_the_candles(
    tmp_path: Path,
) -> None:
    bundled = latest_model_dir(BUNDLED_MODELS)
    assert bundled is not None
    model = tmp_path / "model"
    shutil.copytree(bundled, model)
    meta = json.loads((model / "meta.json").read_text())
    for window in meta["training_window"].values():
        window["last_ts"] = "2025-09-20T00:00:00+00:00"
    (model / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BacktestError, match="overlaps"):
        asyncio.run(
            run_backtest(
                _settings(tmp_path),
                candles_paths=[BUNDLED_CANDLES],
                report_dir=tmp_path / "report",
                model_dir=model,
                minutes=10,
            )
        )
    assert not (tmp_path / "report" / "metrics.json").exists()


def test_backtest_refuses_a_market_name_that_is_not_a_symbol_naming_it(tmp_path: Path) -> None:
    candles = pd.read_parquet(BUNDLED_CANDLES)
    candles.loc[candles["market"] == "KRW-BTC", "market"] = "btc/usdt;"
    path = tmp_path / "mixed.parquet"
    candles.to_parquet(path)
    with pytest.raises(BacktestError, match="btc/usdt;"):
        asyncio.run(
            run_backtest(
                _settings(tmp_path), candles_paths=[path], report_dir=tmp_path / "r", minutes=10
            )
        )


def test_backtest_command_exits_zero_and_writes_the_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    report = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "backtest",
            "--candles",
            str(BUNDLED_CANDLES),
            "--report",
            str(report),
            "--minutes",
            "200",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((report / "metrics.json").read_text())["bars"] == 200
    assert (report / "report.html").is_file()


def test_the_fast_path_reports_the_engine_paths_figures(tmp_path: Path) -> None:
    # A loose policy that trades often (in and out at the minimum hold); the checks off, so
    # only the path differs: the engine's replay (the default with the checks off) against the
    # fast path (the simulator, the graph at each proposed order).
    settings = _settings(tmp_path).model_copy(
        update={
            "policy_entry_margin_bps": -1000.0,
            "policy_exit_margin_bps": -1000.0,
            "policy_reentry_pause_minutes": 0,
            "policy_max_entries_per_day": 1440,
        }
    )
    reports = {
        path: asyncio.run(
            run_backtest(
                settings,
                candles_paths=[BUNDLED_CANDLES],
                report_dir=tmp_path / path,
                minutes=180,
                engine_path=None if path == "engine" else False,
            )
        )
        for path in ("engine", "fast")
    }

    engine, fast = reports["engine"], reports["fast"]
    assert (engine["path"]["name"], fast["path"]["name"]) == ("engine", "fast")
    assert engine["path"]["graph_runs"] == 180 > fast["path"]["graph_runs"] > 0
    assert engine["n_trades"] > 10
    for key in (
        "total_return",
        "max_drawdown",
        "fees_paid",
        "final_equity",
        "buy_and_hold_return",
        "vol_baseline_return",
        "sharpe",
    ):
        assert fast[key] == pytest.approx(engine[key], rel=1e-9, abs=1e-9), key
    for key in ("n_trades", "buys", "sells", "protection_exits", "emergency_exits", "holds"):
        assert fast[key] == engine[key], key
    assert fast["policy"]["exits"] == engine["policy"]["exits"]
    assert fast["policy"]["holds_by_rule"] == engine["policy"]["holds_by_rule"]
    trip = ("market", "opened_at", "closed_at", "minutes", "exit_reason")
    assert [tuple(t[k] for k in trip) for t in fast["trades"]] == [
        tuple(t[k] for k in trip) for t in engine["trades"]
    ]
    for market, row in engine["per_market"].items():
        assert fast["per_market"][market]["pnl_krw"] == pytest.approx(row["pnl_krw"], abs=0.01)
    assert any("fast path" in note for note in fast["notes"])
    assert (tmp_path / "fast" / "report.html").is_file()
