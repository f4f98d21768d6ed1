"""What the journal says about trading now, for `lxa status` and the API.

The engine writes the pieces: the operator's state (`trading_control`, also written by
`lxa halt/resume` and the API), the monthly loss cap's figures (the `monthly` loss limit) and
the model set's status (`model_status` events). This module only reads them and adds them up
the way the risk guard does: a halt, then an operator's "reducing", then the daily loss limit
(known only to a running engine, so passed in), then the monthly cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from store.journal import Journal

__all__ = [
    "MODEL_STATUS_EVENT",
    "MONTHLY_CAP",
    "effective_state",
    "latest_model_status",
    "monthly_cap_view",
    "next_month_start",
    "trading_view",
]

# The loss-limit row the engine keeps the monthly cap in (app.engine.control.MONTHLY).
MONTHLY_CAP = "monthly"
MODEL_STATUS_EVENT = "model_status"


def next_month_start(month: str) -> date | None:
    """The first day of the month after `month` ("YYYY-MM", KST), or None if unreadable."""
    try:
        year, number = (int(part) for part in month.split("-"))
        return date(year + number // 12, number % 12 + 1, 1)
    except ValueError:
        return None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _resume_written_after(control: Mapping[str, Any], seen_at: Any) -> bool:
    """Whether an operator's resume came after the breach was seen (the engine then clears it)."""
    seen = _timestamp(seen_at)
    updated_at = control.get("updated_at")
    if seen is None or not isinstance(updated_at, datetime):
        return False
    if control.get("state") != "active" or control.get("updated_by") in (None, "engine"):
        return False
    return updated_at > seen


def monthly_cap_view(
    figures: Mapping[str, Any] | None, control: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The monthly cap's figures with what clears a breach; None before the engine wrote any."""
    if not figures or not figures.get("month"):
        return None
    month = str(figures["month"])
    breached = bool(figures.get("breached"))
    clears_on = next_month_start(month)
    pending = breached and _resume_written_after(control, figures.get("seen_at"))
    how_to_clear = None
    if pending:
        how_to_clear = (
            "a resume was written after the breach: the engine clears the cap at its next bar "
            "and counts the month again from the equity then"
        )
    elif breached:
        when = f"on {clears_on.isoformat()} (KST)" if clears_on else "next month"
        how_to_clear = (
            f"entries resume {when}, or at once with `lxa resume` (or POST /api/resume); the "
            "month then counts again from the equity at that moment"
        )
    return {
        "month": month,
        "start_equity": figures.get("start_equity"),
        "last_equity": figures.get("last_equity"),
        "loss_pct": figures.get("loss_pct"),
        "cap_pct": figures.get("cap_pct"),
        "breached": breached,
        "reason": figures.get("reason") if breached else None,
        "breached_at": _timestamp(figures.get("breached_at")) if breached else None,
        "resumed_at": _timestamp(figures.get("resumed_at")),
        "resumed_by": figures.get("resumed_by"),
        "resume_pending": pending,
        "clears_on": clears_on,
        "how_to_clear": how_to_clear,
        "updated_at": figures.get("updated_at"),
    }


def latest_model_status(journal: Journal) -> dict[str, Any] | None:
    """The newest `model_status` the engine journaled, with `recorded_at`; None before any."""
    event = journal.latest_event(MODEL_STATUS_EVENT)
    if event is None:
        return None
    return {**(event["payload"] or {}), "recorded_at": event["ts"]}


def _daily_reason(daily: Mapping[str, Any]) -> str:
    loss, limit = daily.get("loss_pct"), daily.get("limit_pct")
    figures = f": -{loss:.2f}% today (limit {limit}%)" if isinstance(loss, int | float) else ""
    return f"daily loss limit{figures}; entries resume the next trading day (KST)"


def effective_state(
    control: Mapping[str, Any],
    monthly: Mapping[str, Any] | None,
    model_status: Mapping[str, Any] | None,
    daily: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the engine applies: effective_state, effective_reason and entries_allowed.

    Mirrors the risk guard: halted (operator), else reducing (operator, the daily limit or the
    monthly cap), else active. An unproven model trading live without the override refuses
    entries whatever the state.
    """
    state, reason = str(control.get("state") or "active"), str(control.get("reason") or "")
    if state not in ("halted", "reducing"):
        if daily is not None and daily.get("breached"):
            state, reason = "reducing", _daily_reason(daily)
        elif monthly is not None and monthly.get("breached"):
            state, reason = "reducing", str(monthly.get("reason") or "monthly loss cap breached")
        else:
            state, reason = "active", ""
    allowed = state == "active"
    if allowed and model_status is not None and model_status.get("block_entries"):
        allowed = False
        reason = (
            f"unproven model: {model_status.get('verdict')}; live entries need "
            "--allow-unproven-model"
        )
    return {"effective_state": state, "effective_reason": reason, "entries_allowed": allowed}


def trading_view(journal: Journal, *, daily: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The operator's state, the effective state, the monthly cap and the model status.

    `daily`: the running engine's daily-limit figures (trading_day, start_equity, last_equity,
    loss_pct, limit_pct, breached), or None where no engine runs in this process.
    """
    control = journal.read_trading_control()
    monthly = monthly_cap_view(journal.read_loss_limit(MONTHLY_CAP), control)
    model_status = latest_model_status(journal)
    return {
        **control,
        **effective_state(control, monthly, model_status, daily),
        "monthly": monthly,
        "daily": None if daily is None else dict(daily),
        "model_status": model_status,
    }
