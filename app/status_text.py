"""The monthly loss cap and the model status in words, for `lxa status` and session summaries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

OVERRIDE = "--allow-unproven-model"


def _krw(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):,.0f} KRW"
    except (InvalidOperation, ValueError):
        return "-"


def _pct(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, int | float) else "-"


def model_consequence(status: Mapping[str, Any]) -> str:
    """What an unproven model means for this engine: entries refused, overridden, or paper."""
    if status.get("block_entries"):
        return f"live entries are refused (override with {OVERRIDE})"
    if status.get("live"):
        return f"trading live anyway: the operator overrode the refusal ({OVERRIDE})"
    return f"paper trading goes on; live entries would be refused unless overridden ({OVERRIDE})"


def model_age_days(status: Mapping[str, Any] | None, now: datetime | None = None) -> float | None:
    """How many days ago the model set was created (None when its status says no date)."""
    created = (status or {}).get("created_at")
    if not created:
        return None
    try:
        stamp = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - stamp).total_seconds() / 86400


def model_age_warning(status: Mapping[str, Any] | None, now: datetime | None = None) -> str | None:
    """One line when the model set is older than LXA_MODEL_MAX_AGE_DAYS; None otherwise."""
    limit = (status or {}).get("max_age_days")
    age = model_age_days(status, now)
    if not isinstance(limit, int | float) or age is None or age <= limit:
        return None
    return (
        f"stale model {(status or {}).get('model_id') or '?'}: created {age:.1f} days ago, "
        f"older than LXA_MODEL_MAX_AGE_DAYS={limit:g} (retrain: `lxa retrain`)"
    )


def model_warning(status: Mapping[str, Any] | None) -> str | None:
    """One line warning about an unproven or stale model set; None when neither or not known."""
    if not status:
        return None
    stale = model_age_warning(status)
    if status.get("proven"):
        return stale
    unproven = (
        f"unproven model {status.get('model_id') or '?'}: {status.get('verdict')}; "
        f"{model_consequence(status)}"
    )
    return unproven if stale is None else f"{unproven}; {stale}"


def model_lines(status: Mapping[str, Any] | None) -> list[str]:
    """The model status as `lxa status` prints it."""
    if not status:
        return ["model: no model status yet (no engine has started on this journal)"]
    verdict = "proven" if status.get("proven") else "UNPROVEN"
    lines = [f"model: {status.get('model_id') or '?'} ({verdict}): {status.get('verdict')}"]
    entries, result = status.get("evaluation_entries"), status.get("evaluation_return")
    if isinstance(result, int | float):
        held = status.get("buy_and_hold_return")
        versus = f", buy-and-hold {held * 100:+.2f}%" if isinstance(held, int | float) else ""
        lines.append(f"  hold-out result: {result * 100:+.2f}% in {entries} entries{versus}")
    if not status.get("proven"):
        lines.append(f"  {model_consequence(status)}")
    stale = model_age_warning(status)
    if stale is not None:
        lines.append(f"  {stale}")
    recorded = status.get("recorded_at")
    if recorded is not None:
        stamp = recorded.isoformat(timespec="seconds") if isinstance(recorded, datetime) else "-"
        lines.append(f"  announced: {stamp} ({'live' if status.get('live') else 'paper'})")
    return lines


def monthly_lines(monthly: Mapping[str, Any] | None) -> list[str]:
    """The monthly loss cap as `lxa status` prints it."""
    if not monthly:
        return ["monthly cap: no figures yet (no engine has run on this journal)"]
    verdict = "BREACHED: entries stopped for the month" if monthly.get("breached") else "within"
    lines = [
        f"monthly cap {monthly['month']}: loss {_pct(monthly.get('loss_pct'))} of "
        f"{_pct(monthly.get('cap_pct'))} cap ({verdict})",
        f"  equity: {_krw(monthly.get('start_equity'))} at the start, "
        f"{_krw(monthly.get('last_equity'))} last",
    ]
    if monthly.get("breached"):
        lines.append(f"  reason: {monthly.get('reason')}")
        lines.append(f"  to clear: {monthly.get('how_to_clear')}")
    if monthly.get("resumed_by"):
        lines.append(f"  last cleared by {monthly['resumed_by']} at {monthly.get('resumed_at')}")
    return lines
