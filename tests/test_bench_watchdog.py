"""bench/watchdog.py runs end to end (a few samples): its JSON carries the issue's keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_watchdog_benchmark_runs_and_sells_through_the_order_lane() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "watchdog.py"),
            "--ticks=100000",
            "--stream-ticks=1000",
            "--repeats=1",
            "--order-samples=3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["flags_identical"] is True
    assert result["stream_flags_identical"] is True
    assert result["tick_to_order_samples"] == 3
    assert result["tick_to_order_via_httpx"] == 0
    for key in ("batch_ratio_vs_pandas", "stream_p50_us", "stream_p99_us"):
        assert result[key] > 0
    assert 0 < result["tick_to_order_p50_ms"] <= result["tick_to_order_p99_ms"]
