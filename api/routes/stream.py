"""The live event stream (Server-Sent Events), resumable by `Last-Event-ID`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import BusDep
from store.bus import EventBus
from store.journal import json_default

router = APIRouter(prefix="/api/stream", tags=["stream"])

PING_SECONDS = 15


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


@router.get("", response_class=EventSourceResponse)
async def stream(
    bus: BusDep,
    last_event_id_header: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, description="resume after this seq (set by browsers)"),
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, description="resume after this seq (when no header is sent)")
    ] = None,
) -> EventSourceResponse:
    """Stream bus events; with a last event id, first replay the ones after it.

    The header wins over the query parameter: a browser's reconnect keeps the page's URL but
    sends the newest id in the header. Without either, only new events are sent.
    """
    after_seq = last_event_id_header if last_event_id_header is not None else last_event_id
    return EventSourceResponse(_frames(bus, after_seq), ping=PING_SECONDS)
