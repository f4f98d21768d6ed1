"""`lxa backtest`: score a model on unseen candles and trade them (LLM checks off unless asked).

Two measurements of one model on candles it never trained on:

- the batch path: per market, regularize the candles, compute the features and the labels
  (the model's own label definition) and score every real, warmed-up, labelled bar with the
  Predictor, giving ROC AUCs against a volatility-only baseline;
- the trading path: the real engine (`open_services`: paper account, risk guard, watchdog,
  stop-loss/take-profit, Upbit fees and minimums, the rule-based sizer) replays the candles
  bar by bar, with both reviewers replaced by `AgreeReviewer`, so every ML proposal reaches
  deterministic sizing. The equity after every bar and the journal's fills give the returns.
  With the LLM checks on (`--reviewers llm|cache-only`) the fast path trades instead
  (`simulate_fast`, `app.graph_loop`: the compiled simulator, which makes the engine's trades
  fill for fill, and the same compiled graph at each proposed order), unless `--engine-path`;
  the report says which path ran (`path`).

Everything is written under the report directory: a fresh journal and paper account each
time, `metrics.json`, `equity.png` and a self-contained `report.html`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.engine.news import JournalNews, NewsReader, load_journal_news
from app.graph_loop import (
    ENGINE_PATH_NAME,
    PATH_NAME,
    FastInputs,
    fast_inputs,
    fast_simulation_parts,
    run_fast,
)
from app.llm import Reviewers, build_meter, build_reviewers
from app.session import (
    collect_closes,
    describe_training,
    new_session_id,
    summarize,
    training_window_end,
)
from app.settings import Settings
from app.wiring import BUNDLED_MODELS, ModelNotFoundError, open_services
from evaluation.auc import VOL_FEATURE, auc_metrics, score_bars
from evaluation.backtest_report import DEFINITIONS, plot_equity, render_html
from evaluation.policy_result import json_ready
from evaluation.trades import policy_summary, trade_list
from exchange.feed import BarClose
from exchange.rules import FEE_RATE
from graph.review import ReviewRequest, TokenCallback, Verdict
from llm.cost import CallMeter
from llm.rule_based import RuleBasedSizer
from ml.data import load_candles
from ml.evaluate import (
    MINUTES_PER_YEAR,
    MarketBook,
    buy_and_hold_curve,
    fold_fills,
    hold_lowest_score_curve,
    max_drawdown,
    sharpe_ratio,
    win_rate,
)
from ml.features import (
    WARMUP_BARS,
)
from ml.predict import Predictor
from ml.registry import latest_model_dir, read_meta
from prompts.loader import Blind
from store.journal import Journal, JournalResponseCache
from store.reviewer_ledger import call_costs, veto_ledger

LLM_OFF = "llm-off (backtest)"
VOL_REBALANCE_BARS = 60
_MARKET_NAME = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,30}$")
# (bars done, bars in all, the LLM calls so far: calls, cache_hits, cost_usd, tokens)
ProgressCallback = Callable[[int, int, Mapping[str, Any]], None]
REVIEWER_MODES = ("off", "llm", "cache-only")


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
    llm: dict[str, Any] = field(default_factory=dict)  # calls, cache hits, tokens, money
    veto_ledger: dict[str, Any] = field(default_factory=dict)  # evaluation.veto_ledger
    reviewer_names: dict[str, str] = field(default_factory=dict)


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
    settings: Settings,
    *,
    report_dir: Path,
    markets: Sequence[str],
    model_dir: Path,
    keep_llm: bool = False,
) -> Settings:
    """Point everything at the report directory and turn every outside service off.

    `keep_llm` keeps the configured Groq and Ollama (`--reviewers llm` or `cache-only`).
    """
    update: dict[str, Any] = {
        "data_dir": report_dir,
        "database_url": f"sqlite:///{(report_dir / 'journal.db').resolve()}",
        "checkpoint_url": "memory",
        "markets": list(markets),
        "model_dir": model_dir,
        "sizing_provider": "rule-based",
        "slack_webhook_url": None,
        "telegram_bot_token": None,
    }
    if not keep_llm:
        update.update(groq_api_key=None, ollama_host=None)
    return settings.model_copy(update=update)


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


# The trading path --------------------------------------------------------------------------
async def simulate(
    settings: Settings,
    closes: Sequence[BarClose],
    *,
    report_dir: Path,
    minutes: int | None,
    on_progress: ProgressCallback | None = None,
    reviewers_mode: str = "off",
    llm_cache: Path | None = None,
    reviewers: Reviewers | None = None,
    meter: CallMeter | None = None,
    blind: Blind | None = None,
    news: NewsReader | None = None,
) -> Simulation:
    """Warm the real engine up, trade every later bar, track equity.

    `reviewers_mode`: "off" (both checks agree with every proposal), "llm" (the configured
    Groq and Ollama clients, every answer stored in the response cache at `llm_cache` and
    replayed from it on a rerun), "cache-only" (answers from the cache only; a miss stops the
    backtest with `CacheMiss`). Sizing is the rule-based sizer in every mode. `reviewers`
    (with the `meter` they count on) replaces the mode (the ablation's variants).
    """
    to_run = list(closes[WARMUP_BARS:])
    if minutes is not None:
        to_run = to_run[:minutes]
    if not to_run:
        raise BacktestError(
            f"the candles hold {len(closes)} bar(s): a backtest needs more than the "
            f"{WARMUP_BARS} warm-up bars"
        )
    _clear_report(report_dir)
    session_id = new_session_id("backtest")
    started = time.perf_counter()
    meter = meter or build_meter(settings)
    reviewers, cache_journal = _reviewers_for(
        settings, reviewers_mode, llm_cache, reviewers, meter, blind
    )
    try:
        return await _trade(
            settings,
            closes,
            to_run,
            report_dir,
            session_id,
            started,
            reviewers,
            meter,
            on_progress,
            news,
        )
    finally:
        if cache_journal is not None:
            cache_journal.close()
        del reviewers
        await collect_clients()


def backtest_news(url: str, closes: Sequence[BarClose], settings: Settings) -> JournalNews:
    """The news a journal stored over the backtest's bars, loaded once (items with a usable
    time only; each bar reads what was first seen by its close)."""
    if not closes:
        raise BacktestError("no bars to backtest")
    last = closes[-1].ts + timedelta(minutes=1)
    first = closes[0].ts - timedelta(hours=settings.news_notice_block_hours)
    try:
        with Journal.open(url) as journal:
            return load_journal_news(
                journal,
                since=first,
                until=last,
                half_life=timedelta(minutes=settings.news_half_life_minutes),
            )
    except Exception as exc:
        raise BacktestError(f"--news-journal {url}: the news cannot be read: {exc}") from exc


async def collect_clients() -> None:
    """Collect what the run left in reference cycles while the loop runs: the graph holds the
    LLM clients, whose HTTP clients close on the running loop when collected (collected after
    `asyncio.run` has closed it, each prints an 'Event loop is closed' traceback)."""
    gc.collect()
    for _ in range(3):
        await asyncio.sleep(0)


def _clear_report(report_dir: Path) -> None:
    for stale in ("journal.db", "journal.db-wal", "journal.db-shm", "paper_account.json"):
        (report_dir / stale).unlink(missing_ok=True)


def _reviewers_for(
    settings: Settings,
    mode: str,
    llm_cache: Path | None,
    reviewers: Reviewers | None,
    meter: CallMeter,
    blind: Blind | None,
) -> tuple[Reviewers, Journal | None]:
    """The given reviewers, the agree stand-ins (`off`), or the configured LLM checks."""
    if reviewers is not None:
        return reviewers, None
    if mode == "off":
        agree = AgreeReviewer()
        return Reviewers(groq=agree, ollama=agree, sizer=RuleBasedSizer()), None
    return llm_reviewers(settings, mode, llm_cache, meter, blind)


async def simulate_fast(
    settings: Settings,
    candles: pd.DataFrame,
    model_path: Path,
    *,
    report_dir: Path,
    minutes: int | None,
    on_progress: ProgressCallback | None = None,
    reviewers_mode: str = "off",
    llm_cache: Path | None = None,
    reviewers: Reviewers | None = None,
    meter: CallMeter | None = None,
    blind: Blind | None = None,
    inputs: FastInputs | None = None,
) -> Simulation:
    """The fast graph-in-the-loop path (`app.graph_loop`): the simulator walks the bars and
    the graph reviews each proposed order. Same arguments as `simulate`, with the candles and
    the model set instead of the engine's closes; the journal is `settings.database_url`.
    `inputs` (`app.graph_loop.fast_inputs`) are made here unless given (the ablation shares
    them between its replays)."""
    started = time.perf_counter()
    _clear_report(report_dir)
    session_id = new_session_id("backtest")
    meter = meter or build_meter(settings)
    reviewers, cache_journal = _reviewers_for(
        settings, reviewers_mode, llm_cache, reviewers, meter, blind
    )
    predictor = Predictor.load(model_path)
    inputs = inputs or fast_inputs(settings, candles, predictor, minutes)

    def progress(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, total, meter.totals())

    journal = Journal.open(str(settings.database_url))
    try:
        fast = await run_fast(
            settings, inputs, predictor, reviewers, journal, session_id, on_progress=progress
        )
        progress(len(fast.run.data), len(fast.run.data))
        parts = fast_simulation_parts(fast, settings, predictor, meter, reviewers)
        parts["summary"]["elapsed_s"] = time.perf_counter() - started
        return Simulation(**parts)
    finally:
        journal.close()
        if cache_journal is not None:
            cache_journal.close()
        del reviewers
        await collect_clients()


def llm_reviewers(
    settings: Settings,
    mode: str,
    llm_cache: Path | None,
    meter: CallMeter,
    blind: Blind | None = None,
) -> tuple[Reviewers, Journal]:
    """The configured LLM checks over a response cache kept beside the data (not per report)."""
    if mode not in REVIEWER_MODES:
        raise BacktestError(f"--reviewers must be one of {', '.join(REVIEWER_MODES)}, not {mode!r}")
    if settings.groq_api_key is None and settings.ollama_host is None:
        raise BacktestError(
            f"--reviewers {mode} needs LXA_GROQ_API_KEY or LXA_OLLAMA_HOST: with neither, only "
            "the rule-based stand-ins would be measured"
        )
    path = llm_cache or settings.data_dir / "llm_cache.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    cache_journal = Journal.open(f"sqlite:///{path.resolve()}")
    built = build_reviewers(
        settings,
        JournalResponseCache(cache_journal),
        meter,
        offline=mode == "cache-only",
        blind=blind,
    )
    return Reviewers(groq=built.groq, ollama=built.ollama, sizer=RuleBasedSizer()), cache_journal


async def _trade(
    settings: Settings,
    closes: Sequence[BarClose],
    to_run: list[BarClose],
    report_dir: Path,
    session_id: str,
    started: float,
    reviewers: Reviewers,
    meter: CallMeter,
    on_progress: ProgressCallback | None,
    news: NewsReader | None = None,
) -> Simulation:
    async with open_services(
        settings,
        session_id=session_id,
        account_path=report_dir / "paper_account.json",
        checkpointer_url="none",  # nothing resumes or forks a backtest's runs
        reviewers=reviewers,
        meter=meter,
    ) as services:
        engine = services.engine
        if news is not None:  # the stored news, as known at each bar (point in time)
            engine.attach_news(news, timedelta(hours=settings.news_notice_block_hours))
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
                    on_progress(index, len(to_run), meter.totals())
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
        trades = trade_list(journal.list_fills(), journal.list_orders(), _proposal_of(journal))
        holds = journal.hold_reasons(engine.session_id)
        model_status = dict(engine.model_status)
        params = engine.context.policy.rules.to_json()
        ledger = veto_ledger(
            journal.list_decisions(limit=len(to_run) + 10, session_id=session_id),
            horizon_minutes=int(params.get("horizon_minutes", 10)),
            fee_rate=float(FEE_RATE),
        )
        ledger["costs"] = call_costs(journal.list_llm_calls(session_id=session_id))
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
        llm=meter.to_json(),
        veto_ledger=ledger,
        reviewer_names={"groq": reviewers.groq.name, "ollama": reviewers.ollama.name},
    )


def _proposal_of(journal: Journal) -> Callable[[str], dict[str, Any] | None]:
    def proposal_of(run_id: str) -> dict[str, Any] | None:
        decision = journal.get_decision(run_id)
        if decision is None:
            return None
        return ((decision.get("nodes") or {}).get("ml_signal") or {}).get("proposal") or {}

    return proposal_of


# Putting it together -----------------------------------------------------------------------


def _closes_matrix(scored: pd.DataFrame, column: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    wide = scored.pivot(index="ts", columns="market", values=column).sort_index()
    if column == "close":
        wide = wide.ffill()
    return wide.reindex(wide.index.union(index)).ffill().reindex(index)


@dataclass(frozen=True)
class PreparedBacktest:
    """Unseen candles and the settings that point a backtest at its report directory."""

    candles: pd.DataFrame
    markets: list[str]
    model_path: Path
    meta: dict[str, Any]
    settings: Settings
    llm_cache: Path  # the answers' cache, beside the data: it outlives the report


def prepare_backtest(
    settings: Settings,
    *,
    candles_paths: Sequence[Path],
    report_dir: Path,
    model_dir: Path | None,
    since: datetime | None,
    until: datetime | None,
    keep_llm: bool,
) -> PreparedBacktest:
    """Load and cut the candles, refuse ones the model trained on, make the report folder."""
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
    llm_cache = settings.data_dir / "llm_cache.db"
    settings = backtest_settings(
        settings, report_dir=report_dir, markets=markets, model_dir=model_path, keep_llm=keep_llm
    )
    return PreparedBacktest(candles, markets, model_path, meta, settings, llm_cache)


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
    reviewers_mode: str = "off",
    llm_cache: Path | None = None,
    blind: bool = False,
    engine_path: bool | None = None,
    news_journal: str | None = None,
) -> dict[str, Any]:
    """Run the backtest, write metrics.json, equity.png and report.html; return the metrics.

    `news_journal`: a journal URL whose stored news the engine reads as known at each bar
    (`app.engine.news.JournalNews`: headlines in the prompts, notices and the index at the
    watchdog, the news features); it runs the engine path (the fast path reads no news yet).

    `blind` hides from the LLM prompts what identifies the period (`prompts.loader.Blind`).
    With the LLM checks on (`llm`, `cache-only`) the fast path runs (`simulate_fast`: the
    simulator, the graph at each proposed order) unless `engine_path` asks for the engine's
    replay (one graph run per bar, the reference); with them off, the engine's replay runs
    unless `engine_path` is False.
    """
    if reviewers_mode not in REVIEWER_MODES:
        raise BacktestError(
            f"--reviewers must be one of {', '.join(REVIEWER_MODES)}, not {reviewers_mode!r}"
        )
    prepared = prepare_backtest(
        settings,
        candles_paths=candles_paths,
        report_dir=report_dir,
        model_dir=model_dir,
        since=since,
        until=until,
        keep_llm=reviewers_mode != "off",
    )
    candles, markets, model_path = prepared.candles, prepared.markets, prepared.model_path
    meta, settings = prepared.meta, prepared.settings
    llm_cache = llm_cache or prepared.llm_cache
    fast = reviewers_mode != "off" if engine_path is None else not engine_path
    news: JournalNews | None = None
    if news_journal is not None and fast:
        if engine_path is False:
            raise BacktestError("--news-journal needs the engine path: the fast path reads no news")
        fast = False
    if fast:
        simulation = await simulate_fast(
            settings,
            candles,
            model_path,
            report_dir=report_dir,
            minutes=minutes,
            on_progress=on_progress,
            reviewers_mode=reviewers_mode,
            llm_cache=llm_cache,
            blind=Blind(tuple(markets)) if blind else None,
        )
    else:
        closes = await collect_closes(candles)
        if news_journal is not None:
            traded = closes if minutes is None else closes[: WARMUP_BARS + minutes]
            news = backtest_news(news_journal, traded, settings)
        simulation = await simulate(
            settings,
            closes,
            report_dir=report_dir,
            minutes=minutes,
            on_progress=on_progress,
            reviewers_mode=reviewers_mode,
            llm_cache=llm_cache,
            blind=Blind(tuple(markets)) if blind else None,
            news=news,
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
        "reviewers": (
            LLM_OFF
            if reviewers_mode == "off"
            else " then ".join(simulation.reviewer_names[k] for k in ("groq", "ollama"))
        ),
        "reviewers_mode": reviewers_mode,
        "path": _path_figures(fast, simulation),
        "blind": blind,
        "llm": simulation.llm,
        "veto_ledger": {k: v for k, v in simulation.veto_ledger.items() if k != "rows"},
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
    if news is not None:
        metrics["news"] = {"journal": news_journal, "items": len(news.rows)}
        metrics["notes"].append(
            f"news: {len(news.rows)} item(s) stored with a usable time over the bars, each read "
            "only from the bar its first sighting preceded"
        )
    metrics = json_ready(metrics)
    (report_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n"
    )
    (report_dir / "veto_ledger.json").write_text(
        json.dumps(json_ready(simulation.veto_ledger), indent=1, allow_nan=False) + "\n"
    )
    png = plot_equity(
        simulation.equity,
        simulation.initial_krw,
        simulation.fills,
        hold_curve,
        vol_curve,
        report_dir / "equity.png",
    )
    (report_dir / "report.html").write_text(render_html(metrics, png))
    return metrics


def _fast_path(
    settings: Settings, candles: pd.DataFrame, model_path: Path, simulation: Simulation
) -> dict[str, Any]:
    """The fast simulator over the same candles: its result and random entries at the same rate.

    The simulator replays the engine's loop (policy.simulate); where it and the engine differ,
    the engine is the reference and the difference is shown here, never hidden.
    """
    from app.simulation import prepare, simulation_settings
    from evaluation.policy_result import random_entries, strategy_metrics
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


def _path_figures(fast: bool, simulation: Simulation) -> dict[str, Any]:
    """Which path traded, and its graph runs (the fast path runs one per proposed order)."""
    bars = len(simulation.equity)
    summary = simulation.summary
    runs = summary.get("graph_runs", bars) if fast else bars
    return {
        "name": "fast" if fast else "engine",
        "description": PATH_NAME if fast else ENGINE_PATH_NAME,
        "graph_runs": runs,
        "orders_agreed": summary.get("went_ahead") if fast else None,
        "cycles_per_s": bars / summary["elapsed_s"] if summary.get("elapsed_s") else None,
    }


def _notes(metrics: dict[str, Any], simulation: Simulation) -> list[str]:
    if metrics["reviewers_mode"] == "off":
        reviewing = (
            "LLM checks off: both reviewers are replaced by an agree-with-the-proposal stand-in "
            f"({LLM_OFF})"
        )
    else:
        llm = metrics["llm"]
        reviewing = (
            f"LLM checks {metrics['reviewers_mode']}: {metrics['reviewers']}; "
            f"{llm['calls']} call(s) out, "
            f"{llm['cache_hits']} answer(s) from the cache, ${llm['cost_usd']:.4f}"
        )
    notes = [
        f"{reviewing}; sizing is the rule-based sizer; fees, minimums, slippage, "
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
    if metrics["path"]["name"] == "engine" and metrics["reviewers_mode"] != "off":
        notes.append("engine path (--engine-path): the engine replayed every bar, a graph run each")
    if metrics["path"]["name"] == "fast":
        notes.append(
            "fast path: the simulator traded the bars and the graph ran at each of the "
            f"{metrics['path']['graph_runs']} proposed orders (--engine-path replays every bar "
            "through the engine instead); its prompts show the simulator's float account, so "
            "its cached answers are its own."
        )
    fast = metrics.get("fast_path") or {}
    if fast and metrics["path"]["name"] == "engine" and fast.get("entries") != metrics["buys"]:
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


__all__ = [
    "LLM_OFF",
    "AgreeReviewer",
    "BacktestError",
    "run_backtest",
    "simulate",
    "simulate_fast",
]
