"""The policy inside the real engine: the monthly loss cap, the operator's resume, the month roll,
a restart that remembers the minimum hold, and live entries refused with an unproven model.

Bars are the bundled real Upbit candles; the month-roll test shifts their times (not their
prices) so that they cross a KST month boundary.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.backtest import AgreeReviewer
from app.engine import CycleResult, Engine
from app.llm import Reviewers
from app.settings import Settings
from app.wiring import model_status, open_services
from exchange.feed import BarClose
from llm.rule_based import RuleBasedSizer
from ml.features import WARMUP_BARS
from store.journal import Journal

LOOSE: dict[str, Any] = {
    "policy_entry_margin_bps": -1000.0,  # any forecast clears it: enter whenever allowed
    "policy_exit_margin_bps": -1000.0,  # and sell at the minimum hold
    "policy_max_entries_per_day": 1440,
    "policy_reentry_pause_minutes": 0,
    "daily_loss_limit_pct": 50.0,
    "watchdog_enabled": False,
}


def shifted(closes: list[BarClose], delta: timedelta) -> list[BarClose]:
    """The same bars at other times (prices untouched)."""
    return [
        BarClose(
            c.ts + delta,
            {m: dataclasses.replace(b, ts=b.ts + delta) for m, b in c.bars.items()},
            dict(c.live_values),
        )
        for c in closes
    ]


async def run_until(
    engine: Engine, closes: list[BarClose], stop: Any
) -> tuple[list[CycleResult], int]:
    """Run bar closes until `stop(engine, result)`; return the results and the last index."""
    results = []
    for index, close in enumerate(closes):
        result = await engine.on_bar_close(close)
        results.append(result)
        if stop(engine, result):
            return results, index
    raise AssertionError("the condition never came true")


def blocked_reasons(journal: Journal, results: list[CycleResult]) -> list[str]:
    """The policy's explanation of every cycle that held because entries were barred."""
    reasons = []
    for result in results:
        decision = journal.get_decision(result.run_id)
        assert decision is not None
        proposal = decision["nodes"]["ml_signal"]["proposal"]
        if proposal["reason"] == "blocked":
            reasons.append(proposal["policy"]["reason"])
    return reasons


async def test_the_monthly_cap_stops_entries_until_the_operator_resumes(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update={**LOOSE, "monthly_loss_cap_pct": 0.05})
    async with open_services(settings, session_id="cap", account_path=tmp_path / "a.json") as svc:
        engine = svc.engine
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        rest = bundled_closes[WARMUP_BARS:]
        _, at = await run_until(engine, rest, lambda e, _: e.guard.monthly_cap_breached)
        saved = svc.journal.read_loss_limit("monthly")
        held = [await engine.on_bar_close(close) for close in rest[at + 1 : at + 31]]
        barred = blocked_reasons(svc.journal, held)
        # The operator resumes (what `lxa resume` writes): entries come back.
        svc.journal.write_trading_control("active", "back to work", by="cli")
        after, _ = await run_until(engine, rest[at + 31 :], lambda _, r: r.action == "buy")
        resumed = svc.journal.read_loss_limit("monthly")
        events = [e["type"] for e in svc.journal.events_after(0, limit=100_000)]

    assert saved is not None and saved["breached"] is True and saved["month"] == "2025-09"
    assert saved["reason"].startswith("monthly loss cap: -")
    assert not any(r.action == "buy" for r in held)
    assert barred and all("monthly loss cap" in reason for reason in barred)
    assert resumed is not None and resumed["breached"] is False
    assert resumed["resumed_by"] == "cli"
    assert "monthly_cap_resumed" in events
    assert after[-1].action == "buy"


async def test_the_monthly_cap_lifts_on_the_first_of_the_next_kst_month(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    # Shift the real bars so that bar 400 opens at 00:00 KST on 2025-10-01 (15:00 UTC Sep 30).
    boundary = datetime(2025, 9, 30, 15, 0, tzinfo=UTC)
    closes = shifted(bundled_closes, boundary - bundled_closes[WARMUP_BARS + 400].ts)
    settings = settings.model_copy(update={**LOOSE, "monthly_loss_cap_pct": 0.05})
    async with open_services(settings, session_id="roll", account_path=tmp_path / "a.json") as svc:
        engine = svc.engine
        engine.warm_up(closes[:WARMUP_BARS])
        rest = closes[WARMUP_BARS:]
        _, at = await run_until(engine, rest, lambda e, _: e.guard.monthly_cap_breached)
        assert rest[at].ts < boundary  # breached in September
        september = [await engine.on_bar_close(c) for c in rest[at + 1 :] if c.ts < boundary]
        october, _ = await run_until(
            engine, [c for c in rest if c.ts >= boundary], lambda _, r: r.action == "buy"
        )
        figures = svc.journal.read_loss_limit("monthly")

    assert not any(r.action == "buy" for r in september)
    assert october[-1].action == "buy"
    assert figures is not None and figures["month"] == "2025-10"


async def test_a_restart_remembers_the_open_position_for_the_minimum_hold(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update={**LOOSE, "policy_min_hold_minutes": 60})
    account = tmp_path / "a.json"
    async with open_services(settings, session_id="one", account_path=account) as svc:
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        results, at = await run_until(
            svc.engine, bundled_closes[WARMUP_BARS:], lambda _, r: r.action == "buy"
        )
        market = results[-1].market
        assert market is not None
        bought_at = svc.journal.list_fills()[-1]["ts"]
    later = bundled_closes[WARMUP_BARS + at + 30].ts  # 30 bars after the buy's bar
    async with open_services(settings, session_id="two", account_path=account) as svc:
        memory = svc.engine.book.snapshot(market, later)

    # The second process knows when the position was opened (from the journal's fills), so the
    # minimum hold counts from the real entry, not from the restart.
    assert memory["entered_at"] == bought_at.isoformat()
    assert memory["held_minutes"] == int((later - bought_at).total_seconds() // 60)
    assert memory["entries_today"] == 1


def _unproven_meta() -> dict[str, Any]:
    return {
        "model_id": "m",
        "policy_evaluation": {"strategy": {"total_return": 0.0, "entries": 0}},
    }


def test_live_trading_with_an_unproven_model_blocks_entries_unless_overridden(
    settings: Settings,
) -> None:
    keys = {"upbit_access_key": SecretStr("a"), "upbit_secret_key": SecretStr("b")}
    live = settings.model_copy(update={**keys, "live": True})
    allowed = live.model_copy(update={"allow_unproven_model": True})
    proven_meta = {
        "model_id": "p",
        "policy_evaluation": {"strategy": {"total_return": 0.02, "entries": 12}},
    }

    assert model_status(live, _unproven_meta())["block_entries"] is True
    assert model_status(allowed, _unproven_meta())["block_entries"] is False
    assert model_status(settings, _unproven_meta())["block_entries"] is False  # paper goes on
    assert model_status(settings, _unproven_meta())["proven"] is False
    assert model_status(live, proven_meta)["block_entries"] is False
    assert model_status(live, {"model_id": "old"})["verdict"].startswith("the model set carries")


async def test_a_blocked_unproven_model_holds_every_entry_with_the_reason(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update=LOOSE)
    async with open_services(settings, session_id="u", account_path=tmp_path / "a.json") as svc:
        svc.engine.announce_model(
            {**model_status(settings, _unproven_meta()), "live": True, "block_entries": True}
        )
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        results = [await svc.engine.on_bar_close(c) for c in bundled_closes[WARMUP_BARS:][:20]]
        barred = blocked_reasons(svc.journal, results)
        statuses = [
            e for e in svc.journal.events_after(0, limit=10_000) if e["type"] == "model_status"
        ]

    assert not any(r.action == "buy" for r in results)
    assert len(barred) == 20
    assert all("unproven model" in reason for reason in barred)
    assert statuses[-1]["payload"]["block_entries"] is True


async def test_a_sizing_refusal_below_the_minimum_order_is_journaled_as_a_hold(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    # 8,000 KRW: the rule-based sizer (at most half of it) asks for less than Upbit's
    # 5,000 KRW minimum order. The refusal carries no LLM call; the run must still be journaled.
    settings = settings.model_copy(update={**LOOSE, "initial_capital_krw": 8_000})
    agreeing = Reviewers(groq=AgreeReviewer(), ollama=AgreeReviewer(), sizer=RuleBasedSizer())
    async with open_services(
        settings, session_id="small", account_path=tmp_path / "a.json", reviewers=agreeing
    ) as svc:
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        results = [await svc.engine.on_bar_close(c) for c in bundled_closes[WARMUP_BARS:][:5]]
        decision = svc.journal.get_decision(results[0].run_id)

    assert {(r.action, r.reason) for r in results} == {("hold", "below_minimum")}
    assert decision is not None and decision["sizing"]["refused"] == "below_minimum"


def test_a_view_without_a_measured_latency_still_makes_a_complete_llm_call_row() -> None:
    from app.engine.record import llm_call_row

    row = llm_call_row("r1", "sizing", {"refused": "sizer_failed", "reviewer": "rule-based"})
    unnamed = llm_call_row("r2", "sizing", {"refused": "sizer_failed", "reviewer": None})

    assert (row["provider"], row["model"], row["latency_ms"]) == ("rule-based", "rule-based", 0.0)
    assert row["error"] == "sizer_failed"
    assert (unnamed["provider"], unnamed["model"]) == ("unknown", "unknown")


class _BrokenCheckpoint:
    """A graph whose checkpoints resume into an error (a state a newer version cannot finish)."""

    def __init__(self, values: dict[str, Any], next_nodes: tuple[str, ...]) -> None:
        self.values = values
        self.next = next_nodes

    async def aget_state(self, config: Any) -> Any:
        return self

    def astream(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("decision")


async def test_runs_that_cannot_be_finished_are_closed_as_holds_and_the_engine_goes_on(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(settings, session_id="crash", account_path=tmp_path / "a.json") as svc:
        engine = svc.engine
        bar = "2025-09-19T02:00:00+00:00"
        for run_id in ("crash-a", "crash-b"):
            svc.journal.record_event(run_id, "run_started", {"trigger": "bar"}, datetime.now(UTC))
        real_graph = engine.graph
        # Both checkpoints say the graph ended, yet neither holds a decision (issue #15's
        # KeyError: 'decision' at every start): each is closed as a hold that says so.
        engine.graph = _BrokenCheckpoint({"bar_ts": bar, "trigger": "bar", "events": []}, ())
        first = await engine.resume_unfinished()
        engine.graph = _BrokenCheckpoint({"bar_ts": bar, "trigger": "bar"}, ("groq_check",))
        second = await engine.resume_unfinished()
        engine.graph = real_graph
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        after = await engine.on_bar_close(bundled_closes[WARMUP_BARS])
        left = svc.journal.unfinished_runs("crash")

    assert [(r.run_id, r.action, r.reason) for r in first] == [
        ("crash-a", "hold", "run_incomplete"),
        ("crash-b", "hold", "run_incomplete"),
    ]
    assert second == []  # both were closed by the first pass: nothing is left to resume
    assert left == []
    assert after.action in ("hold", "buy", "sell")  # the engine trades on


async def test_a_resume_that_raises_closes_the_run_with_the_error(
    settings: Settings, tmp_path: Path
) -> None:
    async with open_services(settings, session_id="boom", account_path=tmp_path / "a.json") as svc:
        svc.journal.record_event("boom-1", "run_started", {"trigger": "bar"}, datetime.now(UTC))
        svc.engine.graph = _BrokenCheckpoint(
            {"bar_ts": "2025-09-19T02:00:00+00:00", "trigger": "bar"}, ("groq_check",)
        )

        results = await svc.engine.resume_unfinished()
        decision = svc.journal.get_decision("boom-1")

    assert [(r.action, r.reason.split(":")[0]) for r in results] == [("hold", "resume_failed")]
    assert "KeyError" in results[0].reason
    assert decision is not None and decision["reason"].startswith("resume_failed: KeyError")
