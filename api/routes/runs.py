"""Decision runs: list and read from the journal; start one through the runner."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from api.deps import JournalDep, RunnerDep, require_token
from api.schemas import RunAccepted, RunDetail, RunList, RunSummary

router = APIRouter(prefix="/api/runs", tags=["runs"])

MAX_PAGE = 500


@router.get("", response_model=RunList)
def list_runs(
    journal: JournalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    market: Annotated[
        str | None, Query(max_length=32, pattern=r"^[A-Z]+-[A-Z0-9]+$", examples=["KRW-BTC"])
    ] = None,
    action: Annotated[Literal["buy", "sell", "hold"] | None, Query()] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> RunList:
    """List decisions newest first, optionally filtered by market, action and session."""
    rows = journal.list_decisions(
        limit=limit, offset=offset, market=market, action=action, session_id=session_id
    )
    total = journal.count_decisions(session_id, market=market, action=action)
    return RunList(
        runs=[RunSummary.model_validate(row) for row in rows],
        limit=limit,
        offset=offset,
        total=total,
    )


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    responses={status.HTTP_404_NOT_FOUND: {"description": "no decision with that run id"}},
)
def get_run(run_id: str, journal: JournalDep) -> RunDetail:
    """Return one decision with its node outputs, verdicts, events, orders and LLM calls."""
    decision = journal.get_decision(run_id)
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return RunDetail.model_validate(decision)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    dependencies=[Depends(require_token)],
    responses={
        status.HTTP_401_UNAUTHORIZED: {"description": "missing or wrong bearer token"},
        status.HTTP_403_FORBIDDEN: {"description": "no API token configured: changes refused"},
        status.HTTP_409_CONFLICT: {"description": "nothing can be evaluated yet"},
        status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "this server has no runner"},
    },
)
async def start_run(runner: RunnerDep, response: Response) -> RunAccepted:
    """Evaluate the latest bar now (a manual run); needs the API token."""
    try:
        run_id = await runner.evaluate_now()
    except RuntimeError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    response.headers["Location"] = f"{router.prefix}/{run_id}"
    return RunAccepted(run_id=run_id)
