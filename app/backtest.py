"""`lxa backtest`: score a model on unseen candles and trade them with the LLM checks off.

Two measurements of one model on candles it never trained on:

- the batch path: per market, regularize the candles, compute the features and the labels
  (the model's own label definition) and score every real, warmed-up, labelled bar with the
  Predictor, giving ROC AUCs against a volatility-only baseline;
- the trading path: the real engine (`open_services`: paper account, risk guard, watchdog,
  stop-loss/take-profit, Upbit fees and minimums, the rule-based sizer) replays the candles
  bar by bar, with both reviewers replaced by `AgreeReviewer`, so every ML proposal reaches
  deterministic sizing. The equity after every bar and the journal's fills give the returns.

Everything is written under the report directory: a fresh journal and paper account each
time, `metrics.json`, `equity.png` and a self-contained `report.html`.
"""

from __future__ import annotations

import base64
import gc
import html
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.policy_eval import json_ready
from app.session import (
    collect_closes,
    describe_training,
    new_session_id,
    summarize,
    training_window_end,
)
from app.settings import Settings
from app.wiring import BUNDLED_MODELS, ModelNotFoundError, open_services
from exchange.feed import BarClose
from exchange.rules import FEE_RATE
from graph.review import ReviewRequest, TokenCallback, Verdict
from llm.rule_based import RuleBasedSizer
from ml.data import load_candles, regularize
from ml.evaluate import (
    MINUTES_PER_YEAR,
    MarketBook,
    buy_and_hold_curve,
    fold_fills,
    hold_lowest_score_curve,
    max_drawdown,
    roc_auc,
    sharpe_ratio,
    win_rate,
)
from ml.features import (
    WARMED_FEATURES,
    WARMUP_BARS,
    compute_features,
)
from ml.labels import make_labels
from ml.predict import Predictor
from ml.registry import latest_model_dir, read_meta
from store.journal import Journal

LLM_OFF = "llm-off (backtest)"
VOL_FEATURE = "volatility_60"
VOL_REBALANCE_BARS = 60
_MARKET_NAME = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,30}$")
ProgressCallback = Callable[[int, int], None]

DEFINITIONS: dict[str, str] = {
    "auc_buy": "ROC AUC of the model's P(buy) against the buy label (forward return over the "
    "model's label horizon above its threshold), over every real (not gap-filled), warmed-up, "
    "labelled bar of every market inside the traded span. 0.5 is chance.",
    "baseline_auc_vol60": "ROC AUC of the 60-minute volatility feature alone against the same "
    "buy label on the same rows: what a model-free score reaches.",
    "auc_sell": "ROC AUC of P(sell) against the sell label (forward return below minus the "
    "threshold), same rows.",
    "n_trades": "Round trips closed: a market's position going from flat to held and back to "
    "flat, counted from the journal's fills (graph, stop-loss/take-profit and watchdog sells).",
    "win_rate": "Share of closed round trips whose proceeds after fees exceeded their cost "
    "after fees (null without round trips).",
    "total_return": "Final equity / initial capital - 1 of the paper account, after fees and "
    "the paper exchange's slippage; open positions marked at the last closes.",
    "buy_and_hold_return": "The initial capital split equally over the markets at the close of "
    "the first traded bar, the 0.05% entry fee paid, marked at the last closes (no exit fee).",
    "vol_baseline_return": "Volatility-only baseline: at the first traded bar and every 60 bars "
    "after, hold the single market with the LOWEST 60-minute volatility (all capital), paying "
    "the 0.05% fee on every sale and purchase when the choice changes; marked at closes; no "
    "slippage and no minimum order (so it is slightly favoured).",
    "max_drawdown": "Largest fall of the equity curve (initial capital, then the equity after "
    "every bar) from its running peak, as a positive fraction of the peak.",
    "sharpe": "Mean / sample standard deviation of the per-bar (1-minute) returns of that "
    "equity curve, annualised by sqrt(525600) (minutes in a 365-day year), risk-free rate 0. "
    "Null when the equity never moved.",
    "fees_paid": "Sum of the fees of every fill in the backtest's journal, KRW.",
    "pnl_krw": "Per market: sells minus buys after fees, plus any coins still held at the last "
    "close (realised plus unrealised), KRW.",
}


class BacktestError(RuntimeError):
    """A backtest cannot run as asked (bad markets, overlap with training, too few bars)."""


@dataclass(frozen=True)
class AgreeReviewer:
    """Stands in for an LLM check in a backtest: agrees with every ML proposal.

    Named `llm-off (backtest)` in every verdict, so no journal row can pass for a review.
    """

    name: str = LLM_OFF

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Return the proposed action unchanged."""
        return Verdict(
            verdict=request.action,
            confidence=1.0,
            reasoning=f"LLM checks are off in a backtest: {request.action} passes unreviewed",
            reviewer=LLM_OFF,
        )


@dataclass
class Simulation:
    """What the trading path produced."""

    equity: pd.Series  # KRW after every traded bar, indexed by bar open time
    initial_krw: float
    fills: list[dict[str, Any]]
    position_closed_events: int
    summary: dict[str, Any]
    trades: list[dict[str, Any]] = field(default_factory=list)  # closed round trips
    holds: dict[str, int] = field(default_factory=dict)  # hold decisions by rule
    model_status: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the policy's parameters


def markets_in(candles: pd.DataFrame) -> list[str]:
    """Return the candles' markets: KRW-* get Upbit's rules, others the same fee, no ticks."""
    markets = sorted(str(m) for m in pd.unique(candles["market"]))
    bad = [m for m in markets if not _MARKET_NAME.match(m)]
    if bad:
        raise BacktestError(f"market names must be letters, digits and '-': got {bad}")
    if not markets:
        raise BacktestError("the candle files hold no rows in the chosen window")
    return markets


def resolve_backtest_model(model_dir: Path | None) -> Path:
    """The given model set (or the newest in a registry folder), else the bundled one."""
    if model_dir is not None:
        if (model_dir / "meta.json").is_file():
            return model_dir
        latest = latest_model_dir(model_dir) if model_dir.is_dir() else None
        if latest is None:
            raise ModelNotFoundError(
                f"{model_dir} holds no model set (no meta.json, and no model set folder in it)"
            )
        return latest
    bundled = latest_model_dir(BUNDLED_MODELS)
    if bundled is None:
        raise ModelNotFoundError(f"no bundled model set under {BUNDLED_MODELS}")
    return bundled


def backtest_settings(
    settings: Settings, *, report_dir: Path, markets: Sequence[str], model_dir: Path
) -> Settings:
    """Point everything at the report directory and turn every outside service off."""
    return settings.model_copy(
        update={
            "data_dir": report_dir,
            "database_url": f"sqlite:///{(report_dir / 'journal.db').resolve()}",
            "checkpoint_url": "memory",
            "markets": list(markets),
            "model_dir": model_dir,
            "groq_api_key": None,
            "ollama_host": None,
            "sizing_provider": "rule-based",
            "slack_webhook_url": None,
            "telegram_bot_token": None,
        }
    )


def check_unseen(meta: dict[str, Any], first_ts: datetime) -> None:
    """Refuse candles that start (warm-up included) inside the model's training window."""
    trained_until = training_window_end(meta)
    if trained_until is not None and first_ts <= trained_until:
        raise BacktestError(
            f"the model {meta.get('model_id')} was trained on candles up to "
            f"{trained_until.isoformat()}, which overlaps the backtest from "
            f"{first_ts.isoformat()} (warm-up included): refusing to report in-sample "
            "results (pass --since after the training window, or another model)"
        )


# The batch path ----------------------------------------------------------------------------
def score_bars(candles: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """Features, labels and model scores of every bar, per market (the training path).

    Returns market, ts, close, filled, warmed (every WARMED_FEATURES column defined), label_buy,
    label_sell, p_buy, p_sell and the volatility feature.
    """
    label = predictor.meta.get("label") or {}
    horizon = int(label.get("horizon", 10))
    threshold = float(label.get("threshold", 0.002))
    needed = list(WARMED_FEATURES)  # the four-hour features are missing until LONG_BARS
    pieces = []
    prepared: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]] = {}
    for market, rows in candles.groupby("market", sort=True):
        frame = regularize(rows.reset_index(drop=True))
        features = compute_features(frame)
        labels = make_labels(frame, horizon=horizon, threshold=threshold)
        warmed = features[needed].notna().all(axis=1).to_numpy()
        prepared[str(market)] = (frame, features, labels, warmed)
    # One batch call over every market: a full model set needs each market's bar sequence and
    # the other markets' rows at the same bar (its stack's context inputs).
    scores = predictor.score_frames(
        {
            market: features[warmed].assign(
                ts=frame["ts"].to_numpy()[warmed], segment=frame["segment"].to_numpy()[warmed]
            )
            for market, (frame, features, labels, warmed) in prepared.items()
        }
    )
    for market, (frame, features, labels, warmed) in prepared.items():
        p_buy = np.full(len(frame), np.nan)
        p_sell = np.full(len(frame), np.nan)
        if warmed.any():
            p_buy[warmed] = scores[market][:, 0]
            p_sell[warmed] = scores[market][:, 1]
        pieces.append(
            pd.DataFrame(
                {
                    "market": str(market),
                    "ts": frame["ts"].to_numpy(),
                    "close": frame["close"].to_numpy(),
                    "filled": frame["filled"].to_numpy(),
                    "warmed": warmed,
                    "label_buy": labels["label_buy"].to_numpy(),
                    "label_sell": labels["label_sell"].to_numpy(),
                    "p_buy": p_buy,
                    "p_sell": p_sell,
                    VOL_FEATURE: features[VOL_FEATURE].to_numpy(),
                }
            )
        )
    scored = pd.concat(pieces, ignore_index=True)
    scored["ts"] = pd.to_datetime(scored["ts"], utc=True)
    return scored


def auc_metrics(rows: pd.DataFrame) -> dict[str, float | None]:
    """AUCs of P(buy), the volatility baseline and P(sell) on real, warmed, labelled rows."""
    buy_rows = rows[~rows["filled"] & rows["warmed"] & rows["label_buy"].notna()]
    sell_rows = rows[~rows["filled"] & rows["warmed"] & rows["label_sell"].notna()]
    return {
        "auc_buy": roc_auc(buy_rows["label_buy"], buy_rows["p_buy"]),
        "baseline_auc_vol60": roc_auc(buy_rows["label_buy"], buy_rows[VOL_FEATURE]),
        "auc_sell": roc_auc(sell_rows["label_sell"], sell_rows["p_sell"]),
        "scored_bars": len(buy_rows),
        "buy_label_rate": float(buy_rows["label_buy"].astype("float64").mean())
        if len(buy_rows)
        else None,
    }


# The trading path --------------------------------------------------------------------------
async def simulate(
    settings: Settings,
    closes: Sequence[BarClose],
    *,
    report_dir: Path,
    minutes: int | None,
    on_progress: ProgressCallback | None = None,
) -> Simulation:
    """Warm the real engine up, trade every later bar with the LLM checks off, track equity."""
    to_run = list(closes[WARMUP_BARS:])
    if minutes is not None:
        to_run = to_run[:minutes]
    if not to_run:
        raise BacktestError(
            f"the candles hold {len(closes)} bar(s): a backtest needs more than the "
            f"{WARMUP_BARS} warm-up bars"
        )
    for stale in ("journal.db", "journal.db-wal", "journal.db-shm", "paper_account.json"):
        (report_dir / stale).unlink(missing_ok=True)
    session_id = new_session_id("backtest")
    started = time.perf_counter()
    async with open_services(
        settings,
        session_id=session_id,
        account_path=report_dir / "paper_account.json",
        checkpointer_url="none",  # nothing resumes or forks a backtest's runs
    ) as services:
        engine = services.engine
        engine.context.groq = AgreeReviewer()
        engine.context.ollama = AgreeReviewer()
        engine.context.sizer = RuleBasedSizer()
        engine.warm_up(closes[:WARMUP_BARS])
        equity: list[float] = []
        durations: list[float] = []
        # What start-up built lives as long as the backtest: kept out of the collector's
        # full collections while the bars run (as `lxa run` does), given back afterwards.
        gc.collect()
        gc.freeze()
        try:
            for index, close in enumerate(to_run, start=1):
                result = await engine.on_bar_close(close)
                durations.append(result.duration_ms)
                account = await services.exchange.get_account()
                equity.append(float(account.equity(engine.closes)))
                if on_progress is not None:
                    on_progress(index, len(to_run))
        finally:
            gc.unfreeze()
        summary = await summarize(
            engine,
            services,
            start_close=to_run[0],
            end_close=to_run[-1],
            elapsed_s=time.perf_counter() - started,
            runs_this_call=len(to_run),
            mean_cycle_ms=sum(durations) / len(durations),
            notes=[],
        )
        journal = services.journal
        fills = journal.list_fills()
        closed = sum(
            1
            for event in journal.events_after(0, limit=10**9)
            if event["type"] == "position_closed"
        )
        initial = float(services.exchange.initial_krw)
        trades = trade_list(journal)
        holds = journal.hold_reasons(engine.session_id)
        model_status = dict(engine.model_status)
        params = engine.context.policy.rules.to_json()
    index = pd.DatetimeIndex([c.ts for c in to_run]).tz_convert("UTC")
    return Simulation(
        equity=pd.Series(equity, index=index),
        initial_krw=initial,
        fills=fills,
        position_closed_events=closed,
        summary=summary.to_json(),
        trades=trades,
        holds=holds,
        model_status=model_status,
        params=params,
    )


# The trade list ---------------------------------------------------------------------------
def exit_reason(identifier: str, journal: Journal, orders: dict[str, dict[str, Any]]) -> str:
    """Why a sell happened, from its order: the policy's rule, a protection or the watchdog."""
    if "-emergency-" in identifier:
        return "watchdog:" + identifier.rsplit("-emergency-", 1)[1].split("-")[0]
    for reason in ("stop_loss", "take_profit", "flatten"):
        if identifier.endswith(f"-{reason}") or f"-{reason}-" in identifier:
            return reason
    run_id = (orders.get(identifier) or {}).get("run_id")
    decision = journal.get_decision(run_id) if run_id else None
    if decision is not None:
        proposal = ((decision.get("nodes") or {}).get("ml_signal") or {}).get("proposal") or {}
        return f"policy:{proposal.get('reason', 'sell')}"
    return "sell"


def trade_list(journal: Journal) -> list[dict[str, Any]]:
    """Every closed round trip from the journal's fills: times, prices, result, exit reason."""
    orders = {str(o["identifier"]): o for o in journal.list_orders()}
    fills = journal.list_fills()
    opened: dict[str, dict[str, Any]] = {}
    trades: list[dict[str, Any]] = []
    for fill in fills:
        market = str(fill["market"])
        volume, price, fee = (float(str(fill[k])) for k in ("volume", "price", "fee"))
        ts = pd.Timestamp(fill["ts"])
        trip = opened.setdefault(
            market, {"opened_at": ts, "volume": 0.0, "cost": 0.0, "proceeds": 0.0, "fees": 0.0}
        )
        trip["fees"] += fee
        if fill["side"] == "bid":
            trip["volume"] += volume
            trip["cost"] += price * volume + fee
            trip.setdefault("entry_price", price)
            continue
        trip["volume"] -= volume
        trip["proceeds"] += price * volume - fee
        if trip["volume"] > 1e-12:
            continue
        del opened[market]
        pnl = trip["proceeds"] - trip["cost"]
        trades.append(
            {
                "market": market,
                "opened_at": trip["opened_at"].isoformat(),
                "closed_at": ts.isoformat(),
                "minutes": int((ts - trip["opened_at"]).total_seconds() // 60),
                "entry_price": trip.get("entry_price"),
                "exit_price": price,
                "pnl_krw": round(pnl, 2),
                "return": pnl / trip["cost"] if trip["cost"] else None,
                "fees_krw": round(trip["fees"], 2),
                "exit_reason": exit_reason(str(fill["order_identifier"]), journal, orders),
            }
        )
    return trades


def policy_summary(
    trades: Sequence[dict[str, Any]], holds: dict[str, int], initial: float, fees: float
) -> dict[str, Any]:
    """What the policy did: the rules behind the holds, the exits, the shortest ML round trip."""
    ml = [t for t in trades if str(t["exit_reason"]).startswith("policy:")]
    exits: dict[str, int] = {}
    for trade in trades:
        exits[trade["exit_reason"]] = exits.get(trade["exit_reason"], 0) + 1
    return {
        "holds_by_rule": dict(sorted(holds.items(), key=lambda kv: -kv[1])),
        "exits": exits,
        "shortest_ml_round_trip_minutes": min((t["minutes"] for t in ml), default=None),
        "shortest_round_trip_minutes": min((t["minutes"] for t in trades), default=None),
        "fees_pct_of_capital": 100.0 * fees / initial if initial else None,
    }


# Putting it together -----------------------------------------------------------------------


def _closes_matrix(scored: pd.DataFrame, column: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    wide = scored.pivot(index="ts", columns="market", values=column).sort_index()
    if column == "close":
        wide = wide.ffill()
    return wide.reindex(wide.index.union(index)).ffill().reindex(index)


async def run_backtest(
    settings: Settings,
    *,
    candles_paths: Sequence[Path],
    report_dir: Path,
    model_dir: Path | None = None,
    minutes: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run the backtest, write metrics.json, equity.png and report.html; return the metrics."""
    candles = load_candles(list(candles_paths))
    if since is not None:
        candles = candles[candles["ts"] >= pd.Timestamp(since)]
    if until is not None:
        candles = candles[candles["ts"] < pd.Timestamp(until)]
    candles = candles.reset_index(drop=True)
    markets = markets_in(candles)
    model_path = resolve_backtest_model(model_dir)
    meta = read_meta(model_path)
    check_unseen(meta, candles["ts"].min().to_pydatetime())
    report_dir.mkdir(parents=True, exist_ok=True)
    settings = backtest_settings(
        settings, report_dir=report_dir, markets=markets, model_dir=model_path
    )
    closes = await collect_closes(candles)
    simulation = await simulate(
        settings, closes, report_dir=report_dir, minutes=minutes, on_progress=on_progress
    )
    predictor = Predictor.load(model_path)
    scored = score_bars(candles, predictor)
    first_ts, last_ts = simulation.equity.index[0], simulation.equity.index[-1]
    in_span = scored[(scored["ts"] >= first_ts) & (scored["ts"] <= last_ts)]
    fee = float(FEE_RATE)
    close_matrix = _closes_matrix(scored, "close", simulation.equity.index)
    hold_curve = buy_and_hold_curve(close_matrix, fee)
    vol_curve, vol_switches = hold_lowest_score_curve(
        close_matrix,
        _closes_matrix(scored, VOL_FEATURE, simulation.equity.index),
        VOL_REBALANCE_BARS,
        fee,
    )
    books = fold_fills(simulation.fills)
    equity_curve = np.concatenate([[simulation.initial_krw], simulation.equity.to_numpy()])
    round_trips = [trip for book in books.values() for trip in book.round_trips]
    last_close = close_matrix.iloc[-1]
    per_market: dict[str, Any] = {}
    for market in markets:
        book = books.get(market, MarketBook(market))
        rows = in_span[in_span["market"] == market]
        aucs = auc_metrics(rows)
        close = float(last_close[market]) if not pd.isna(last_close[market]) else None
        per_market[market] = {
            "auc_buy": aucs["auc_buy"],
            "baseline_auc_vol60": aucs["baseline_auc_vol60"],
            "auc_sell": aucs["auc_sell"],
            "scored_bars": aucs["scored_bars"],
            "n_trades": len(book.round_trips),
            "win_rate": win_rate(book.round_trips),
            "pnl_krw": round(book.pnl_krw(close), 2),
            "fees_paid": round(book.fees_krw, 2),
            "buy_and_hold_return": (1 - fee)
            * float(close_matrix[market].iloc[-1])
            / float(close_matrix[market].iloc[0])
            - 1,
            "held_at_end": book.open_volume > 0,
        }
    totals = auc_metrics(in_span)
    summary = simulation.summary
    metrics: dict[str, Any] = {
        "model_id": predictor.model_id,
        "model_trained_on": describe_training(meta),
        "training_window_end": (
            end.isoformat() if (end := training_window_end(meta)) is not None else None
        ),
        "candles": {
            "files": [str(p) for p in candles_paths],
            "first_ts": candles["ts"].min().isoformat(),
            "last_ts": candles["ts"].max().isoformat(),
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "markets": markets,
        "traded_span": {"first_ts": first_ts.isoformat(), "last_ts": last_ts.isoformat()},
        "warmup_bars": WARMUP_BARS,
        "bars": len(simulation.equity),
        "auc_buy": totals["auc_buy"],
        "baseline_auc_vol60": totals["baseline_auc_vol60"],
        "auc_sell": totals["auc_sell"],
        "scored_bars": totals["scored_bars"],
        "buy_label_rate": totals["buy_label_rate"],
        "n_trades": len(round_trips),
        "win_rate": win_rate(round_trips),
        "total_return": float(equity_curve[-1] / simulation.initial_krw - 1),
        "buy_and_hold_return": float(hold_curve.iloc[-1] - 1),
        "vol_baseline_return": float(vol_curve.iloc[-1] - 1),
        "vol_baseline_switches": len(vol_switches),
        "max_drawdown": max_drawdown(equity_curve),
        "sharpe": sharpe_ratio(equity_curve),
        "sharpe_annualisation": f"sqrt({MINUTES_PER_YEAR}) (per-bar 1-minute returns)",
        "fees_paid": round(sum(book.fees_krw for book in books.values()), 2),
        "initial_equity": simulation.initial_krw,
        "final_equity": round(float(equity_curve[-1]), 2),
        "buys": summary["buys"],
        "sells": summary["sells"],
        "protection_exits": summary["protection_exits"],
        "emergency_exits": summary["emergency_exits"],
        "holds": summary["holds"],
        "reviewers": LLM_OFF,
        "sizer": "rule-based",
        "policy": {
            "params": simulation.params,
            **policy_summary(
                simulation.trades,
                simulation.holds,
                simulation.initial_krw,
                sum(book.fees_krw for book in books.values()),
            ),
        },
        "model_status": simulation.model_status,
        "fast_path": _fast_path(settings, candles, model_path, simulation),
        "trades": simulation.trades,
        "per_market": per_market,
        "journal": str(report_dir / "journal.db"),
        "elapsed_s": summary["elapsed_s"],
        "definitions": DEFINITIONS,
    }
    metrics["notes"] = _notes(metrics, simulation)
    metrics = json_ready(metrics)
    (report_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n"
    )
    png = _plot(simulation, hold_curve, vol_curve, report_dir / "equity.png")
    (report_dir / "report.html").write_text(_html(metrics, png))
    return metrics


def _fast_path(
    settings: Settings, candles: pd.DataFrame, model_path: Path, simulation: Simulation
) -> dict[str, Any]:
    """The fast simulator over the same candles: its result and random entries at the same rate.

    The simulator replays the engine's loop (policy.simulate); where it and the engine differ,
    the engine is the reference and the difference is shown here, never hidden.
    """
    from app.policy_eval import random_entries, strategy_metrics
    from app.simulation import prepare, simulation_settings
    from policy.params import PolicyParams
    from policy.simulate import simulate as simulate_fast

    predictor = Predictor.load(model_path)
    prepared = prepare(candles, predictor, settings)
    bars = len(simulation.equity)
    if len(prepared.arrays) > bars:  # --minutes: the engine traded only the first bars
        prepared = prepared.head(bars)
    params = PolicyParams.from_json(simulation.params)
    sim_settings = simulation_settings(settings)
    result = simulate_fast(prepared.arrays, params, sim_settings)
    metrics = strategy_metrics(result, prepared, params)
    return {
        "total_return": metrics["total_return"],
        "entries": metrics["entries"],
        "round_trips": metrics["round_trips"],
        "fees": metrics["fees"],
        "random_entries": random_entries(prepared, result, params, sim_settings),
        "note": "policy.simulate over the same candles and model (the engine is the reference)",
    }


def _notes(metrics: dict[str, Any], simulation: Simulation) -> list[str]:
    notes = [
        "LLM checks off: both reviewers are replaced by an agree-with-the-proposal stand-in "
        f"({LLM_OFF}); sizing is the rule-based sizer; fees, minimums, slippage, "
        "stop-loss/take-profit, the watchdog and the risk limits are the trading code's own.",
        "AUCs use the batch path (regularize, compute_features, make_labels, Predictor) over "
        "real bars in the traded span; live features in the engine agree with it to "
        "floating-point noise.",
        f"vol_baseline: lowest {VOL_FEATURE} market held, rebalanced every "
        f"{VOL_REBALANCE_BARS} bars, fees on switches, no slippage.",
    ]
    if simulation.position_closed_events != metrics["n_trades"]:
        notes.append(
            f"journal recorded {simulation.position_closed_events} position_closed events "
            f"against {metrics['n_trades']} round trips folded from fills"
        )
    status = metrics.get("model_status") or {}
    if status and not status.get("proven"):
        notes.append(
            f"unproven model: {status.get('verdict')}. Live trading refuses its entries unless "
            "LXA_ALLOW_UNPROVEN_MODEL (--allow-unproven-model) is set."
        )
    fast = metrics.get("fast_path") or {}
    if fast and fast.get("entries") != metrics["buys"]:
        notes.append(
            f"the fast simulator made {fast.get('entries')} entries where the engine made "
            f"{metrics['buys']}: the engine's figures are the reference"
        )
    if metrics["n_trades"] < 30:
        notes.append(
            f"only {metrics['n_trades']} round trips: win rate and returns are anecdotal, "
            "not statistically meaningful"
        )
    return notes


def _plot(simulation: Simulation, hold_curve: pd.Series, vol_curve: pd.Series, path: Path) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategy = simulation.equity / simulation.initial_krw
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    ax.plot(strategy.index, strategy.to_numpy(), label="strategy (LLM checks off)", lw=1.3)
    ax.plot(hold_curve.index, hold_curve.to_numpy(), label="buy and hold (equal split)", lw=1.0)
    ax.plot(
        vol_curve.index, vol_curve.to_numpy(), label="lowest-volatility baseline", lw=0.9, ls="--"
    )
    for side, marker, colour, label in (
        ("bid", "^", "tab:green", "buy fill"),
        ("ask", "v", "tab:red", "sell fill"),
    ):
        times = [pd.Timestamp(f["ts"]) for f in simulation.fills if f["side"] == side]
        if times:
            when = pd.DatetimeIndex(times).tz_convert("UTC")
            at = strategy.index.searchsorted(when, side="right") - 1
            at = np.clip(at, 0, len(strategy) - 1)
            ax.scatter(
                strategy.index[at], strategy.to_numpy()[at], marker=marker, s=22, c=colour,
                label=label, zorder=3,
            )  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.set_ylabel("equity / initial")
    ax.set_xlabel("UTC")
    ax.set_title("Backtest equity, normalised to 1.0")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "n/a"
    if kind == "pct" and isinstance(value, int | float):
        return f"{value * 100:+.2f}%"
    if kind == "frac" and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return html.escape(str(value))


def reading(metrics: dict[str, Any]) -> str:
    """An honest one-paragraph reading of the numbers."""
    parts = []
    auc, base = metrics["auc_buy"], metrics["baseline_auc_vol60"]
    if auc is None:
        parts.append("The buy AUC is undefined here (one label class only).")
    else:
        edge = "above" if auc > 0.5 else "not above"
        parts.append(
            f"On {metrics['scored_bars']} unseen bars the model ranks buy opportunities with "
            f"AUC {auc:.3f}, {edge} chance (0.5)"
        )
        if base is not None:
            better = "better than" if auc > base else "no better than"
            parts[-1] += f" and {better} 60-minute volatility alone ({base:.3f})."
        else:
            parts[-1] += "."
    total, hold, vol = (
        metrics["total_return"],
        metrics["buy_and_hold_return"],
        metrics["vol_baseline_return"],
    )
    verdict = "beat" if total > max(hold, vol) else "did not beat"
    parts.append(
        f"Trading it with the LLM checks off returned {total * 100:+.2f}% after "
        f"{metrics['fees_paid']:,.0f} KRW of fees over {metrics['bars']} one-minute bars, and "
        f"{verdict} buy-and-hold ({hold * 100:+.2f}%) and the lowest-volatility baseline "
        f"({vol * 100:+.2f}%)."
    )
    policy = metrics.get("policy") or {}
    holds = policy.get("holds_by_rule") or {}
    if holds:
        top, count = next(iter(holds.items()))
        parts.append(
            f"The policy held on {sum(holds.values())} bars, most often for '{top}' ({count})."
        )
    parts.append(
        f"It closed {metrics['n_trades']} round trips; a few days of one-minute bars are a "
        "short sample, so a good AUC here is a ranking signal, not proof of profit, and the "
        "returns mostly reflect how few trades cleared the entry threshold and fees."
    )
    return " ".join(parts)


def _html(metrics: dict[str, Any], png: bytes) -> str:
    headline = [
        ("auc_buy", metrics["auc_buy"], ""),
        ("baseline_auc_vol60", metrics["baseline_auc_vol60"], ""),
        ("auc_sell", metrics["auc_sell"], ""),
        ("n_trades", metrics["n_trades"], ""),
        ("win_rate", metrics["win_rate"], "frac"),
        ("total_return", metrics["total_return"], "pct"),
        ("buy_and_hold_return", metrics["buy_and_hold_return"], "pct"),
        ("vol_baseline_return", metrics["vol_baseline_return"], "pct"),
        ("max_drawdown", metrics["max_drawdown"], "frac"),
        ("sharpe", metrics["sharpe"], ""),
        ("fees_paid", metrics["fees_paid"], ""),
        ("final_equity", metrics["final_equity"], ""),
    ]
    head_rows = "\n".join(
        f"<tr><th>{name}</th><td>{_fmt(value, kind)}</td></tr>" for name, value, kind in headline
    )
    columns = [
        ("auc_buy", ""),
        ("baseline_auc_vol60", ""),
        ("auc_sell", ""),
        ("n_trades", ""),
        ("win_rate", "frac"),
        ("pnl_krw", ""),
        ("fees_paid", ""),
        ("buy_and_hold_return", "pct"),
    ]
    market_rows = "\n".join(
        "<tr><th>"
        + html.escape(market)
        + "</th>"
        + "".join(f"<td>{_fmt(row[c], kind)}</td>" for c, kind in columns)
        + "</tr>"
        for market, row in metrics["per_market"].items()
    )
    definitions = "\n".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>"
        for name, text in DEFINITIONS.items()
    )
    notes = "\n".join(f"<li>{html.escape(note)}</li>" for note in metrics["notes"])
    policy = metrics.get("policy") or {}
    policy_rows = "\n".join(
        f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in (
            ("holds by rule", policy.get("holds_by_rule")),
            ("exits", policy.get("exits")),
            ("shortest ML round trip (min)", policy.get("shortest_ml_round_trip_minutes")),
            ("fees, % of capital", _fmt(policy.get("fees_pct_of_capital"))),
            ("parameters", policy.get("params")),
            ("model", (metrics.get("model_status") or {}).get("verdict")),
            ("fast simulator", {k: v for k, v in (metrics.get("fast_path") or {}).items()}),
        )
    )
    trade_rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(t[k]))}</td>"
            for k in ("market", "opened_at", "closed_at", "minutes", "exit_reason")
        )
        + f"<td>{_fmt(t['return'], 'pct')}</td><td>{_fmt(t['pnl_krw'])}</td></tr>"
        for t in metrics.get("trades", [])
    )
    image = base64.b64encode(png).decode("ascii")
    candles = metrics["candles"]
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Backtest {html.escape(metrics["model_id"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
dt {{ font-weight: 600; margin-top: 0.5em; }}
img {{ max-width: 100%; }}
.reading {{ background: #f8f8f0; padding: 0.8em 1em; border-left: 4px solid #bb9; }}
</style></head><body>
<h1>Backtest: {html.escape(metrics["model_id"])}</h1>
<p>Candles: {html.escape(", ".join(candles["files"]))} ({html.escape(candles["first_ts"])} ..
{html.escape(candles["last_ts"])}); traded {html.escape(metrics["traded_span"]["first_ts"])} ..
{html.escape(metrics["traded_span"]["last_ts"])} ({metrics["bars"]} bars after
{metrics["warmup_bars"]} warm-up bars); markets {html.escape(", ".join(metrics["markets"]))}.<br>
Model trained on: {html.escape(metrics["model_trained_on"])}.<br>
Reviewers: {html.escape(metrics["reviewers"])}; sizer: {html.escape(metrics["sizer"])}.
Generated {generated}.</p>
<h2>Reading</h2>
<p class="reading">{html.escape(reading(metrics))}</p>
<h2>Headline</h2>
<table>{head_rows}</table>
<h2>Equity</h2>
<img alt="equity curve" src="data:image/png;base64,{image}">
<h2>Policy</h2>
<table>{policy_rows}</table>
<h2>Trades</h2>
<table><tr><th>market</th><th>opened</th><th>closed</th><th>minutes</th><th>exit</th>
<th>return</th><th>P&amp;L</th></tr>
{trade_rows}</table>
<h2>Per market</h2>
<table><tr><th>market</th>{"".join(f"<th>{c}</th>" for c, _ in columns)}</tr>
{market_rows}</table>
<h2>Definitions</h2>
<dl>{definitions}</dl>
<h2>Notes</h2>
<ul>{notes}</ul>
</body></html>
"""


__all__ = [
    "LLM_OFF",
    "AgreeReviewer",
    "BacktestError",
    "run_backtest",
    "score_bars",
]
