"""bench/news.py runs end to end on a few items and a few latency runs: its JSON carries the
rates, the latencies and the ratios."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def test_the_news_benchmark_tags_scores_and_times_against_its_references() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "news.py"),
            "--items=400",
            "--repeats=1",
            "--latency-runs=3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["items"] == result["parsed_entries"] == 400
    assert 0 < result["tagged_items"] < 400  # the lookalikes are tagged to no coin
    assert result["coin_scores"] >= result["tagged_items"]
    for key in ("ours_items_per_s", "naive_items_per_s", "parse_items_per_s"):
        assert result[key] > 0
    assert result["ratio_ours_vs_naive"] > 0 and result["ratio_ours_vs_parse"] > 0
    assert 0 < result["naive_same_coins"] < 1  # boundaries and excluded names make a difference


def bench_news() -> ModuleType:
    """bench/news.py as a module (its file name would shadow the `news` package on sys.path)."""
    spec = importlib.util.spec_from_file_location("bench_news", ROOT / "bench" / "news.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_latency_runs_sell_on_every_item_and_time_against_the_tick_path() -> None:
    result = bench_news().latency(2)

    # Every run's item sold the held coin (the bench raises otherwise); the LLM scored each.
    assert result["latency_runs"] == 2 and result["latency_llm_calls"] == 2
    for path in ("news_lexicon", "news_llm", "tick"):
        p50, p99 = result[f"{path}_to_sell_p50_ms"], result[f"{path}_to_sell_p99_ms"]
        assert 0 < p50 <= p99
    assert result["ratio_news_lexicon_vs_tick_p50"] > 0 and result["ratio_news_llm_vs_tick_p50"] > 0
