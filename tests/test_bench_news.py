"""bench/news.py runs end to end on a few items: its JSON carries the rates and the ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_news_benchmark_tags_scores_and_times_against_its_references() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "news.py"), "--items=400", "--repeats=1", "--json"],
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
