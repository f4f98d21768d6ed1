"""The outcome job: once a decision's horizon has closed, write what it was worth next to it.

For every recorded decision whose ML proposal was a buy or a sell, once its window has closed
(`evaluation.outcomes.window_end`: the bar `horizon` minutes on has closed), one row for the
proposal ("ml": the forward return over the horizon at that bar, the net return of following
it by the veto ledger's rule, `store.reviewer_ledger.proposal_net_return`; correct when it
paid), and one per reviewer asked ("groq", "ollama": correct by
`store.reviewer_ledger.verdict_right`). For every round trip that has closed, one "trade"
row per run that opened or closed it, with the realised P&L from its fills
(`store.journal.trades.round_trips_from_fills`).

Closes come from candles when given, else from the closes the runs journaled. Nothing later
than a decision's horizon bar is read (`evaluation.outcomes.forward_return`), and a trip
counts only once its last fill is at or before `now`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from app.settings import Settings
from evaluation.outcomes import CloseBook, forward_return, window_end
from exchange.rules import FEE_RATE
from ml.registry import read_meta
from ml.training.weights import JudgedVerdict, TrainingWeights, WeightRule
from store.journal import Journal
from store.journal.trades import round_trips_from_fills
from store.reviewer_ledger import (
    REVIEWERS,
    decision_closes,
    horizon_of,
    proposal_net_return,
    reviewer_verdict,
    verdict_right,
)
from store.rows import OutcomeRow

DEFAULT_LOOKBACK = timedelta(days=3)
OUTCOMES_EVERY_S = 300.0  # the service writes the outcomes that became known this often

log = logging.getLogger(__name__)


def _proposal(decision: Mapping[str, Any]) -> tuple[str | None, str | None]:
    proposal = ((decision.get("nodes") or {}).get("ml_signal") or {}).get("proposal") or {}
    return proposal.get("action"), proposal.get("market")


def decision_outcomes(
    decisions: Iterable[Mapping[str, Any]],
    book: CloseBook,
    *,
    horizon_minutes: int,
    fee_rate: float,
    now: datetime,
) -> list[OutcomeRow]:
    """The "ml" and reviewer rows of every decision whose window closed by `now`."""
    rows: list[OutcomeRow] = []
    for decision in decisions:
        action, market = _proposal(decision)
        if action not in ("buy", "sell") or market is None:
            continue
        bar_ts: datetime = decision["bar_ts"]
        forward = forward_return(book, market, bar_ts, horizon_minutes, now=now)
        if forward is None:
            continue
        net = proposal_net_return(action, forward, fee_rate)
        common: OutcomeRow = {
            "run_id": str(decision["run_id"]),
            "subject": "ml",
            "bar_ts": bar_ts,
            "window_end": window_end(bar_ts, horizon_minutes),
            "market": market,
            "action": action,
            "horizon_minutes": horizon_minutes,
            "forward_return": forward,
            "net_return": net,
            "details": {"decided": decision.get("action"), "fee_rate": fee_rate},
        }
        rows.append({**common, "correct": net > 0})
        for name in REVIEWERS:
            verdict = reviewer_verdict(decision.get("verdicts"), name)
            if verdict is not None:
                rows.append(
                    {
                        **common,
                        "subject": name,
                        "verdict": verdict,
                        "correct": verdict_right(verdict, action, net),
                    }
                )
    return rows


def trade_outcomes(
    trips: Iterable[Mapping[str, Any]],
    bar_of_run: Mapping[str, datetime],
    *,
    now: datetime,
) -> list[OutcomeRow]:
    """A "trade" row for each run that opened or closed a round trip closed by `now`."""
    rows: list[OutcomeRow] = []
    for trip in trips:
        exit_ts = trip.get("exit_ts")
        if trip.get("status") != "closed" or exit_ts is None or exit_ts > now:
            continue
        pnl = Decimal(trip["realised_pnl"])
        for role in ("entry", "exit"):
            run_id = trip.get(f"{role}_run_id")
            if not run_id or run_id not in bar_of_run:
                continue
            rows.append(
                {
                    "run_id": str(run_id),
                    "subject": "trade",
                    "bar_ts": bar_of_run[run_id],
                    "window_end": exit_ts,
                    "market": trip["market"],
                    "action": "buy" if role == "entry" else "sell",
                    "net_return": trip.get("return"),
                    "realised_pnl": pnl,
                    "correct": pnl > 0,
                    "details": {
                        "role": role,
                        "entry_ts": trip.get("entry_ts"),
                        "exit_ts": exit_ts,
                        "entry_price": trip.get("entry_price"),
                        "exit_price": trip.get("exit_price"),
                        "fees": trip.get("fees"),
                        "exit_kind": trip.get("exit_kind"),
                        "fill_ids": list(trip.get("fill_ids") or ()),
                    },
                }
            )
    return rows


def record_outcomes(
    journal: Journal,
    *,
    now: datetime,
    since: datetime | None = None,
    candles: pd.DataFrame | None = None,
    horizon_minutes: int | None = None,
    fee_rate: float = float(FEE_RATE),
) -> dict[str, Any]:
    """Write the outcomes that became known by `now` (decisions from `since`, default the last
    three days); return what was written. Safe to run again: a known outcome is kept."""
    since = since if since is not None else now - DEFAULT_LOOKBACK
    waiting = journal.decisions_without_outcomes(since=since, until=now)
    horizon = horizon_minutes or horizon_of(waiting)
    if candles is not None:
        book = CloseBook.from_candles(candles)
    else:
        seen = journal.list_decisions(limit=10**7, since=since, until=now)
        book = CloseBook.from_series(decision_closes(seen))
    rows = decision_outcomes(waiting, book, horizon_minutes=horizon, fee_rate=fee_rate, now=now)
    trips = round_trips_from_fills(journal.fills_with_orders())
    judged = {row["run_id"] for row in journal.list_outcomes(subject="trade")}
    runs = {
        str(run_id)
        for trip in trips
        if trip.get("status") == "closed"
        for run_id in (trip.get("entry_run_id"), trip.get("exit_run_id"))
        if run_id and str(run_id) not in judged
    }
    bar_of_run = {}
    for run_id in sorted(runs):
        decision = journal.get_decision(run_id)
        if decision is not None:
            bar_of_run[run_id] = decision["bar_ts"]
    rows += trade_outcomes(trips, bar_of_run, now=now)
    written = journal.record_outcomes(rows)
    return {
        "now": now.isoformat(),
        "horizon_minutes": horizon,
        "decisions_waiting": len(waiting),
        "outcomes_computed": len(rows),
        "outcomes_written": written,
    }


def judged_verdicts(
    outcomes: Sequence[Mapping[str, Any]], *, subjects: Sequence[str] = REVIEWERS
) -> tuple[JudgedVerdict, ...]:
    """The reviewers' outcome rows as the training weights read them."""
    return tuple(
        JudgedVerdict(bar_ts=row["bar_ts"], closes_at=row["window_end"], right=bool(row["correct"]))
        for row in outcomes
        if row["subject"] in subjects and row.get("correct") is not None
    )


def weight_rule_from(settings: Settings) -> WeightRule:
    """The weighting rule and its parameters from the LXA_RETRAIN_* settings."""
    return WeightRule(
        rule=settings.retrain_weight_rule,
        right_weight=settings.retrain_right_weight,
        wrong_weight=settings.retrain_wrong_weight,
        period_minutes=settings.retrain_period_minutes,
        min_verdicts=settings.retrain_min_verdicts,
        recency_half_life_days=settings.retrain_recency_half_life_days,
    )


def reviewer_weights(
    journal: Journal,
    settings: Settings,
    *,
    known_at: datetime,
    frozen_before: datetime | None = None,
) -> TrainingWeights:
    """What a retrain weights its rows with: the reviewers' outcomes known by `known_at`.

    `frozen_before`: the training cutoff of the set being replaced; rows before it keep the
    weights known at that cutoff (`ml.training.weights`). The trainer further limits
    `known_at` to its own cutoff.
    """
    rows = journal.list_outcomes(known_by=known_at)
    return TrainingWeights(
        verdicts=judged_verdicts(rows),
        rule=weight_rule_from(settings),
        known_at=known_at,
        frozen_before=frozen_before,
    )


def training_cutoff(model_dir: Path | None) -> datetime | None:
    """The cutoff a model set was trained up to (meta.json's `until`), or None if unknown."""
    if model_dir is None or not (model_dir / "meta.json").is_file():
        return None
    until = read_meta(model_dir).get("until")
    return pd.Timestamp(until).tz_convert("UTC").to_pydatetime() if until else None


def weights_for_retrain(
    settings: Settings, *, known_at: datetime, replacing: Path | None = None
) -> TrainingWeights:
    """The weights a retrain at `known_at` uses: the journal's outcomes, first brought up to
    date (`record_outcomes`), and the set being replaced's cutoff as `frozen_before`."""
    with Journal.open(settings.journal_url) as journal:
        record_outcomes(journal, now=known_at)
        return reviewer_weights(
            journal, settings, known_at=known_at, frozen_before=training_cutoff(replacing)
        )


@asynccontextmanager
async def periodic_outcomes(
    journal: Journal,
    *,
    every_s: float = OUTCOMES_EVERY_S,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[None]:
    """Inside the service: `record_outcomes` every `every_s` seconds while the block runs.

    Each run reads and writes the journal in a thread (never on the loop the watchdog uses);
    a run that fails (the database away) is logged and the next one tries again, so the
    learning loop's outcomes never stop the trading.
    """
    if every_s <= 0:
        raise ValueError(f"every_s must be positive, got {every_s}")

    async def loop() -> None:
        while True:
            try:
                done = await asyncio.to_thread(record_outcomes, journal, now=clock())
                if on_run is not None:
                    on_run(done)
            except Exception as exc:
                log.warning("the outcome job failed, trying again in %.0f s: %s", every_s, exc)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop(), name="lxa-outcomes")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
