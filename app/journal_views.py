"""The journal's views the CLI reads and writes without building an engine.

`lxa halt|resume|status` and `lxa report reviewers` need only the journal: importing them from
here keeps those commands free of the engine, the models and the graph (a second or two of
imports each time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.settings import Settings
from exchange.rules import FEE_RATE
from store.journal import Journal
from store.reviewer_ledger import call_costs, horizon_of, veto_ledger
from store.rows import TradingControlRow
from store.trading_view import trading_view


def write_trading_control(
    settings: Settings, state: str, reason: str, *, flatten: bool, by: str
) -> TradingControlRow:
    """Set the journal's trading state (the running engine picks it up); return the new row."""
    with Journal.open(settings.journal_url) as journal:
        return journal.write_trading_control(state, reason, flatten=flatten, by=by)


def read_reviewer_ledger(
    settings: Settings, *, since: datetime | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """The veto ledger of the journal's runs (`lxa report reviewers`, `GET /api/reviewers`)."""
    with Journal.open(settings.journal_url) as journal:
        decisions = journal.list_decisions(limit=10**7, since=since, session_id=session_id)
        calls = journal.list_llm_calls(since=since, session_id=session_id)
    ledger = veto_ledger(decisions, horizon_minutes=horizon_of(decisions), fee_rate=float(FEE_RATE))
    ledger["costs"] = call_costs(calls)
    return ledger


def read_trading_view(settings: Settings) -> dict[str, Any]:
    """The trading state as set and as in effect, the monthly loss cap and the model status."""
    with Journal.open(settings.journal_url) as journal:
        return trading_view(journal)
