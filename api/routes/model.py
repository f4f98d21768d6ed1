"""The model set the engine trades with, and whether its policy has shown an edge."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, status

from api.deps import JournalDep, error, require_read_access
from api.schemas import ModelStatusOut
from store.trading_view import latest_model_status

router = APIRouter(prefix="/api", tags=["model"], dependencies=[Depends(require_read_access)])

NO_MODEL_STATUS = "no model status yet: no engine has started on this journal"


@router.get(
    "/model",
    response_model=ModelStatusOut,
    responses={status.HTTP_404_NOT_FOUND: error(NO_MODEL_STATUS)},
)
def read_model_status(journal: JournalDep) -> ModelStatusOut:
    """Return the model status the engine announced last (404 before any engine started).

    `proven` is false when the set's own out-of-sample policy result is not positive after
    fees: live entries are then refused unless overridden (`block_entries` says whether they
    are), and paper trading goes on with a warning. `stale` is true when the set is older than
    LXA_MODEL_MAX_AGE_DAYS (`age_days` says how old).
    """
    found = latest_model_status(journal)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_MODEL_STATUS)
    model = ModelStatusOut.model_validate(found)
    if model.created_at is not None:  # `stale`: older than LXA_MODEL_MAX_AGE_DAYS
        created = model.created_at
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - created).total_seconds() / 86400
        stale = model.max_age_days is not None and age > model.max_age_days
        model = model.model_copy(update={"age_days": round(age, 3), "stale": stale})
    return model
