"""The crash loop (bench/faults.py): 25 kill -9 at random points of the live order and fill path.

Each kill is followed by a restart that must trade again without a hand edit; at the end the
journal must equal the fake exchange: nothing lost, duplicated or missing, positions equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_crash_loop_ends_with_the_journal_equal_to_the_exchange() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--kills", "25", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kills"] == 25
    assert result["orders_accepted"] > 25  # the loop got well into the path each time
    assert result["starts_reconciled"] == 26
    assert result["restarts_failed"] == 0, result["failures"]
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["fills_missing"] == 0
    assert result["position_mismatches"] == 0, (result["exchange_btc"], result["journal_btc"])
