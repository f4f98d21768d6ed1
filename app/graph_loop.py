"""The fast graph-in-the-loop backtest: the compiled simulator walks, the graph reviews.

`lxa backtest --reviewers llm|cache-only` and the ablation run here unless `--engine-path`
asks for the engine's bar-by-bar replay (`app.backtest.simulate`, the reference).

The simulator (`policy.simulate.SimulationRun`, which makes the engine's trades fill for fill)
walks the bars. At each bar where the rules propose a buy or a sell (the only bars where a
reviewer can change anything) it stops before the order, and the real compiled graph
(`graph.builder`, the same nodes and the same reviewers: the configured LLM clients over the
response cache, or the stand-ins) runs on a `TradeState` built from the simulator's state at
that bar: every market's close, its batch features (as `ml_signal` reads them), its recent
closes and the policy's memory, the account with each position's volume, cost and stops as
decimal text, the recent results. `ml_signal` scores with the model's outputs at that bar
(precomputed by the batch path, `evaluation.arrays`) and proposes through the same rules; the
run stops before `sizing` (`interrupt_before`, over an in-memory checkpointer), so it never
sizes or places anything. Both checks agreeing lets the order go ahead with the simulator's
sizing (the rule-based sizer's replica, used in every backtest mode); any veto holds. Every
reviewed run is journaled as the engine journals a run (`RunRecorder`), every other bar as the
hold its rule decided, each with every market's close (all in one transaction at the end), so
the veto ledger and `lxa report reviewers` read the journal as they read the engine's. Fills,
orders and positions are not journaled: the report's figures come from the simulator's fills.

Its prompts show the simulator's float account, which agrees with the engine's to 1e-9 but not
digit for digit: the response cache (keyed on the rendered input) is not shared between the
two paths, and a first `--reviewers llm` run on this path asks the LLMs again.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from langgraph.checkpoint.memory import InMemorySaver

from app.engine.record import RunRecorder
from app.engine.venue import Outbox
from app.llm import Reviewers
from app.settings import Settings
from app.simulation import Prepared, prepare, simulation_settings
from app.wiring import model_status, policy_from
from evaluation.policy_result import strategy_metrics
from exchange.rules import FEE_RATE
from graph.builder import build_graph
from graph.context import Context
from graph.state import AccountView, MarketSnapshot, PositionView, TradeState
from llm.cost import CallMeter
from ml.data import regularize
from ml.features import FEATURE_NAMES, WARMED_FEATURES, compute_features
from ml.predict import Predictor
from policy.rules import BUY, RULE_NAMES, SELL
from policy.simulate import FILL_REASONS, PendingDecision, SimulationRun
from store.journal import Journal
from store.journal.base import checked
from store.journal.events import insert_events
from store.reviewer_ledger import call_costs, veto_ledger
from store.schema import decisions
from store.schema import events as events_table
from store.schema import llm_calls as llm_calls_table

RECENT_CLOSES = 30  # closes each reviewer is shown (app.engine.cycle.RECENT_CLOSES)
PATH_NAME = "fast: the simulator, the graph at each proposed order"
ENGINE_PATH_NAME = "engine: one graph run per bar"
POLICY_EXITS = ("exit_signal", "exit_time")
_ROWS_PER_INSERT = 2000


class ProposalMismatch(RuntimeError):
    """The graph proposed something else than the simulator's rules at the same bar (a bug)."""


@dataclass(frozen=True, slots=True)
class BarProbabilities:
    """One market's model output at the bar under review."""

    p_buy: float
    p_sell: float
    expected_return: float | None


class BarSignals:
    """The model's outputs at the bar under review, as `ml_signal` asks for them.

    The batch path's scores (`evaluation.arrays.prepare`), carried over minutes a market has no
    bar (the engine scores its latest row): the graph's rules see the numbers the simulator's
    rules saw. `bar` is set before each run.
    """

    def __init__(self, model_id: str, prepared: Prepared) -> None:
        """Keep the scores of every traded bar."""
        self.model_id = model_id
        arrays = prepared.arrays
        self._index = {market: m for m, market in enumerate(arrays.markets)}
        self._p_buy = _carried(prepared.p_buy, arrays.has_bar)
        self._p_sell = _carried(prepared.p_sell, arrays.has_bar)
        self._expected = arrays.expected
        self.bar = 0

    def predict(
        self, features: Mapping[str, Mapping[str, float | None]]
    ) -> dict[str, BarProbabilities]:
        """The outputs at `bar` of each market with features."""
        out = {}
        for market in features:
            m = self._index[market]
            expected = float(self._expected[self.bar, m])
            out[market] = BarProbabilities(
                p_buy=_finite_or(self._p_buy[self.bar, m], 0.0),
                p_sell=_finite_or(self._p_sell[self.bar, m], 0.0),
                expected_return=expected if math.isfinite(expected) else None,
            )
        return out


def as_the_graph_sees(prepared: Prepared) -> Prepared:
    """The expected returns as `ml_signal` hands them to the rules: in bps to 4 places.

    Two markets whose expected returns differ by less than that tie there (met on the bundled
    candles: 0.048827 against 0.048842 bps); the rules then pick the first in name order on the
    engine's path, and so must the simulator's.
    """
    expected = prepared.arrays.expected
    rounded = np.array(
        [round(float(e) * 1e4, 4) / 10_000 for e in expected.ravel().tolist()]
    ).reshape(expected.shape)
    return replace(prepared, arrays=replace(prepared.arrays, expected=rounded))


def _finite_or(value: float, default: float) -> float:
    number = float(value)
    return number if math.isfinite(number) else default


def _carried(values: npt.NDArray[np.float64], has_bar: npt.NDArray[np.bool_]) -> Any:
    """Each market's value at its last bar, over the minutes it has none."""
    out = values.copy()
    for m in range(out.shape[1]):
        last = np.nan
        for t in range(out.shape[0]):
            if has_bar[t, m]:
                last = out[t, m]
            else:
                out[t, m] = last
    return out


class MarketHistory:
    """Each market's real bars: their batch features and closes, read as of a bar close.

    What the engine's snapshot shows at a close: the feature row of the market's latest bar
    (None until warmed up) and its last `RECENT_CLOSES` closes, warm-up bars included.
    """

    def __init__(self, candles: pd.DataFrame, markets: Sequence[str]) -> None:
        """Compute the features of every market's real bars once."""
        self._minutes: list[npt.NDArray[np.int64]] = []
        self._closes: list[npt.NDArray[np.float64]] = []
        self._features: list[npt.NDArray[np.float64]] = []
        self._warmed: list[npt.NDArray[np.bool_]] = []
        for market in markets:
            rows = candles[candles["market"] == market].sort_values("ts")
            frame = regularize(rows.reset_index(drop=True))
            features = compute_features(frame)
            real = ~frame["filled"].to_numpy()
            ts = frame["ts"].to_numpy(dtype="datetime64[ns]")[real]
            self._minutes.append(ts.astype("datetime64[m]").astype(np.int64))
            self._closes.append(frame["close"].to_numpy(dtype="float64")[real])
            self._features.append(features[list(FEATURE_NAMES)].to_numpy(dtype="float64")[real])
            warmed = features[list(WARMED_FEATURES)].notna().all(axis=1).to_numpy()
            self._warmed.append(warmed[real])

    def at(self, m: int, bar_minute: int) -> tuple[dict[str, float | None] | None, list[float]]:
        """Market m's features and recent closes at the close of the bar opened at `bar_minute`."""
        end = int(np.searchsorted(self._minutes[m], bar_minute, side="right"))
        closes = self._closes[m][max(0, end - RECENT_CLOSES) : end].tolist()
        if end == 0 or not self._warmed[m][end - 1]:
            return None, closes
        row = self._features[m][end - 1]
        return {
            name: float(v) if math.isfinite(v) else None
            for name, v in zip(FEATURE_NAMES, row, strict=True)
        }, closes


def _iso(seconds: float) -> str | None:
    if not math.isfinite(seconds):
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _text(value: float, places: int | None = None) -> str:
    """A float as the decimal text the state carries (`Decimal` as text, never an exponent):
    its shortest repr, or rounded to `places` without trailing zeros."""
    if places is None:
        return format(Decimal(repr(float(value))), "f")
    return format(Decimal(f"{value:.{places}f}").normalize(), "f")


@dataclass
class StateBuilder:
    """The `TradeState` of a pending decision, from the simulator's state at its bar."""

    run: SimulationRun
    history: MarketHistory
    markets: list[str]
    session_id: str
    warmup_close: npt.NDArray[np.float64]

    def run_id(self, bar_minute: int) -> str:
        """The engine's name for a bar's run (`Engine.run_id_for`)."""
        stamp = datetime.fromtimestamp(bar_minute * 60, UTC).strftime("%Y%m%dT%H%MZ")
        return f"{self.session_id}-{stamp}"

    def closes(self) -> list[float | None]:
        """Every market's close now (the engine's closes: the warm-up's until a bar comes)."""
        last = self.run.memory[0]
        return [
            float(c) if math.isfinite(c) else (float(w) if math.isfinite(w) else None)
            for c, w in zip(last, self.warmup_close, strict=True)
        ]

    def state(self, pending: PendingDecision) -> TradeState:
        """The state the engine's run at this bar would start from."""
        t = pending.bar
        arrays = self.run.data
        bar_minute = int(arrays.bar_minute[t])
        close_s = (bar_minute + 1) * 60.0
        closes = self.closes()
        book, memory, view = self.run.book, self.run.memory, self.run.view
        volume, exited, entered = book[0], book[8], book[9]
        entries_day, entries_count = memory[2], memory[3]
        kst_day = math.floor((close_s + 9 * 3600) / 86400.0)
        trading = self.run.guard[2] == 0.0 and self.run.guard[5] == 0.0
        snapshots: dict[str, MarketSnapshot] = {}
        for m, market in enumerate(self.markets):
            close = closes[m]
            if close is None:
                continue
            features, recent = self.history.at(m, bar_minute)
            blocked = None
            if view[5][m]:
                blocked = (
                    "cooldown after a watchdog trigger"
                    if trading
                    else "trading halted: the loss limit is reached"
                )
            held = volume[m] > 0.0
            snapshots[market] = {
                "close": close,
                "features": features,
                "blocked": blocked,
                "recent_closes": recent,
                "policy": {
                    "entered_at": _iso(entered[m]) if held else None,
                    "last_exit_at": _iso(exited[m]),
                    "held_minutes": max(0, int((close_s - entered[m]) // 60)) if held else None,
                    "minutes_since_exit": (
                        max(0, int((close_s - exited[m]) // 60))
                        if math.isfinite(exited[m])
                        else None
                    ),
                    "entries_today": int(entries_count[m]) if entries_day[m] == kst_day else 0,
                },
            }
        results = book[6][: int(self.run.counts[1])]
        return {
            "run_id": self.run_id(bar_minute),
            "trigger": "bar",
            "bar_ts": datetime.fromtimestamp(bar_minute * 60, UTC).isoformat(),
            "markets": snapshots,
            "account": self.account(closes),
            "recent_results": [float(r) for r in results],
            "events": [],
        }

    def account(self, closes: list[float | None]) -> AccountView:
        """The account's JSON view at the closes, as `Engine.account_view` gives it."""
        book = self.run.book
        volume, avg, stop_price, take_price = book[0], book[1], book[10], book[11]
        krw = self.run.krw
        equity = krw
        positions: dict[str, PositionView] = {}
        for m, market in enumerate(self.markets):
            if not volume[m] > 0.0:
                continue
            close, cost = closes[m], float(avg[m])
            mark = close if close is not None else cost
            equity += float(volume[m]) * mark
            positions[market] = {
                "volume": _text(volume[m], 8),
                "avg_buy_price": _text(avg[m]),
                "unrealized_pct": round(100 * (mark / cost - 1), 4) if cost > 0 else 0.0,
                "stop_loss_price": (
                    _text(stop_price[m], 4) if math.isfinite(stop_price[m]) else None
                ),
                "take_profit_price": (
                    _text(take_price[m], 4) if math.isfinite(take_price[m]) else None
                ),
            }
        return {
            "krw": _text(krw),
            "equity": f"{equity:.2f}",  # quantized to 0.01 KRW, as the engine shows it
            "positions": positions,
        }


class _NoOrders:
    """The exchange of a run that stops before sizing: asked for anything, it is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the fast path's graph runs never reach the exchange ({name})")


class RunRows:
    """What `RunRecorder` needs of the engine's outbox, keeping the rows it writes: each
    reviewed run's decision, LLM calls and events, journaled together at the end in one
    transaction (`write`) instead of one a run; and a bus nobody reads."""

    def __init__(self) -> None:
        self.journal = self  # RunRecorder writes through `outbox.journal.record_run`
        self.runs: list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]] = []

    def record_run(
        self,
        decision: Mapping[str, Any],
        llm_calls: Sequence[Mapping[str, Any]] = (),
        events: Sequence[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Keep one run's rows (as `store.journal` `Runs.record_run` takes them)."""
        run_id = decision["run_id"]
        self.runs.append(
            (
                checked(decisions, decision),
                [checked(llm_calls_table, {"run_id": run_id, **c}) for c in llm_calls],
                [checked(events_table, {"run_id": run_id, **e}) for e in events],
            )
        )
        return []

    def publish(self, event: Mapping[str, Any]) -> None:
        """Nobody watches a backtest's runs live."""

    def write(self, journal: Journal, holds: Sequence[dict[str, Any]]) -> None:
        """Journal the kept runs and the holds at the other bars, in one transaction."""
        runs = [decision for decision, _, _ in self.runs]
        calls = [call for _, rows, _ in self.runs for call in rows]
        events = [event for _, _, rows in self.runs for event in rows]
        with journal.engine.begin() as connection:
            for table, rows in ((decisions, [*runs, *holds]), (llm_calls_table, calls)):
                by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
                for row in rows:  # one statement for the rows of each set of columns
                    by_columns.setdefault(frozenset(row), []).append(row)
                for same in by_columns.values():
                    for start in range(0, len(same), _ROWS_PER_INSERT):
                        connection.execute(table.insert(), same[start : start + _ROWS_PER_INSERT])
            if events:
                insert_events(connection, events)


@dataclass
class ReviewedRun:
    """One reviewed proposal: the graph's final state and what the reviewers said."""

    pending: PendingDecision
    final: dict[str, Any]
    go_ahead: bool
    fills_before: int
    duration_ms: float


class GraphReviewer:
    """Runs the compiled graph on a pending decision's state, stopping before `sizing`."""

    def __init__(self, context: Context) -> None:
        """Compile the graph once, over a checkpointer each run's thread is dropped from."""
        self.saver = InMemorySaver()
        self.graph = build_graph(self.saver, interrupt_before=["sizing"])
        self.context = context

    async def review(self, state: TradeState) -> tuple[bool, dict[str, Any]]:
        """(both checks agreed, the run's state where it stopped)."""
        run_id = state["run_id"]
        config: Any = {"configurable": {"thread_id": run_id}}
        try:
            final = await self.graph.ainvoke(state, config, context=self.context, durability="exit")
        finally:
            self.saver.delete_thread(run_id)
        final = dict(final)
        final.pop("__interrupt__", None)
        return "decision" not in final, final


def _check_proposal(pending: PendingDecision, final: Mapping[str, Any], markets: list[str]) -> None:
    proposal = final.get("proposal") or {}
    want = ("buy" if pending.action == BUY else "sell", markets[pending.market])
    got = (proposal.get("action"), proposal.get("market"))
    if got != want:
        raise ProposalMismatch(
            f"at {final.get('bar_ts')} the simulator's rules proposed {want[0]} {want[1]} and "
            f"the graph's proposed {got[0]} {got[1]} ({proposal.get('reason')}): the fast path "
            "and the engine would decide differently; run with --engine-path"
        )


@dataclass
class FastRun:
    """What the fast path produced: the simulator's result and the reviewed runs."""

    run: SimulationRun
    prepared: Prepared
    reviewed: int
    went_ahead: int
    session_id: str
    elapsed_s: float
    decisions: list[dict[str, Any]]  # as journaled: the reviewed runs and the holds
    calls: list[dict[str, Any]]  # the reviewed runs' LLM calls, with their run's bar time


def _order_view(run: SimulationRun, fill: int, markets: list[str]) -> dict[str, Any]:
    fills = run.result().fills
    side = "bid" if fills["side"][fill] == BUY else "ask"
    market = markets[int(fills["market"][fill])]
    view: dict[str, Any] = {
        "market": market,
        "side": side,
        "ord_type": "price" if side == "bid" else "market",
        "state": "done",
        "executed_volume": _text(fills["volume"][fill], 8),
        "avg_price": _text(fills["price"][fill]),
        "paid_fee": _text(fills["fee"][fill]),
    }
    if side == "bid":
        m = int(fills["market"][fill])
        view["stop_loss_price"] = _text(run.book[10][m], 4)
        view["take_profit_price"] = _text(run.book[11][m], 4)
    return view


def _finish(reviewed: ReviewedRun, run: SimulationRun, markets: list[str]) -> dict[str, Any]:
    """The run's final state as the engine would journal it, once its order is settled."""
    final = dict(reviewed.final)
    if not reviewed.go_ahead:
        return final
    counts = int(run.counts[0])
    fills = run.result().fills
    filled = [
        i
        for i in range(reviewed.fills_before, counts)
        if int(fills["bar"][i]) == reviewed.pending.bar
        and FILL_REASONS[int(fills["reason"][i])] in ("enter", *POLICY_EXITS)
    ]
    action = final["proposal"]["action"]
    market = final["proposal"]["market"]
    sizing: dict[str, Any] = {"reviewer": "rule-based", "refused": None}
    if action == "buy" and filled:
        sizing["investment_ratio"] = float(run.result().ratios[-1])
    final["sizing"] = sizing
    if filled:
        final["order"] = _order_view(run, filled[0], markets)
        final["decision"] = {"action": action, "market": market, "reason": "agreed"}
    else:
        final["decision"] = {"action": "hold", "market": market, "reason": "order_not_filled"}
    return final


async def review_loop(
    run: SimulationRun,
    builder: StateBuilder,
    signals: BarSignals,
    reviewer: GraphReviewer,
    recorder: RunRecorder,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, list[int]]:
    """Walk the run to its end, reviewing each proposal; return (reviewed, went ahead, bars)."""
    reviewed_bars: list[int] = []
    went_ahead = 0
    waiting: ReviewedRun | None = None
    n_bars = len(run.data)
    while True:
        pending = run.advance()
        if waiting is not None:
            final = _finish(waiting, run, builder.markets)
            recorder.record(final["run_id"], final, waiting.duration_ms)
            waiting = None
        if pending is None:
            break
        started = time.perf_counter()
        signals.bar = pending.bar
        go_ahead, final = await reviewer.review(builder.state(pending))
        _check_proposal(pending, final, builder.markets)
        waiting = ReviewedRun(
            pending, final, go_ahead, int(run.counts[0]), (time.perf_counter() - started) * 1e3
        )
        reviewed_bars.append(pending.bar)
        went_ahead += go_ahead
        run.answer(go_ahead)
        if on_progress is not None:
            on_progress(pending.bar + 1, n_bars)
    return len(reviewed_bars), went_ahead, reviewed_bars


def hold_rows(
    run: SimulationRun,
    builder: StateBuilder,
    reviewed: Sequence[int],
    closes: npt.NDArray[np.float64],
) -> list[dict[str, Any]]:
    """A decision row for every bar no graph ran at: the hold its rule decided, with every
    market's close (the veto ledger reads the close `horizon` minutes after each proposal from
    the runs), as the engine journals such a bar."""
    skip = set(reviewed)
    arrays = run.data
    created = datetime.now(UTC)
    rows = []
    markets = builder.markets
    named = run.bar_markets.tolist()
    for t, rule in enumerate(run.bar_rules.tolist()):
        if t in skip or rule < 0:
            continue
        minute = int(arrays.bar_minute[t])
        row = {
            "run_id": builder.run_id(minute),
            "session_id": builder.session_id,
            "bar_ts": datetime.fromtimestamp(minute * 60, UTC),
            "created_at": created,
            "trigger": "bar",
            "action": "hold",
            "market": markets[named[t]] if named[t] >= 0 else None,
            "reason": RULE_NAMES[rule],
            "duration_ms": 0.0,
            "nodes": {
                "input": {
                    "closes": {
                        market: float(closes[t, m])
                        for m, market in enumerate(markets)
                        if math.isfinite(closes[t, m])
                    }
                }
            },
        }
        rows.append(checked(decisions, row))
    return rows


def _engine_closes(prepared: Prepared) -> npt.NDArray[np.float64]:
    """Every market's close at each bar as the engine holds it (the last one seen)."""
    arrays = prepared.arrays
    closes = np.where(arrays.has_bar, arrays.close, np.nan)
    closes = np.vstack([prepared.warmup_close[None, :], closes])
    return cast(npt.NDArray[np.float64], _carried(closes, ~np.isnan(closes))[1:])


@dataclass(frozen=True)
class FastInputs:
    """What the fast path reads besides the reviewers: made once, shared by replays (the
    ablation's variants) of the same candles, model and settings."""

    prepared: Prepared
    history: MarketHistory


def fast_inputs(
    settings: Settings, candles: pd.DataFrame, predictor: Predictor, minutes: int | None
) -> FastInputs:
    """The simulator's arrays (`--minutes` bars at most) and every market's features."""
    prepared = prepare(candles, predictor, settings)
    if minutes is not None and len(prepared.arrays) > minutes:
        prepared = prepared.head(minutes)
    prepared = as_the_graph_sees(prepared)
    return FastInputs(prepared, MarketHistory(candles, prepared.arrays.markets))


async def run_fast(
    settings: Settings,
    inputs: FastInputs,
    predictor: Predictor,
    reviewers: Reviewers,
    journal: Journal,
    session_id: str,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> FastRun:
    """The simulator over the inputs' bars with the graph reviewing each proposed order."""
    started = time.perf_counter()
    prepared = inputs.prepared
    policy = policy_from(settings, predictor.meta)
    run = SimulationRun(prepared.arrays, policy.rules, simulation_settings(settings), review=True)
    markets = list(prepared.arrays.markets)
    builder = StateBuilder(run, inputs.history, markets, session_id, prepared.warmup_close)
    signals = BarSignals(predictor.model_id, prepared)
    context = Context(
        signal_model=signals,
        exchange=cast(Any, _NoOrders()),
        groq=reviewers.groq,
        ollama=reviewers.ollama,
        sizer=reviewers.sizer,
        policy=policy,
        place_orders=False,
    )
    rows = RunRows()
    recorder = RunRecorder(cast(Outbox, rows), session_id)
    reviewed, went_ahead, bars = await review_loop(
        run, builder, signals, GraphReviewer(context), recorder, on_progress
    )
    holds = hold_rows(run, builder, bars, _engine_closes(prepared))
    rows.write(journal, holds)
    runs = [decision for decision, _, _ in rows.runs]
    calls = [
        {**call, "bar_ts": decision["bar_ts"]} for decision, made, _ in rows.runs for call in made
    ]
    return FastRun(
        run,
        prepared,
        reviewed,
        went_ahead,
        session_id,
        time.perf_counter() - started,
        sorted([*runs, *holds], key=lambda d: d["bar_ts"]),
        calls,
    )


def fast_simulation_parts(
    fast: FastRun,
    settings: Settings,
    predictor: Predictor,
    meter: CallMeter,
    reviewers: Reviewers,
) -> dict[str, Any]:
    """What `app.backtest.Simulation` holds, from the fast path's run and the rows it journaled."""
    result = fast.run.result()
    prepared = fast.prepared
    params = policy_from(settings, predictor.meta).rules
    metrics = strategy_metrics(result, prepared, params)
    markets = prepared.arrays.markets
    fills = [
        {
            "ts": pd.Timestamp(float(ts), unit="s", tz="UTC").isoformat(),
            "market": markets[int(m)],
            "side": "bid" if side == BUY else "ask",
            "price": float(price),
            "volume": float(volume),
            "fee": float(fee),
            "reason": FILL_REASONS[int(reason)],
        }
        for ts, m, side, price, volume, fee, reason in zip(
            result.fills["time_s"],
            result.fills["market"],
            result.fills["side"],
            result.fills["price"],
            result.fills["volume"],
            result.fills["fee"],
            result.fills["reason"],
            strict=True,
        )
    ]
    trades = [
        {
            "market": t["market"],
            "opened_at": t["opened_at"],
            "closed_at": t["closed_at"],
            "minutes": t["minutes"],
            "entry_price": t["entry_price"],
            "exit_price": t["exit_price"],
            "pnl_krw": round(t["pnl"], 2),
            "return": t["return"],
            "exit_reason": (
                f"policy:{t['exit_reason']}"
                if t["exit_reason"] in POLICY_EXITS
                else t["exit_reason"]
            ),
        }
        for t in metrics["trades"]
    ]
    held = Counter(str(d["reason"]) for d in fast.decisions if d["action"] == "hold")
    holds = dict(sorted(held.items(), key=lambda kv: (-kv[1], kv[0])))  # as the journal counts
    sides = result.fills["side"]
    reasons = [FILL_REASONS[int(r)] for r in result.fills["reason"]]
    horizon = int(params.horizon_minutes)
    # The ledger from the rows just journaled (what `lxa report reviewers` reads back).
    ledger = veto_ledger(fast.decisions, horizon_minutes=horizon, fee_rate=float(FEE_RATE))
    ledger["costs"] = call_costs(fast.calls)
    index = pd.DatetimeIndex(
        pd.to_datetime(prepared.arrays.bar_minute * 60, unit="s", utc=True)
    ).tz_convert("UTC")
    summary = {
        "session_id": fast.session_id,
        "buys": int((sides == BUY).sum()),
        "sells": int((sides == SELL).sum()),
        "protection_exits": sum(1 for r in reasons if r in ("stop_loss", "take_profit")),
        "emergency_exits": sum(1 for r in reasons if r.startswith("watchdog:")),
        "holds": holds,
        "elapsed_s": fast.elapsed_s,
        "runs": len(result.equity),
        "graph_runs": fast.reviewed,
        "went_ahead": fast.went_ahead,
        "mean_cycle_ms": 1e3 * fast.elapsed_s / max(1, len(result.equity)),
    }
    return {
        "equity": pd.Series(result.equity, index=index),
        "initial_krw": result.initial_krw,
        "fills": fills,
        "position_closed_events": int((sides == SELL).sum()),
        "summary": summary,
        "trades": trades,
        "holds": holds,
        "model_status": model_status(settings, predictor.meta),
        "params": params.to_json(),
        "llm": meter.to_json(),
        "veto_ledger": ledger,
        "reviewer_names": {"groq": reviewers.groq.name, "ollama": reviewers.ollama.name},
    }


__all__ = [
    "ENGINE_PATH_NAME",
    "PATH_NAME",
    "BarSignals",
    "FastInputs",
    "FastRun",
    "MarketHistory",
    "ProposalMismatch",
    "fast_inputs",
    "fast_simulation_parts",
    "run_fast",
]
