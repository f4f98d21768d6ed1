"""Decision runs: list and read from the journal; start and replay them through the engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Response, status
from pydantic import BeforeValidator

from api.deps import (
    CHANGE_RESPONSES,
    LLM_SETTINGS,
    JournalDep,
    ReplayerDep,
    ReviewerSource,
    RunnerDep,
    Services,
    ServicesDep,
    error,
    require_read_access,
    require_token,
)
from api.routes.prompts import validated_text
from api.schemas import (
    MARKET_PATTERN,
    ReplayOut,
    ReplayRequest,
    RunAccepted,
    RunDetail,
    RunList,
    RunRequest,
    RunSummary,
)

router = APIRouter(prefix="/api/runs", tags=["runs"])

MAX_PAGE = 500
RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run's id")]


def _not_a_number(value: object) -> object:
    """Refuse a bare number for a time (pydantic would read it as a Unix timestamp)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("give an ISO 8601 time such as 2026-03-01T09:00:00Z, not a number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("give an ISO 8601 time such as 2026-03-01T09:00:00Z, not a number")
    return value


Time = Annotated[datetime, BeforeValidator(_not_a_number)]


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """Read a naive time as UTC; refuse one that cannot be expressed in UTC."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {value.isoformat()} is out of range"
        ) from exc


@router.get(
    "",
    response_model=RunList,
    dependencies=[Depends(require_read_access)],
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: error("a filter is malformed", unprocessable=True)
    },
)
def list_runs(
    journal: JournalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    market: Annotated[
        str | None, Query(max_length=32, pattern=MARKET_PATTERN, examples=["KRW-BTC"])
    ] = None,
    action: Annotated[
        Literal["buy", "sell", "hold"] | None, Query(description="the outcome")
    ] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: Annotated[
        Time | None, Query(description="bar time from (inclusive; no zone means UTC)")
    ] = None,
    until: Annotated[
        Time | None, Query(description="bar time until (exclusive; no zone means UTC)")
    ] = None,
) -> RunList:
    """List decisions newest first, filtered by market, outcome, session and bar time."""
    since_utc, until_utc = as_utc(since, "since"), as_utc(until, "until")
    if since_utc is not None and until_utc is not None and since_utc >= until_utc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"since ({since_utc.isoformat()}) must be before until ({until_utc.isoformat()})",
        )
    filters: dict[str, Any] = {
        "market": market,
        "action": action,
        "since": since_utc,
        "until": until_utc,
    }
    rows = journal.list_decisions(limit=limit, offset=offset, session_id=session_id, **filters)
    total = journal.count_decisions(session_id, **filters)
    return RunList(
        runs=[RunSummary.model_validate(row) for row in rows],
        limit=limit,
        offset=offset,
        total=total,
    )


def _prompt_refs(decision: dict[str, Any]) -> dict[str, str | None]:
    refs: dict[str, str | None] = {}
    for call in decision.get("llm_calls", []):
        refs[call["node"]] = call.get("prompt_ref")
    for event in decision.get("events", []):
        payload = event.get("payload") or {}
        node = payload.get("node")
        if node and payload.get("prompt_ref") and node not in refs:
            refs[node] = payload["prompt_ref"]
    return refs


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    dependencies=[Depends(require_read_access)],
    responses={status.HTTP_404_NOT_FOUND: error("no decision with that run id")},
)
def get_run(run_id: RunId, journal: JournalDep) -> RunDetail:
    """Return one decision: node inputs and outputs, verdicts, clamps, prompts, orders, fills."""
    decision = journal.get_decision(run_id)
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    sizing = decision.get("sizing") or {}
    decision["clamps"] = list(sizing.get("clamps") or []) if isinstance(sizing, dict) else []
    decision["prompt_refs"] = _prompt_refs(decision)
    decision["fills"] = journal.fills_for_run(run_id)
    return RunDetail.model_validate(decision)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    dependencies=[Depends(require_token)],
    responses={
        **CHANGE_RESPONSES,
        status.HTTP_409_CONFLICT: error("nothing can be evaluated yet"),
        status.HTTP_422_UNPROCESSABLE_CONTENT: error(
            "the market is not traded here", unprocessable=True
        ),
        status.HTTP_503_SERVICE_UNAVAILABLE: error("this server has no engine"),
    },
)
async def start_run(
    runner: RunnerDep,
    services: ServicesDep,
    response: Response,
    body: Annotated[RunRequest | None, Body()] = None,
) -> RunAccepted:
    """Re-evaluate now (one market or all) and return the run id at once; needs the token.

    The run belongs to the engine: it finishes and is journaled whoever watches.
    """
    market = body.market if body is not None else None
    try:
        run_id = await runner.evaluate_now(market)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except RuntimeError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    services.accepted_runs.add(run_id)
    response.headers["Location"] = f"{router.prefix}/{run_id}"
    return RunAccepted(run_id=run_id, market=market, stream_url=f"{router.prefix}/{run_id}/stream")


@router.post(
    "/{run_id}/replay",
    response_model=ReplayOut,
    dependencies=[Depends(require_token)],
    responses={
        **CHANGE_RESPONSES,
        status.HTTP_404_NOT_FOUND: error("no such run, or no checkpoint to fork from"),
        status.HTTP_409_CONFLICT: error(
            "the fork could not run, or could change nothing: the edited prompts are read by "
            "no LLM (rule-based reviewers), or no check ran in the run (the ML proposed hold)"
        ),
        status.HTTP_422_UNPROCESSABLE_CONTENT: error(
            "an edited prompt or a model is invalid", unprocessable=True
        ),
        status.HTTP_503_SERVICE_UNAVAILABLE: error("this server has no engine"),
    },
)
async def replay_run(
    run_id: RunId,
    replayer: ReplayerDep,
    services: ServicesDep,
    journal: JournalDep,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> ReplayOut:
    """Fork a past run from its checkpoint before the LLM checks and compare the outcomes.

    Optionally with edited prompt texts (validated like a save, never written to disk) or
    other models. The fork never places an order; needs the token.
    """
    request = body or ReplayRequest()
    decision = journal.get_decision(run_id)
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    prompts = {name: validated_text(services, name, text) for name, text in request.prompts.items()}
    useless = useless_replay(services, decision, prompts, request)
    if useless is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, useless)
    models = {
        key: value
        for key, value in (("groq", request.groq_model), ("ollama", request.ollama_model))
        if value is not None
    }
    try:
        result = await replayer.replay(run_id, prompts, models)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _message(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except RuntimeError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ReplayOut.model_validate(result)


def useless_replay(
    services: Services,
    decision: dict[str, Any],
    prompts: dict[str, str],
    request: ReplayRequest,
) -> str | None:
    """Why a replay with edited prompts cannot change anything, or None when it can.

    A fork runs the checks after the ML signal with the reviewers configured now: an edited
    prompt matters only where an LLM reads it, and only when the ML proposed something.
    """
    edited = [name for name in prompts if name in LLM_SETTINGS]
    if not edited or request.groq_model is not None or request.ollama_model is not None:
        return None
    proposal = ((decision.get("nodes") or {}).get("ml_signal") or {}).get("proposal") or {}
    if proposal.get("action", "hold") == "hold":
        return (
            f"run {decision['run_id']}: the ML signal proposed hold, so no check ran and none "
            "runs in a fork: an edited prompt changes nothing (replay a buy or sell proposal)"
        )
    configured = _configured(services, decision)
    rule_based = [name for name in edited if configured.get(name) is False]
    if len(rule_based) < len(edited):
        return None
    settings = ", ".join(f"{name}: {LLM_SETTINGS[name]}" for name in rule_based)
    return (
        f"{', '.join(rule_based)} rule-based here (no LLM configured): the stand-in reads no "
        f"prompt, so an edited prompt changes nothing; configure an LLM first ({settings})"
    )


def _configured(services: Services, decision: dict[str, Any]) -> dict[str, bool | None]:
    """Whether each LLM node is an LLM: the engine's configuration, else the run's labels."""
    source = services.account
    if isinstance(source, ReviewerSource):
        return {node: info.get("kind") == "llm" for node, info in source.reviewers().items()}
    labels = decision.get("reviewer_labels") or {}
    return {
        node: (None if label is None else isinstance(label, str) and ":" in label)
        for node, label in labels.items()
    }


def _message(exc: LookupError) -> str:
    """KeyError wraps its message in quotes; other errors do not."""
    return str(exc.args[0]) if exc.args else str(exc)
