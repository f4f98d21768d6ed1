"""bench/backtest.py runs end to end on a slice: it prints every figure (timings not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "backtest.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_backtest_benchmark_prints_both_paths_and_the_reference() -> None:
    done = _run("--minutes=12", "--fast-bars=300", "--repeats=1")

    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    for label in (
        "backtesting.py (engine's bars)",
        "engine: bar loop",
        "engine: simulate() call",
        "backtesting.py (fast path's bars)",
        "fast: policy.simulate",
        "fast: prepare (once)",
    ):
        assert any(line.startswith(label) for line in lines), label
    result = json.loads(lines[-1])
    assert result["engine_bar_closes"] == 11  # the loop is timed from the first bar's end
    assert result["engine_markets"] == 4
    assert result["fast_bar_closes"] == 300
    for key in (
        "engine_market_bars_per_s",
        "engine_call_market_bars_per_s",
        "engine_ratio_vs_reference",
        "fast_market_bars_per_s",
        "fast_ratio_vs_reference",
        "fast_prepare_s",
        "reference_market_bars_per_s",
        "fast_reference_market_bars_per_s",
    ):
        assert result[key] > 0, key
    assert result["reference_market_bars"] == 4 * 12  # every demo market has each bar
