"""`lxa llm check` end to end: the CLI process, the real clients, the local protocol servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from llm_servers import Endless, GroqServer, HttpError, OllamaServer, Text

REPO = Path(__file__).resolve().parents[2]


def answering_model(request_json: Any) -> Text:
    """Answer a sizing prompt with sizing JSON and a review prompt with a buy verdict."""
    text = "\n".join(str(m.get("content", "")) for m in request_json.get("messages", []))
    if "investment_ratio" in text:
        sizing = {
            "investment_ratio": 0.25,
            "stop_loss_pct": 1.2,
            "take_profit_pct": 2.5,
            "reasoning": "medium signal, calm market",
        }
        return Text(json.dumps(sizing), completion_tokens=31)
    verdict = {"verdict": "buy", "confidence": 0.7, "reasoning": "RSI 61 with a rising MACD"}
    return Text(json.dumps(verdict), completion_tokens=23)


def run_check(
    tmp_path: Path, env_values: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env |= {"LXA_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)} | env_values
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "llm", "check", *args],
        env=env,
        cwd=tmp_path,  # no .env there
        capture_output=True,
        text=True,
        timeout=120,
    )


def both(groq: GroqServer, ollama: OllamaServer, **extra: str) -> dict[str, str]:
    return {
        "LXA_GROQ_API_KEY": "test-key",
        "LXA_GROQ_BASE_URL": groq.base_url,
        "LXA_OLLAMA_HOST": ollama.base_url,
        "LXA_OLLAMA_NUM_PREDICT": "300",
        **extra,
    }


def test_check_sends_a_review_and_a_sizing_to_each_provider_and_reports_them_parsed(
    tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.default = answering_model
    ollama_server.default = answering_model

    result = run_check(tmp_path, both(groq_server, ollama_server), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["rule_based"] == []
    rows = [(r["reviewer"], r["request"], r["ok"]) for r in report["results"]]
    assert rows == [
        ("groq:llama-3.1-8b-instant", "review", True),
        ("groq:llama-3.1-8b-instant", "sizing", True),
        ("ollama:qwen2.5:14b", "review", True),
        ("ollama:qwen2.5:14b", "sizing", True),
    ]
    review, sizing = report["results"][2], report["results"][3]
    assert review["answer"]["verdict"] == "buy"
    assert review["answer"]["reasoning"] == "RSI 61 with a rising MACD"
    assert sizing["answer"]["investment_ratio"] == 0.25
    assert sizing["answer"]["stop_loss_pct"] == 1.2
    assert all(r["latency_ms"] > 0 for r in report["results"])
    assert [r["output_tokens"] for r in report["results"]] == [23, 31, 23, 31]
    assert all(r["input_tokens"] > 0 for r in report["results"])
    assert len(groq_server.chat_requests) == 2
    ollama_bodies = [request.json for request in ollama_server.chat_requests]
    assert [body["format"]["title"] for body in ollama_bodies] == ["VerdictAnswer", "SizingAnswer"]
    assert all(body["options"]["num_predict"] == 300 for body in ollama_bodies)


def test_check_prints_each_answer_with_latency_and_tokens(
    tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.default = answering_model
    ollama_server.default = answering_model

    result = run_check(tmp_path, both(groq_server, ollama_server))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [line for line in lines if line.startswith(("ok", "FAIL"))]
    assert [h.split()[:3] for h in headers] == [
        ["ok", "groq:llama-3.1-8b-instant", "review"],
        ["ok", "groq:llama-3.1-8b-instant", "sizing"],
        ["ok", "ollama:qwen2.5:14b", "review"],
        ["ok", "ollama:qwen2.5:14b", "sizing"],
    ]
    assert all(" ms  tokens in " in h for h in headers)
    assert '"verdict": "buy"' in result.stdout
    assert "reasoning: RSI 61 with a rising MACD" in result.stdout
    assert '"investment_ratio": 0.25' in result.stdout


def test_check_exits_1_and_shows_the_error_when_ollama_fails(
    tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.default = answering_model
    ollama_server.default = lambda _request: HttpError(
        500, {"error": "failed to load model vocabulary required for format"}
    )

    result = run_check(tmp_path, both(groq_server, ollama_server, LXA_LLM_MAX_RETRIES="0"))

    assert result.returncode == 1
    assert "ok    groq:llama-3.1-8b-instant  review" in result.stdout
    assert "FAIL  ollama:qwen2.5:14b  review" in result.stdout
    assert "FAIL  ollama:qwen2.5:14b  sizing" in result.stdout
    assert "failed to load model vocabulary required for format" in result.stdout


def test_check_shows_the_raw_answer_of_a_model_cut_at_the_token_cap(
    tmp_path: Path, ollama_server: OllamaServer
) -> None:
    ollama_server.default = lambda _request: Endless()

    result = run_check(
        tmp_path,
        {"LXA_OLLAMA_HOST": ollama_server.base_url, "LXA_OLLAMA_NUM_PREDICT": "20"},
        "--json",
    )

    assert result.returncode == 1
    report = json.loads(result.stdout)
    review = report["results"][0]
    assert review["ok"] is False
    assert "token cap" in review["error"]
    assert review["raw"].startswith('{"verdict": "buy"')
    assert review["output_tokens"] == 20
    assert report["rule_based"] == [
        "groq: not configured (LXA_GROQ_API_KEY is unset); the first check is rule-based"
    ]


def test_check_with_nothing_configured_says_everything_is_rule_based(tmp_path: Path) -> None:
    result = run_check(tmp_path, {})

    assert result.returncode == 0, result.stderr
    assert "No LLM is configured" in result.stdout
    assert "the first check is rule-based" in result.stdout
    assert "the second check is rule-based" in result.stdout
    assert "sizing in trading: rule-based" in result.stdout
