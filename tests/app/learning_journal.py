"""A journal whose reviewers are right or wrong by construction (real candles, scripted verdicts).

The candles are the bundled real Upbit 1m candles. Every minute of three hours from `T0` is a
decision journaling all four markets' real closes; every fifth minute the ML proposes a buy of
KRW-BTC, every fifth plus two a sell. The verdicts are scripted against the real forward
return (computed here from the candles, independently of the code under test):

- hour 0: both reviewers are oracles (they agree exactly when following the proposal pays
  after fees), so every verdict is right;
- hour 1: both are anti-oracles, so every verdict is wrong;
- hour 2: nobody is asked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from app.wiring import BUNDLED_CANDLES
from ml.data import load_candles
from store.journal import Journal

T0 = pd.Timestamp("2025-09-19T06:00Z").to_pydatetime()
HOURS = 3
HORIZON = 10
FEE = 0.0005
SESSION = "learn"


def bundled_candles() -> pd.DataFrame:
    """The bundled real Upbit 1m candles (2025-09-19..21, four markets)."""
    return load_candles([BUNDLED_CANDLES])


def closes_by_market(candles: pd.DataFrame) -> dict[str, pd.Series]:
    """Each market's closes indexed by bar open time."""
    return {
        str(m): one.set_index("ts")["close"].astype(float)
        for m, one in candles.groupby("market", sort=True)
    }


def true_net(closes: pd.Series, at: datetime, action: str) -> float:
    """The net return of following `action` at `at`, straight from the candles."""
    forward = closes[pd.Timestamp(at) + pd.Timedelta(minutes=HORIZON)] / closes[pd.Timestamp(at)]
    move = float(forward) - 1.0
    return move - 2 * FEE if action == "buy" else -move


def scripted_decisions(candles: pd.DataFrame) -> list[dict[str, Any]]:
    """The decisions described in the module docstring, as journal rows."""
    closes = closes_by_market(candles)
    btc = closes["KRW-BTC"]
    rows = []
    for minute in range(HOURS * 60):
        at = T0 + timedelta(minutes=minute)
        stamp = pd.Timestamp(at)
        action = "buy" if minute % 5 == 0 else "sell" if minute % 5 == 2 else "hold"
        verdicts: dict[str, Any] = {}
        if action != "hold" and minute < 120:
            pays = true_net(btc, at, action) > 0
            oracle = minute < 60
            agree = pays if oracle else not pays
            verdict = action if agree else "hold"
            verdicts = {"groq": {"verdict": verdict}, "ollama": {"verdict": verdict}}
        rows.append(
            {
                "run_id": f"{SESSION}-{minute:04d}",
                "session_id": SESSION,
                "bar_ts": at,
                "trigger": "bar",
                "action": "hold",
                "market": "KRW-BTC",
                "reason": "scripted",
                "duration_ms": 1.0,
                "nodes": {
                    "input": {
                        "closes": {m: float(s[stamp]) for m, s in closes.items() if stamp in s}
                    },
                    "ml_signal": {
                        "proposal": {
                            "action": action,
                            "market": "KRW-BTC",
                            "policy": {"params": {"horizon_minutes": HORIZON}},
                        }
                    },
                },
                "verdicts": verdicts,
            }
        )
    return rows


def scripted_journal(url: str, candles: pd.DataFrame) -> Journal:
    """A migrated journal holding the scripted decisions."""
    journal = Journal.open(url)
    for row in scripted_decisions(candles):
        journal.record_decision(row)  # type: ignore[arg-type]
    return journal
