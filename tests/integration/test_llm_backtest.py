"""`lxa backtest --reviewers llm|cache-only` through the real Groq and Ollama clients.

The local servers (llm_servers.py) answer from a fixed policy; the ledger must show exactly
the effect built into each, a cached rerun must call nothing and decide the same, and
cache-only must stop on a miss. The candles are the bundled real ones; the policy is set to
enter on any forecast so the reviewers have proposals to judge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from llm_servers import GroqServer, OllamaServer, Text

from api.app import create_app
from app.ablation import run_ablation
from app.backtest import run_backtest
from app.determinism import repeat_reviews
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES
from llm.provider import CacheMiss
from store.bus import InProcessBus
from store.journal import Journal

MINUTES = 40


def verdict(action: str) -> Text:
    body = {"verdict": action, "confidence": 0.9, "reasoning": "fixed policy", "risks": []}
    return Text(json.dumps(body), prompt_tokens=1000, completion_tokens=50)


def proposed(request_json: dict[str, Any]) -> str:
    """The action the prompt proposes (the review prompts show it as `action`)."""
    user = " ".join(str(m.get("content", "")) for m in request_json.get("messages", []))
    return "sell" if "Proposed action: sell" in user else "buy"


def settings_for(tmp_path: Path, groq: GroqServer, ollama: OllamaServer) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        groq_api_key="test-key",  # type: ignore[arg-type]
        groq_base_url=groq.base_url,
        ollama_host=ollama.base_url,
        llm_timeout_s=5.0,
        llm_max_retries=0,
        policy_entry_margin_bps=-1000.0,  # enter on any forecast: proposals to review
        policy_max_entries_per_day=1440,
        policy_reentry_pause_minutes=0,
    )


def backtest(settings: Settings, report: Path, mode: str) -> dict[str, Any]:
    return asyncio.run(
        run_backtest(
            settings,
            candles_paths=[BUNDLED_CANDLES],
            report_dir=report,
            minutes=MINUTES,
            reviewers_mode=mode,
        )
    )


def decisions(report: Path) -> list[tuple[str, str, str | None]]:
    with Journal.open(f"sqlite:///{report / 'journal.db'}") as journal:
        rows = journal.list_decisions(limit=10_000)
    return sorted((str(r["bar_ts"]), r["action"], r["market"]) for r in rows)


def test_a_groq_that_vetoes_everything_stops_every_trade_and_the_ledger_says_so(
    tmp_path: Path,
) -> None:
    with GroqServer(default=lambda _: verdict("hold")) as groq, OllamaServer() as ollama:
        metrics = backtest(settings_for(tmp_path, groq, ollama), tmp_path / "r", "llm")
        asked = len(groq.chat_requests)

    ledger = metrics["veto_ledger"]
    assert metrics["buys"] == 0 and metrics["n_trades"] == 0
    assert ledger["proposals"] == asked > 0
    assert ledger["reviewers"]["groq"]["veto_rate"] == 1.0
    assert ledger["reviewers"]["ollama"]["asked"] == 0  # Groq stopped them all first
    assert metrics["llm"]["providers"]["groq"]["calls"] == asked
    # 1,000 input and 50 output tokens a call at the table's price for the model
    assert metrics["llm"]["cost_usd"] == pytest.approx(asked * (1000 * 0.05 + 50 * 0.08) / 1e6)
    # the same from the journal's calls: per node and per day, against the one-minute bar
    groq_calls = ledger["costs"]["nodes"]["groq_check"]
    assert (groq_calls["calls"], groq_calls["tokens"]) == (asked, asked * 1050)
    assert groq_calls["cost_usd"] == pytest.approx(metrics["llm"]["cost_usd"])
    assert groq_calls["tokens_per_decision"] == 1050
    assert 0 < groq_calls["latency_p50_ms"] <= groq_calls["latency_p99_ms"] < 60_000
    assert sum(day["calls"] for day in ledger["costs"]["days"].values()) == asked
    assert "ollama_check" not in ledger["costs"]["nodes"]  # never asked


def test_random_ollama_vetoes_show_in_the_ledger_and_a_cached_rerun_calls_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    vetoes: list[bool] = []

    def ollama_answer(request_json: dict[str, Any]) -> Text:
        veto = rng.random() < 0.5
        vetoes.append(veto)
        return verdict("hold" if veto else proposed(request_json))

    def groq_answer(request_json: dict[str, Any]) -> Text:
        return verdict(proposed(request_json))

    with GroqServer(default=groq_answer) as groq, OllamaServer(default=ollama_answer) as ollama:
        settings = settings_for(tmp_path, groq, ollama)
        first = backtest(settings, tmp_path / "first", "llm")
        calls_after_first = len(groq.chat_requests) + len(ollama.chat_requests)
        again = backtest(settings, tmp_path / "again", "cache-only")
        calls_after_again = len(groq.chat_requests) + len(ollama.chat_requests)

    ledger = first["veto_ledger"]["reviewers"]
    assert ledger["groq"]["vetoed"] == 0
    assert ledger["ollama"]["asked"] == len(vetoes) > 0
    assert ledger["ollama"]["vetoed"] == sum(vetoes)
    assert first["path"]["name"] == again["path"]["name"] == "fast"  # the default
    assert first["path"]["graph_runs"] == first["veto_ledger"]["proposals"] < MINUTES
    assert calls_after_again == calls_after_first  # the rerun called nothing
    assert again["llm"]["calls"] == 0 and again["llm"]["cache_hits"] == calls_after_first
    assert decisions(tmp_path / "again") == decisions(tmp_path / "first")
    assert again["veto_ledger"]["reviewers"] == first["veto_ledger"]["reviewers"]

    # The same ledger from the journal, as `lxa report reviewers` and the API give it.
    journal_url = f"sqlite:///{tmp_path / 'first' / 'journal.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env.update(LXA_DATA_DIR=str(tmp_path / "cli"), LXA_DATABASE_URL=journal_url)
    printed = subprocess.run(
        [sys.executable, "-m", "app.cli", "report", "reviewers", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["reviewers"] == first["veto_ledger"]["reviewers"]
    with Journal.open(journal_url) as journal:
        app = create_app(journal=journal, bus=InProcessBus())
        with TestClient(app) as client:
            served = client.get("/api/reviewers").json()
    assert served["reviewers"] == first["veto_ledger"]["reviewers"]
    assert served["agreement"] == first["veto_ledger"]["agreement"]


def coin_on_market_and_bar(request_json: dict[str, Any]) -> Text:
    """Agree or hold by a coin keyed on the prompt's market and bar time (the same question on
    either path gets the same answer, whatever else the prompt shows)."""
    user = " ".join(str(m.get("content", "")) for m in request_json.get("messages", []))
    market = re.search(r"KRW-[A-Z]+", user)
    bar = re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", user)
    assert market is not None and bar is not None
    heads = hashlib.sha256(f"{market.group()}|{bar.group()}".encode()).digest()[0] < 150
    return verdict(proposed(request_json) if heads else "hold")


def test_the_fast_path_and_the_engine_path_decide_alike_through_the_llm_clients(
    tmp_path: Path,
) -> None:
    with (
        GroqServer(default=coin_on_market_and_bar) as groq,
        OllamaServer(default=coin_on_market_and_bar) as ollama,
    ):
        settings = settings_for(tmp_path, groq, ollama)
        fast = backtest(settings, tmp_path / "fast", "llm")
        engine = asyncio.run(
            run_backtest(
                settings.model_copy(update={"data_dir": tmp_path / "engine-data"}),
                candles_paths=[BUNDLED_CANDLES],
                report_dir=tmp_path / "engine",
                minutes=MINUTES,
                reviewers_mode="llm",
                engine_path=True,
            )
        )

    assert (fast["path"]["name"], engine["path"]["name"]) == ("fast", "engine")
    assert any(note.startswith("fast path") for note in fast["notes"])
    assert any(note.startswith("engine path") for note in engine["notes"])
    assert engine["path"]["graph_runs"] == MINUTES > fast["path"]["graph_runs"]
    ledger = engine["veto_ledger"]
    assert ledger["reviewers"]["groq"]["vetoed"] > 0 and fast["buys"] > 0
    assert fast["veto_ledger"]["reviewers"] == ledger["reviewers"]
    assert fast["veto_ledger"]["agreement"] == ledger["agreement"]
    assert fast["llm"]["calls"] == engine["llm"]["calls"]  # each path asked every question
    for key in ("buys", "sells", "n_trades", "total_return", "fees_paid", "max_drawdown"):
        assert fast[key] == pytest.approx(engine[key], rel=1e-9, abs=1e-12), key
    assert [t["exit_reason"] for t in fast["trades"]] == [
        t["exit_reason"] for t in engine["trades"]
    ]
    assert decisions(tmp_path / "fast") == decisions(tmp_path / "engine")


def test_cache_only_stops_on_a_miss_and_calls_nothing(tmp_path: Path) -> None:
    with GroqServer(default=lambda _: verdict("buy")) as groq, OllamaServer() as ollama:
        with pytest.raises(CacheMiss, match="no cached answer"):
            backtest(settings_for(tmp_path, groq, ollama), tmp_path / "r", "cache-only")
        assert groq.chat_requests == [] and ollama.chat_requests == []


def test_a_spent_budget_stops_the_calls_and_the_runs_hold(tmp_path: Path) -> None:
    with GroqServer(default=lambda r: verdict(proposed(r))) as groq, OllamaServer() as ollama:
        settings = settings_for(tmp_path, groq, ollama).model_copy(
            update={"llm_daily_budget_usd": 0.00001}  # less than one call of 1,050 tokens
        )
        metrics = backtest(settings, tmp_path / "r", "llm")
        asked = len(groq.chat_requests)

    groq_ledger = metrics["veto_ledger"]["reviewers"]["groq"]
    assert asked == 1  # the first call spends it; none goes out after
    assert groq_ledger["asked"] > 1 and groq_ledger["vetoed"] == groq_ledger["asked"] - 1
    with Journal.open(f"sqlite:///{tmp_path / 'r' / 'journal.db'}") as journal:
        runs = [journal.get_decision(d["run_id"]) for d in journal.list_decisions(limit=1000)]
        errors = [c["error"] for run in runs for c in run["llm_calls"] if c["error"]]
    assert errors and all("budget" in e for e in errors)


def test_the_ablation_shows_the_effect_built_into_each_reviewer(tmp_path: Path) -> None:
    # Groq agrees with everything, Ollama vetoes everything.
    with (
        GroqServer(default=lambda r: verdict(proposed(r))) as groq,
        OllamaServer(default=lambda _: verdict("hold")) as ollama,
    ):
        report = asyncio.run(
            run_ablation(
                settings_for(tmp_path, groq, ollama),
                candles_paths=[BUNDLED_CANDLES],
                report_dir=tmp_path / "ablation",
                minutes=MINUTES,
                seeds=3,
            )
        )

    variants = report["variants"]
    alone = variants["ml_alone"]
    assert alone["entries"] > 0 and alone["veto_rate"] == 0.0
    assert variants["groq_only"]["total_return"] == alone["total_return"]  # it never vetoes
    assert variants["groq_only"]["round_trips"] == alone["round_trips"]
    for name in ("ollama_only", "both"):
        assert variants[name]["entries"] == 0 and variants[name]["veto_rate"] == 1.0
        assert variants[name]["total_return"] == 0.0
    coin = report["random_veto"]
    assert coin["rate"] == 1.0 and coin["seeds"] == 3
    assert coin["total_return"] == {"mean": 0.0, "sd": 0.0, "min": 0.0, "max": 0.0}
    assert (tmp_path / "ablation" / "ablation.json").exists()
    assert report["path"] == "fast"


def test_the_ablation_on_the_fast_path_matches_the_engine_path(tmp_path: Path) -> None:
    # Groq agrees or holds by a coin on market and bar; Ollama agrees; two random-veto seeds.
    with (
        GroqServer(default=coin_on_market_and_bar) as groq,
        OllamaServer(default=lambda r: verdict(proposed(r))) as ollama,
    ):
        settings = settings_for(tmp_path, groq, ollama)
        reports = {
            path: asyncio.run(
                run_ablation(
                    settings.model_copy(update={"data_dir": tmp_path / f"data-{path}"}),
                    candles_paths=[BUNDLED_CANDLES],
                    report_dir=tmp_path / path,
                    minutes=MINUTES,
                    seeds=2,
                    engine_path=path == "engine",
                )
            )
            for path in ("fast", "engine")
        }

    fast, engine = reports["fast"], reports["engine"]
    assert (fast["path"], engine["path"]) == ("fast", "engine")
    assert 0 < engine["variants"]["both"]["veto_rate"] < 1
    for name, row in engine["variants"].items():
        for key, value in row.items():
            assert fast["variants"][name][key] == pytest.approx(value, rel=1e-9), (name, key)
    for key in ("rate", "total_return", "round_trips", "fees_krw"):
        assert fast["random_veto"][key] == pytest.approx(engine["random_veto"][key], rel=1e-9)


def test_a_blind_run_shows_no_market_name_price_or_date_from_the_candles(tmp_path: Path) -> None:
    with (
        GroqServer(default=lambda r: verdict(proposed(r))) as groq,
        OllamaServer(default=lambda r: verdict(proposed(r))) as ollama,
    ):
        metrics = asyncio.run(
            run_backtest(
                settings_for(tmp_path, groq, ollama),
                candles_paths=[BUNDLED_CANDLES],
                report_dir=tmp_path / "blind",
                minutes=MINUTES,
                reviewers_mode="llm",
                blind=True,
            )
        )
        sent = [
            str(m.get("content", ""))
            for request in [*groq.chat_requests, *ollama.chat_requests]
            for m in request.json.get("messages", [])
        ]

    assert metrics["blind"] is True and len(sent) >= 4  # system and user messages
    candles = pd.read_parquet(BUNDLED_CANDLES)
    prices = {float(p) for p in candles[["open", "high", "low", "close"]].to_numpy().ravel()}
    text = "\n".join(sent)
    for name in ("KRW-", "BTC", "ETH", "XRP", "SOL", "비트코인", "이더리움"):
        assert name not in text, name
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "a date reached a blind prompt"
    numbers = {float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\.?\d*", text)}
    leaked = sorted(p for p in prices if p >= 10 and p in numbers)
    assert leaked == [], f"prices from the candles in blind prompts: {leaked[:5]}"
    assert re.search(r"COIN-[A-D]\b", text)  # the neutral label stands in


def test_repeating_recorded_questions_finds_the_check_that_flips(tmp_path: Path) -> None:
    rng = random.Random(5)

    def coin(request_json: dict[str, Any]) -> Text:
        return verdict(proposed(request_json) if rng.random() < 0.5 else "hold")

    with (
        GroqServer(default=lambda r: verdict(proposed(r))) as groq,
        OllamaServer(default=coin) as ollama,
    ):
        settings = settings_for(tmp_path, groq, ollama)
        backtest(settings, tmp_path / "r", "llm")
        journal_url = f"sqlite:///{tmp_path / 'r' / 'journal.db'}"
        before = len(groq.chat_requests)
        report = asyncio.run(
            repeat_reviews(
                settings.model_copy(update={"database_url": journal_url}), times=4, sample=5
            )
        )
        asked_again = len(groq.chat_requests) - before

    steady, flaky = report["checks"]["groq_check"], report["checks"]["ollama_check"]
    assert asked_again == steady["samples"] * 4  # past the cache, every time
    assert steady["flip_rate"] == 0.0 and steady["changed_from_journal_rate"] == 0.0
    assert flaky["samples"] > 0 and flaky["flip_rate"] > 0
