"""The veto ledger of the runs in the journal: what each reviewer's verdicts were worth."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import JournalDep, require_read_access
from api.routes.runs import Time, as_utc
from exchange.rules import FEE_RATE
from store.reviewer_ledger import horizon_of, veto_ledger

router = APIRouter(prefix="/api", tags=["reviewers"], dependencies=[Depends(require_read_access)])

MAX_DECISIONS = 200_000  # about 140 days of minutes


@router.get("/reviewers")
def read_reviewer_ledger(
    journal: JournalDep,
    since: Annotated[
        Time | None, Query(description="Runs from this bar time on (no zone means UTC).")
    ] = None,
    session: Annotated[
        str | None, Query(min_length=1, max_length=200, description="One session only.")
    ] = None,
    rows: Annotated[bool, Query(description="Include every proposal's row.")] = False,
) -> dict[str, Any]:
    """Per reviewer: asked, vetoed, and the net return of what it vetoed against what it passed.

    Forward returns over the label horizon come from the closes the runs journaled, net of
    the round-trip fee; a proposal whose horizon has not passed yet has no outcome.
    """
    decisions = journal.list_decisions(
        limit=MAX_DECISIONS, since=as_utc(since, "since"), session_id=session
    )
    ledger = veto_ledger(decisions, horizon_minutes=horizon_of(decisions), fee_rate=float(FEE_RATE))
    if not rows:
        ledger.pop("rows")
    return ledger
