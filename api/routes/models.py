"""The learning loop in the viewer: model versions and promotion decisions, and the reviewers'
right/wrong record over time.

The registry is read through the `ModelSource` that `app` hands in (`app.models.list_models`
over `ml.champion.ModelRegistry`, read only). The record counts each reviewer's verdicts per
KST day by the veto ledger's rule (`store.reviewer_ledger.verdict_right`): from the outcome
job's rows where it has written them (`store/journal/outcomes.py`), else from the journaled
closes at the label horizon, and as pending while that window has not closed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import JournalDep, ServicesDep, error, require_read_access
from api.routes.runs import Time, as_utc
from api.schemas import ModelsOut, ReviewerDayOut, ReviewerRecordOut, RightWrongOut
from exchange.rules import FEE_RATE
from store.reviewer_ledger import horizon_of, ledger_rows, verdict_right

router = APIRouter(prefix="/api", tags=["models"], dependencies=[Depends(require_read_access)])

REVIEWERS = ("groq", "ollama")
MAX_DECISIONS = 200_000
MAX_DAYS = 366
DECISION_EVENTS = ("model_promoted", "model_rollback")
NO_REGISTRY = "this server was handed no model registry (start it with `lxa serve` or `lxa demo`)"
KST = timedelta(hours=9)


def _utc(value: Any) -> datetime:
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def kst_day(value: Any) -> date:
    """The KST calendar day of a UTC time."""
    return (_utc(value) + KST).date()


def promotion_decisions(
    versions: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every judged version's verdict with its figures, and the journal's hand switches,
    newest first."""
    found: list[dict[str, Any]] = []
    for version in versions:
        judged = version.get("judged")
        if not isinstance(judged, dict):
            continue
        found.append(
            {
                "kind": "judged",
                "model_id": version.get("model_id"),
                "at": version.get("created_at"),
                "promote": judged.get("promote"),
                "reason": judged.get("reason") or version.get("reason"),
                "status": version.get("status"),
                "challenger": judged.get("challenger"),
                "champion": judged.get("champion"),
            }
        )
    for event in events:
        payload = event.get("payload") or {}
        found.append(
            {
                "kind": event["type"],
                "model_id": payload.get("model_id"),
                "at": _utc(event["ts"]).isoformat(),
                "promote": event["type"] == "model_promoted",
                "reason": payload.get("reason"),
                "status": None,
                "challenger": None,
                "champion": None,
                "by": payload.get("by"),
                "previous": ((payload.get("history") or [{}])[0] or {}).get("model_id"),
            }
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda d: _utc(d["at"]) if d["at"] else oldest, reverse=True)


@router.get(
    "/models",
    response_model=ModelsOut,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: error("the registry could not be read")},
)
def read_models(services: ServicesDep, journal: JournalDep) -> ModelsOut:
    """Model versions newest first, the champion, each one's training window, sample weights
    and evaluation, and the promotion decisions with their figures.

    `available` is false (and the lists empty) when this server was handed no registry.
    """
    events = journal.events_of_type(DECISION_EVENTS, limit=200)
    if services.models is None:
        return ModelsOut(
            available=False,
            note=NO_REGISTRY,
            models_dir=None,
            champion=None,
            champion_pointer=None,
            pinned=None,
            versions=[],
            history=[],
            decisions=promotion_decisions([], events),
            retrain={},
        )
    try:
        found = services.models.models()
    except (OSError, ValueError, KeyError) as exc:  # a damaged meta.json or registry file
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the model registry could not be read: {type(exc).__name__}: {exc}",
        ) from exc
    versions = list(found.get("versions") or [])
    return ModelsOut(
        available=True,
        models_dir=found.get("models_dir"),
        champion=found.get("champion"),
        champion_pointer=found.get("champion_pointer"),
        pinned=found.get("pinned"),
        versions=versions,
        history=list(found.get("history") or []),
        decisions=promotion_decisions(versions, events),
        retrain=dict(found.get("retrain") or {}),
    )


def _figures(right: int, wrong: int, pending: int) -> RightWrongOut:
    judged = right + wrong
    return RightWrongOut(
        right=right,
        wrong=wrong,
        pending=pending,
        accuracy=None if judged == 0 else right / judged,
    )


@router.get(
    "/reviewers/record",
    response_model=ReviewerRecordOut,
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: error(
            "days or until is malformed", unprocessable=True
        )
    },
)
def reviewer_record(
    journal: JournalDep,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="KST days back from `until`'s day.")
    ] = 30,
    until: Annotated[
        Time | None,
        Query(description="The record's end (default: the journal's newest bar, else now)."),
    ] = None,
) -> ReviewerRecordOut:
    """Each reviewer's right and wrong verdicts per KST day, by the veto ledger's rule: right
    when it agreed with a proposal that then paid after fees, or vetoed one that would have
    lost. Verdicts the outcome job judged count as it wrote them; the rest are judged from the
    journaled closes at the label horizon, or counted as pending until it has passed.
    """
    end = as_utc(until, "until")
    if end is None:
        newest = journal.list_decisions(limit=1)
        end = _utc(newest[0]["bar_ts"]) + timedelta(minutes=1) if newest else datetime.now(UTC)
    first_day = kst_day(end) - timedelta(days=days - 1)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC) - KST
    decisions = journal.list_decisions(limit=MAX_DECISIONS, since=start, until=end)
    horizon = horizon_of(decisions)
    # The closes a horizon after the window's last bars are in the runs after it.
    later = journal.list_decisions(
        limit=MAX_DECISIONS, since=end, until=end + timedelta(minutes=horizon + 1)
    )
    rows = ledger_rows([*decisions, *later], horizon_minutes=horizon, fee_rate=float(FEE_RATE))
    known: dict[tuple[str, str], bool | None] = {
        (row["run_id"], row["subject"]): row["correct"]
        for subject in REVIEWERS
        for row in journal.list_outcomes(subject=subject, since=start, until=end)
    }
    counts: dict[date, dict[str, list[int]]] = {}
    from_outcomes = from_ledger = 0
    for row in rows:
        at = _utc(row.bar_ts)
        if not start <= at < end:
            continue
        day = counts.setdefault(kst_day(at), {name: [0, 0, 0] for name in REVIEWERS})
        for name in REVIEWERS:
            verdict = getattr(row, name)
            if verdict is None:
                continue
            if (row.run_id, name) in known and known[(row.run_id, name)] is not None:
                right = bool(known[(row.run_id, name)])
                from_outcomes += 1
            elif row.net_return is not None:
                right = verdict_right(verdict, row.action, row.net_return)
                from_ledger += 1
            else:
                day[name][2] += 1
                continue
            day[name][0 if right else 1] += 1
    series = [
        ReviewerDayOut(
            day=day, reviewers={name: _figures(*figures) for name, figures in by_name.items()}
        )
        for day, by_name in sorted(counts.items())
    ]
    totals = {
        name: _figures(*(sum(c[name][i] for c in counts.values()) for i in range(3)))
        for name in REVIEWERS
    }
    return ReviewerRecordOut(
        days=days,
        since=start,
        until=end,
        horizon_minutes=horizon,
        totals=totals,
        series=series,
        from_outcomes=from_outcomes,
        from_ledger=from_ledger,
    )
