"""`lxa halt`, `lxa resume` and `lxa status` as a user runs them (subprocess, fresh data dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    }


def test_halt_with_an_empty_reason_fails_and_changes_nothing(tmp_path: Path) -> None:
    refused = lxa(tmp_path, "halt", "--reason", " ")
    status = lxa(tmp_path, "status", "--json")

    assert refused.returncode == 2
    assert "--reason" in refused.stderr
    assert json.loads(status.stdout)["state"] == "active"
