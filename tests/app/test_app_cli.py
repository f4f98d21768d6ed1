"""The `lxa` command as a user runs it (a subprocess, a fresh data directory)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

LXA = [sys.executable, "-m", "app.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_demo_json_reports_600_runs_and_the_journal_holds_one_decision_per_run(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [*LXA, "demo", "--minutes", "600", "--no-serve", "--json"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["runs"] == 600
    for key in ("holds", "trades", "fees", "final_equity", "buy_and_hold_equity"):
        assert key in summary
    assert sum(summary["holds"].values()) + summary["trades"] - summary["sells"] >= 0
    journal = Path(summary["journal"].removeprefix("sqlite:///"))
    with sqlite3.connect(journal) as db:
        (decisions,) = db.execute("select count(*) from decisions").fetchone()
        (holds,) = db.execute("select count(*) from decisions where action='hold'").fetchone()
    assert decisions == 600
    assert holds == sum(summary["holds"].values())
    # Trained on 2025-09-01..15 (its policy's hold-out: 09-15..17), before the replayed days.
    assert "2025-09-15" in summary["model_trained_on"]


def test_demo_resume_continues_the_last_demo_account(tmp_path: Path) -> None:
    first = subprocess.run(
        [*LXA, "demo", "--minutes", "5", "--no-serve", "--json"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    second = subprocess.run(
        [*LXA, "demo", "--minutes", "7", "--no-serve", "--json", "--resume"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert two["session_id"] == one["session_id"]
    assert two["runs"] == 12


def test_demo_reports_the_bundled_model_as_unproven_in_json_and_in_words(tmp_path: Path) -> None:
    as_json = subprocess.run(
        [*LXA, "demo", "--minutes", "2", "--no-serve", "--json"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    in_words = subprocess.run(
        [*LXA, "demo", "--minutes", "2", "--no-serve"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    status = summary["model_status"]
    # The bundled set's policy made no trade on its hold-out window: no evidence of an edge.
    assert (status["model_id"], status["proven"]) == (summary["model_id"], False)
    assert (status["live"], status["block_entries"]) == (False, False)
    assert "hold-out window" in status["verdict"]
    assert summary["model_warning"].startswith(f"unproven model {summary['model_id']}: ")
    assert "paper trading goes on" in summary["model_warning"]
    assert in_words.returncode == 0, in_words.stderr
    warnings = [line for line in in_words.stdout.splitlines() if line.startswith("WARNING: ")]
    assert warnings == [f"WARNING: {summary['model_warning']}"]


def test_graph_prints_mermaid_of_the_compiled_graph(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LXA, "graph"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0
    assert "graph TD;" in result.stdout
    assert "groq_check -.-> ollama_check;" in result.stdout
    assert "groq_check -.-> hold;" in result.stdout


def test_help_explains_each_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LXA, "--help"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0
    for command in ("demo", "run", "graph", "train"):
        assert command in result.stdout


def test_bad_setting_exits_with_a_message_naming_it(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"LXA_INITIAL_CAPITAL_KRW": "-1"}

    result = subprocess.run(
        [*LXA, "demo", "--minutes", "1", "--no-serve", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "LXA_INITIAL_CAPITAL_KRW" in result.stderr


def test_prompts_check_passes_on_the_shipped_prompts(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LXA, "prompts", "check"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "groq_check@" in result.stdout and "sizing@" in result.stdout


def test_prompts_check_fails_naming_the_file_and_the_undeclared_variable(tmp_path: Path) -> None:
    from prompts.loader import DEFAULT_PROMPTS_DIR

    folder = tmp_path / "prompts"
    folder.mkdir()
    for prompt in DEFAULT_PROMPTS_DIR.glob("*.md"):
        text = prompt.read_text(encoding="utf-8")
        if prompt.name == "sizing.md":
            text = text.replace("{{ market }}", "{{ market }} {{ leverage }}", 1)
        (folder / prompt.name).write_text(text, encoding="utf-8")

    result = subprocess.run(
        [*LXA, "prompts", "check", "--dir", str(folder)],
        env=_env(tmp_path) | {"COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "sizing.md" in result.stderr and "'leverage'" in result.stderr
