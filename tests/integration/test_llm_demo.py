"""`lxa demo` with both checks live: real ChatGroq and ChatOllama against protocol servers.

The servers stand in for Groq and Ollama the way any server speaking their protocols would:
their "model" agrees with every proposal (and sizes at 30%), so candidate trades go through.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from llm_servers import GroqServer, OllamaServer, Text

_ACTION = re.compile(r"Proposed action: (buy|sell)")


def agreeing_model(request_json: Any) -> Text:
    """Answer a review by repeating the proposed action; answer a sizing request at 30%."""
    messages = request_json.get("messages", [])
    text = "\n".join(str(m.get("content", "")) for m in messages)
    if "investment_ratio" in text:
        return Text(
            json.dumps(
                {
                    "investment_ratio": 0.3,
                    "stop_loss_pct": 1.5,
                    "take_profit_pct": 3.0,
                    "max_loss_acceptable": 1.5,
                    "take_profit_target": 3.0,
                    "reasoning": "medium signal",
                }
            )
        )
    found = _ACTION.search(text)
    action = found.group(1) if found else "hold"
    return Text(json.dumps({"verdict": action, "confidence": 0.7, "reasoning": "agree"}))


# Holds the policy decides before any reviewer is asked (policy.rules.Rule), and the warm-up.
POLICY_HOLDS = ", ".join(
    f"'{r}'"
    for r in (
        "warming_up",
        "no_signal",
        "no_edge",
        "min_hold",
        "keep",
        "blocked",
        "reentry_pause",
        "turnover_budget",
        "max_positions",
    )
)


def test_demo_runs_with_both_checks_live_and_journals_both_verdicts(
    tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.default = agreeing_model
    ollama_server.default = agreeing_model
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env |= {
        "LXA_DATA_DIR": str(tmp_path / "data"),
        "LXA_GROQ_API_KEY": "test-key",
        "LXA_GROQ_BASE_URL": groq_server.base_url,
        "LXA_OLLAMA_HOST": ollama_server.base_url,
        "LXA_SIZING_PROVIDER": "ollama",
        # The bundled model has no edge after fees (the default policy never trades it); a
        # policy that enters on any forecast sends runs through both checks.
        "LXA_POLICY_ENTRY_MARGIN_BPS": "-1000",
        "LXA_POLICY_EXIT_MARGIN_BPS": "-1000",
        "LXA_POLICY_REENTRY_PAUSE_MINUTES": "0",
    }

    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--minutes", "400", "--no-serve", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    journal = Path(summary["journal"].removeprefix("sqlite:///"))
    with sqlite3.connect(journal) as db:
        candidates = db.execute(
            "select run_id from decisions where reason not in (" + POLICY_HOLDS + ")"
        ).fetchall()
        (groq_calls_sent,) = db.execute(
            "select count(*) from llm_calls where node = 'groq_check' and not cached"
        ).fetchone()
        (untokened,) = db.execute(
            "select count(*) from llm_calls where provider in ('groq', 'ollama')"
            " and not cached and (input_tokens is null or output_tokens is null)"
        ).fetchone()
        calls = db.execute("select run_id, node, provider, model, prompt_ref from llm_calls")
        by_run: dict[str, dict[str, tuple[str, str, str]]] = {}
        for run_id, node, provider, model, prompt_ref in calls:
            by_run.setdefault(run_id, {})[node] = (provider, model, prompt_ref)
    assert candidates, "the replay produced no candidate trade to check"
    for (run_id,) in candidates:
        assert by_run[run_id]["groq_check"][:2] == ("groq", "llama-3.1-8b-instant")
        assert by_run[run_id]["ollama_check"][:2] == ("ollama", "qwen2.5:14b")
        assert by_run[run_id]["groq_check"][2].startswith("groq_check@")
    assert summary["trades"] > 0
    assert untokened == 0
    assert len(groq_server.chat_requests) == groq_calls_sent  # the rest came from the cache
