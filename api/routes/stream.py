"""The live event streams (Server-Sent Events), resumable by `Last-Event-ID`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import BusDep, JournalDep, ServicesDep, error, require_read_access
from api.schemas import STREAM_EVENT_TYPES
from store.bus import EventBus
from store.journal import Journal, json_default

router = APIRouter(tags=["stream"], dependencies=[Depends(require_read_access)])

PING_SECONDS = 15
_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: `id` is the event's seq, `event` its type, `data` "
        "the event as JSON (see StreamEvent). Types: " + ", ".join(STREAM_EVENT_TYPES),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

LastEventIdHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID", ge=0, le=2**62, description="resume after this seq (set by browsers)"
    ),
]
LastEventIdQuery = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="resume after this seq (when no header is sent)"),
]


def to_sse(event: Mapping[str, Any]) -> ServerSentEvent:
    """Frame one bus event: `id` is its seq, `event` its type, `data` the event as JSON.

    Bus notices without a seq (`gap`, `overflow`) carry no id, so a reconnect resumes from the
    last numbered event.
    """
    seq = event.get("seq")
    return ServerSentEvent(
        data=json.dumps(event, default=json_default, ensure_ascii=False, separators=(",", ":")),
        event=str(event.get("type") or "message"),
        id=None if seq is None else str(seq),
    )


async def _frames(bus: EventBus, after_seq: int | None) -> AsyncIterator[ServerSentEvent]:
    async for event in bus.subscribe(after_seq):
        yield to_sse(event)


@router.get("/api/stream", response_class=EventSourceResponse, responses=_SSE_DOC)
async def stream(
    bus: BusDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """Stream every event; with a last event id, first replay the ones after it.

    The header wins over the query parameter: a browser's reconnect keeps the page's URL but
    sends the newest id in the header. Without either, only new events are sent.
    """
    after_seq = last_event_id_header if last_event_id_header is not None else last_event_id
    return EventSourceResponse(_frames(bus, after_seq), ping=PING_SECONDS)


def _finished_notice(journal: Journal, run_id: str) -> dict[str, Any] | None:
    decision = journal.get_decision(run_id)
    if decision is None:
        return None
    return {
        "type": "run_finished",
        "run_id": run_id,
        "action": decision["action"],
        "market": decision["market"],
        "reason": decision["reason"],
        "duration_ms": decision["duration_ms"],
        "from_journal": True,
    }


async def run_frames(
    bus: EventBus, journal: Journal, run_id: str, after_seq: int | None
) -> AsyncIterator[ServerSentEvent]:
    """Yield one run's events after `after_seq`; end with its `run_finished`.

    A run that had finished before the client came ends once the buffered events are
    replayed; when the buffer no longer holds its `run_finished`, one is made from the journal
    (without an id: the events are in `GET /api/runs/{id}`).
    """
    resumed = after_seq is not None
    after_seq = after_seq or 0
    finished_before = journal.get_decision(run_id) is not None
    newest = bus.last_seq
    if finished_before and after_seq >= newest:
        notice = _finished_notice(journal, run_id)
        if notice is not None:
            yield to_sse(notice)
        return
    async for event in bus.subscribe(after_seq):
        seq = event.get("seq")
        is_notice = seq is None and (resumed or event.get("type") != "gap")
        if event.get("run_id") == run_id or is_notice:
            yield to_sse(event)
            if event.get("type") == "run_finished" and event.get("run_id") == run_id:
                return
        if finished_before and seq is not None and seq >= newest:
            break
    if finished_before:
        notice = _finished_notice(journal, run_id)
        if notice is not None:
            yield to_sse(notice)


@router.get(
    "/api/runs/{run_id}/stream",
    response_class=EventSourceResponse,
    responses={**_SSE_DOC, status.HTTP_404_NOT_FOUND: error("no run with that id")},
)
async def run_stream(
    run_id: Annotated[str, Path(min_length=1, max_length=200)],
    bus: BusDep,
    journal: JournalDep,
    services: ServicesDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """Stream one run's events from its start (or after the last event id); end when it ends.

    Events of the run already published are replayed first (from the bus buffer), so a client
    that connects just after `POST /api/runs` misses nothing.
    """
    if run_id not in services.accepted_runs and not journal.run_exists(run_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    after_seq = last_event_id_header if last_event_id_header is not None else last_event_id
    return EventSourceResponse(run_frames(bus, journal, run_id, after_seq), ping=PING_SECONDS)
