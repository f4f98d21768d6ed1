"""`lxa halt`, `lxa resume` and `lxa status` as a user runs them (subprocess, fresh data dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from store.journal import Journal

LXA = [sys.executable, "-m", "app.cli"]


def lxa(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [*LXA, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_halt_then_status_shows_halted_with_the_reason(tmp_path: Path) -> None:
    halted = lxa(tmp_path, "halt", "--reason", "test")
    status = lxa(tmp_path, "status")

    assert halted.returncode == 0, halted.stderr
    assert "state: halted" in halted.stdout
    assert status.returncode == 0, status.stderr
    assert "state: halted" in status.stdout
    assert "reason: test" in status.stdout
    assert "by cli" in status.stdout


def test_halt_flatten_then_resume_is_written_to_the_journal_at_the_data_dir(
    tmp_path: Path,
) -> None:
    halted = lxa(tmp_path, "halt", "--flatten", "--reason", "crash", "--json")
    resumed = lxa(tmp_path, "resume", "--reason", "calm", "--json")

    assert halted.returncode == 0, halted.stderr
    assert json.loads(halted.stdout)["flatten_requested"] is True
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "active"
    with Journal.open(f"sqlite:///{tmp_path / 'data' / 'journal.db'}") as journal:
        row = journal.read_trading_control()
        events = [e for e in journal.events_after(0) if e["type"] == "trading_state"]
    assert (row["state"], row["reason"], row["flatten_requested"]) == ("active", "calm", False)
    assert [e["payload"]["state"] for e in events] == ["halted", "active"]


def test_status_on_a_fresh_data_dir_reads_active(tmp_path: Path) -> None:
    status = lxa(tmp_path, "status", "--json")

    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "flatten_requested": False,
        "reason": "",
        "state": "active",
        "updated_at": None,
        "updated_by": None,
        "effective_state": "active",
        "effective_reason": "",
        "entries_allowed": True,
        "monthly": None,
        "daily": None,
        "model_status": None,
    }


def test_halt_with_an_empty_reason_fails_and_changes_nothing(tmp_path: Path) -> None:
    refused = lxa(tmp_path, "halt", "--reason", " ")
    status = lxa(tmp_path, "status", "--json")

    assert refused.returncode == 2
    assert "--reason" in refused.stderr
    assert json.loads(status.stdout)["state"] == "active"


MONTHLY_REASON = (
    "monthly loss cap: -3.2% since 2026-12 began at 1000000 (cap 3.0%); entries resume next "
    "month or on `lxa resume`"
)
UNPROVEN = "its policy made no trade on its hold-out window: no evidence of an edge"


def seed_engine_figures(tmp_path: Path) -> None:
    """Write what a running engine leaves in the journal: the monthly cap and the model status."""
    now = datetime.now(UTC)
    (tmp_path / "data").mkdir(exist_ok=True)
    with Journal.open(f"sqlite:///{tmp_path / 'data' / 'journal.db'}") as journal:
        journal.write_loss_limit(
            "monthly",
            {
                "month": "2026-12",
                "start_equity": "1000000",
                "last_equity": "968000",
                "loss_pct": 3.2,
                "cap_pct": 3.0,
                "breached": True,
                "reason": MONTHLY_REASON,
                "breached_at": "2026-12-14T03:21:00+00:00",
                "seen_at": now.isoformat(),
            },
        )
        status = {
            "model_id": "lgbm-quick-x",
            "proven": False,
            "verdict": UNPROVEN,
            "live": False,
            "allow_unproven_model": False,
            "block_entries": False,
            "evaluation_window": None,
            "evaluation_return": 0.0,
            "evaluation_entries": 0,
            "buy_and_hold_return": 0.0194,
        }
        journal.record_event(None, "model_status", status, now)


def test_status_shows_the_breached_monthly_cap_how_to_clear_it_and_the_unproven_model(
    tmp_path: Path,
) -> None:
    seed_engine_figures(tmp_path)

    status = lxa(tmp_path, "status")

    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "state: active" in lines  # the operator's choice
    assert "effective: reducing (the monthly loss cap, below)" in lines
    assert "entries: refused" in lines
    assert (
        "monthly cap 2026-12: loss 3.20% of 3.00% cap (BREACHED: entries stopped for the month)"
        in lines
    )
    assert "  equity: 1,000,000 KRW at the start, 968,000 KRW last" in lines
    assert f"  reason: {MONTHLY_REASON}" in lines
    clear = next(line for line in lines if line.startswith("  to clear: "))
    assert "2027-01-01 (KST)" in clear
    assert "`lxa resume`" in clear
    assert f"model: lgbm-quick-x (UNPROVEN): {UNPROVEN}" in lines
    assert any(line.strip().startswith("paper trading goes on") for line in lines)


def test_status_json_carries_the_monthly_cap_and_the_model_status(tmp_path: Path) -> None:
    seed_engine_figures(tmp_path)

    status = lxa(tmp_path, "status", "--json")

    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert (body["state"], body["effective_state"], body["entries_allowed"]) == (
        "active",
        "reducing",
        False,
    )
    monthly = body["monthly"]
    assert (monthly["month"], monthly["loss_pct"], monthly["cap_pct"]) == ("2026-12", 3.2, 3.0)
    assert (monthly["breached"], monthly["reason"]) == (True, MONTHLY_REASON)
    assert monthly["clears_on"] == "2027-01-01"
    assert (body["model_status"]["proven"], body["model_status"]["verdict"]) == (False, UNPROVEN)


def test_resume_after_a_monthly_breach_shows_it_pending_until_the_engine_clears_it(
    tmp_path: Path,
) -> None:
    seed_engine_figures(tmp_path)

    resumed = lxa(tmp_path, "resume", "--reason", "reviewed the month")
    status = lxa(tmp_path, "status", "--json")

    assert resumed.returncode == 0, resumed.stderr
    monthly = json.loads(status.stdout)["monthly"]
    assert monthly["resume_pending"] is True
    assert "next bar" in monthly["how_to_clear"]
