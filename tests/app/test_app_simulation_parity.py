"""The fast simulator and the engine make the same trades on real candles.

Both replay the bundled real Upbit candles (2025-09-19..21) with the bundled model set, the
policy set loose enough to trade often (the default policy does not trade this model: no edge),
so every path is exercised: entries, exits by the policy's signal and its time stop, stop-loss,
the watchdog's emergency sell and cooldown, the re-entry pause, the daily count and the monthly
loss cap stopping entries. Every fill must agree: time, market, side, price and volume.

The fast graph-in-the-loop path (`app.backtest.simulate_fast`: the simulator, the graph at
each proposed order) is held to the engine's path (`app.backtest.simulate`, a graph run per
bar) the same way, with reviewers that answer by a fixed policy (always agree, always veto,
agree only when the market's last close rose, a seeded coin keyed on the market and the bar):
the same fills, the same verdicts, the same ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.backtest import Simulation, backtest_settings, simulate_fast
from app.backtest import simulate as engine_backtest
from app.llm import Reviewers
from app.session import collect_closes
from app.settings import Settings
from app.simulation import prepare, simulation_settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, policy_params_from
from graph.review import ReviewRequest, TokenCallback, Verdict
from llm.rule_based import RuleBasedSizer
from ml.data import load_candles
from ml.predict import Predictor
from ml.registry import latest_model_dir
from policy.simulate import FILL_REASONS, simulate
from store.journal import Journal

LOOSE = {
    "policy_entry_margin_bps": -1000.0,  # any forecast clears it: trade as often as allowed
    "policy_max_entries_per_day": 20,
    "policy_reentry_pause_minutes": 5,
}
CASES = {
    # Sell at the minimum hold on the exit signal; a volume spike sells SOL at 15:04 UTC.
    "exit-signal-and-watchdog": ({**LOOSE, "policy_exit_margin_bps": -1000.0}, 900),
    # Keep positions until the 45-minute time stop or the stop-loss.
    "time-stop-and-stop-loss": ({**LOOSE, "policy_max_hold_minutes": 45}, 900),
    # A 1% monthly loss cap stops the entries early on.
    "monthly-cap": (
        {**LOOSE, "policy_exit_margin_bps": -1000.0, "monthly_loss_cap_pct": 1.0},
        1500,
    ),
}
EXPECTED_EXITS = {
    "exit-signal-and-watchdog": {"exit_signal", "stop_loss", "watchdog:volume_spike"},
    "time-stop-and-stop-loss": {"exit_time", "stop_loss"},
    "monthly-cap": {"exit_signal"},
}


def _both_paths(
    tmp_path: Path, overrides: dict[str, Any], minutes: int | None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], float, float, list[str]]:
    model = latest_model_dir(BUNDLED_MODELS)
    assert model is not None
    candles = load_candles([BUNDLED_CANDLES])
    base = Settings(_env_file=None, data_dir=tmp_path, **overrides)  # type: ignore[call-arg]
    settings = backtest_settings(
        base, report_dir=tmp_path, markets=sorted(candles["market"].unique()), model_dir=model
    )
    closes = asyncio.run(collect_closes(candles))
    engine = asyncio.run(engine_backtest(settings, closes, report_dir=tmp_path, minutes=minutes))
    engine_fills = [
        (
            pd.Timestamp(f["ts"]),
            f["market"],
            f["side"],
            float(str(f["price"])),
            float(str(f["volume"])),
        )
        for f in engine.fills
    ]
    predictor = Predictor.load(model)
    prepared = prepare(candles, predictor, settings)
    if minutes is not None:
        prepared = prepared.head(minutes)
    result = simulate(
        prepared.arrays, policy_params_from(settings, predictor.meta), simulation_settings(settings)
    )
    markets = prepared.arrays.markets
    fast_fills = [
        (
            pd.Timestamp(float(t), unit="s", tz="UTC"),
            markets[int(m)],
            "bid" if side == 1 else "ask",
            float(price),
            float(volume),
        )
        for t, m, side, price, volume in zip(
            result.fills["time_s"],
            result.fills["market"],
            result.fills["side"],
            result.fills["price"],
            result.fills["volume"],
            strict=True,
        )
    ]
    reasons = [FILL_REASONS[int(r)] for r in result.fills["reason"]]
    return (
        engine_fills,
        fast_fills,
        float(engine.equity.iloc[-1]),
        float(result.equity[-1]),
        reasons,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_simulator_makes_the_engines_trades_on_real_candles(tmp_path: Path, case: str) -> None:
    overrides, minutes = CASES[case]

    engine, fast, engine_equity, fast_equity, reasons = _both_paths(tmp_path, overrides, minutes)

    assert len(engine) > 10  # the case really trades
    assert [f[:3] for f in fast] == [f[:3] for f in engine]
    for (_, _, _, price, volume), (_, _, _, fast_price, fast_volume) in zip(
        engine, fast, strict=True
    ):
        assert fast_price == pytest.approx(price, rel=1e-12)
        assert fast_volume == pytest.approx(volume, abs=1e-8)
    assert fast_equity == pytest.approx(engine_equity, rel=1e-9)
    assert EXPECTED_EXITS[case] <= set(reasons)
    if case == "monthly-cap":
        # The loose policy enters whenever allowed: hours without a fill are the cap at work.
        assert engine[-1][0] < pd.Timestamp("2025-09-19T16:00:00Z")


@dataclass(frozen=True)
class FixedPolicy:
    """A reviewer that answers by a fixed rule of what it is shown (no LLM)."""

    rule: str  # "agree", "veto", "rising" or "coin"

    @property
    def name(self) -> str:
        """How its verdicts are labelled in the journal."""
        return f"fixed:{self.rule}"

    def agrees(self, request: ReviewRequest) -> bool:
        """Agree always, never, when the last close rose, or by a coin keyed on market and bar."""
        if self.rule in ("agree", "veto"):
            return self.rule == "agree"
        if self.rule == "rising":
            closes = request.recent_closes
            return len(closes) >= 2 and closes[-1] > closes[-2]
        key = f"{request.role}|{request.market}|{request.bar_time}".encode()
        return hashlib.sha256(key).digest()[0] < 128

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """The proposed action when the rule agrees, else hold."""
        return Verdict(
            verdict=request.action if self.agrees(request) else "hold",
            confidence=1.0,
            reasoning=f"fixed policy {self.rule}",
            reviewer=self.name,
        )


REVIEWED = {**LOOSE, "policy_exit_margin_bps": -1000.0, "policy_reentry_pause_minutes": 0}
REVIEWED_MINUTES = 240
REVIEWER_CASES = {  # (Groq's rule, Ollama's rule, the first candle replayed)
    "agree": ("agree", "agree", None),
    "groq-vetoes": ("veto", "agree", None),
    "rising-then-coin": ("rising", "coin", None),
    # From 12:00 UTC: stop-losses, the watchdog's volume-spike sell of SOL at 15:04 and its
    # cooldown barring entries, between the reviewed orders.
    "agree-around-a-watchdog-sell": ("agree", "agree", "2025-09-19T12:00:00Z"),
}


def _fills_of(simulation: Simulation) -> list[tuple[Any, ...]]:
    return [
        (
            pd.Timestamp(f["ts"]),
            f["market"],
            f["side"],
            float(str(f["price"])),
            float(str(f["volume"])),
        )
        for f in simulation.fills
    ]


def _decisions(report: Path) -> list[tuple[Any, ...]]:
    """Every journaled decision: bar, action, market, reason (the run id's time stamp)."""
    with Journal.open(f"sqlite:///{report / 'journal.db'}") as journal:
        rows = journal.list_decisions(limit=10_000)
    return sorted(
        (r["run_id"].rsplit("-", 1)[1], str(r["bar_ts"]), r["action"], r["market"], r["reason"])
        for r in rows
    )


def _reviewed_runs(report: Path) -> dict[str, dict[str, Any]]:
    """The reviewed runs' journal rows by their bar's time stamp."""
    with Journal.open(f"sqlite:///{report / 'journal.db'}") as journal:
        rows = journal.list_decisions(limit=10_000)
        return {
            r["run_id"].rsplit("-", 1)[1]: journal.get_decision(r["run_id"]) or {}
            for r in rows
            if (r.get("verdicts") or {}).get("groq")
        }


def _same_inputs(fast_report: Path, engine_report: Path) -> None:
    """Each reviewed run started from the state the engine's run at that bar started from: the
    account (cash, equity, each position's volume, cost and stops), the closes, the recent
    results, each market's features, the proposal and the rule's numbers."""
    fast, engine = _reviewed_runs(fast_report), _reviewed_runs(engine_report)
    assert fast.keys() == engine.keys() and fast
    for stamp, row in engine.items():
        mine, theirs = fast[stamp]["nodes"], row["nodes"]
        account, engine_account = mine["input"]["account"], theirs["input"]["account"]
        for key in ("krw", "equity"):
            assert float(account[key]) == pytest.approx(float(engine_account[key]), rel=1e-9)
        assert account["positions"].keys() == engine_account["positions"].keys()
        for market, position in engine_account["positions"].items():
            mine_position = account["positions"][market]
            for key in ("volume", "avg_buy_price"):
                assert float(mine_position[key]) == pytest.approx(float(position[key]), rel=1e-9)
            for key in ("stop_loss_price", "take_profit_price"):  # to 0.0001 KRW, a half may
                # round either way (float against Decimal); prices move by whole ticks
                assert float(mine_position[key]) == pytest.approx(float(position[key]), abs=1.5e-4)
        assert mine["input"]["closes"] == theirs["input"]["closes"]
        assert mine["input"]["recent_results"] == pytest.approx(
            theirs["input"]["recent_results"], rel=1e-9
        )
        proposal, engine_proposal = mine["ml_signal"]["proposal"], theirs["ml_signal"]["proposal"]
        for key in ("action", "market", "reason"):
            assert proposal[key] == engine_proposal[key]
        for key in ("value", "threshold"):
            assert proposal["policy"][key] == pytest.approx(engine_proposal["policy"][key])
        features = fast[stamp]["ml"]["features"]
        for market, engine_features in row["ml"]["features"].items():
            assert features[market].keys() == engine_features.keys()
            for name, value in engine_features.items():
                if value is None:  # not defined yet (the four-hour features), or live only
                    assert features[market][name] is None, name
                else:
                    assert features[market][name] == pytest.approx(value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("case", list(REVIEWER_CASES))
def test_the_fast_path_reviews_and_trades_as_the_engine_does(tmp_path: Path, case: str) -> None:
    groq_rule, ollama_rule, first = REVIEWER_CASES[case]
    reviewers = Reviewers(FixedPolicy(groq_rule), FixedPolicy(ollama_rule), RuleBasedSizer())
    model = latest_model_dir(BUNDLED_MODELS)
    assert model is not None
    candles = load_candles([BUNDLED_CANDLES])
    if first is not None:
        candles = candles[candles["ts"] >= pd.Timestamp(first)].reset_index(drop=True)
    markets = sorted(candles["market"].unique())

    def settings_in(folder: Path) -> Settings:
        base = Settings(_env_file=None, data_dir=tmp_path, **REVIEWED)  # type: ignore[call-arg]
        folder.mkdir()
        return backtest_settings(base, report_dir=folder, markets=markets, model_dir=model)

    engine = asyncio.run(
        engine_backtest(
            settings_in(tmp_path / "engine"),
            asyncio.run(collect_closes(candles)),
            report_dir=tmp_path / "engine",
            minutes=REVIEWED_MINUTES,
            reviewers=reviewers,
        )
    )
    fast = asyncio.run(
        simulate_fast(
            settings_in(tmp_path / "fast"),
            candles,
            model,
            report_dir=tmp_path / "fast",
            minutes=REVIEWED_MINUTES,
            reviewers=reviewers,
        )
    )

    engine_fills, fast_fills = _fills_of(engine), _fills_of(fast)
    ledger, fast_ledger = engine.veto_ledger, fast.veto_ledger
    assert ledger["proposals"] > 20  # the reviewers had proposals to judge
    assert fast.summary["graph_runs"] == ledger["proposals"]
    assert [f[:3] for f in fast_fills] == [f[:3] for f in engine_fills]
    for (*_, price, volume), (*_, fast_price, fast_volume) in zip(
        engine_fills, fast_fills, strict=True
    ):
        assert fast_price == pytest.approx(price, rel=1e-9)
        assert fast_volume == pytest.approx(volume, abs=1e-9)
    assert fast.equity.iloc[-1] == pytest.approx(engine.equity.iloc[-1], rel=1e-9)
    assert fast_ledger["agreement"] == ledger["agreement"]
    assert fast_ledger["reviewers"] == ledger["reviewers"]
    assert [r["run_id"].rsplit("-", 1)[1] for r in fast_ledger["rows"]] == [
        r["run_id"].rsplit("-", 1)[1] for r in ledger["rows"]
    ]
    assert fast.holds == engine.holds
    assert _decisions(tmp_path / "fast") == _decisions(tmp_path / "engine")
    _same_inputs(tmp_path / "fast", tmp_path / "engine")
    if case == "agree":
        assert len(engine_fills) > 20 and ledger["reviewers"]["groq"]["vetoed"] == 0
        assert ledger["proposals"] < REVIEWED_MINUTES / 2  # the graph ran at a few bars only
    elif case == "groq-vetoes":  # nothing is ever bought: a buy is proposed at every bar
        assert engine_fills == [] and ledger["reviewers"]["ollama"]["asked"] == 0
        assert ledger["proposals"] == REVIEWED_MINUTES
    elif case == "rising-then-coin":
        vetoed = ledger["reviewers"]
        assert vetoed["groq"]["vetoed"] > 0 and vetoed["ollama"]["vetoed"] > 0
        assert len(engine_fills) > 4
    else:
        reasons = {fill["reason"] for fill in fast.fills}
        assert {"watchdog:volume_spike", "stop_loss", "exit_signal"} <= reasons
        assert engine.summary["emergency_exits"] == 1 and engine.holds.get("blocked", 0) > 0
