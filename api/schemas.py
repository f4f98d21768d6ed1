"""Response bodies of the API (pydantic models; the viewer's only contract)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EventOut",
    "GraphEdge",
    "GraphOut",
    "HaltRequest",
    "Health",
    "LlmCallOut",
    "OrderOut",
    "ResumeRequest",
    "RunAccepted",
    "RunDetail",
    "RunList",
    "RunSummary",
    "TradingStateOut",
]


class Health(BaseModel):
    status: str = "ok"


class RunSummary(BaseModel):
    """One decision as a row of the runs table."""

    run_id: str
    session_id: str
    bar_ts: datetime
    created_at: datetime
    trigger: str
    action: str
    market: str | None
    reason: str
    duration_ms: float
    reviewer_labels: dict[str, Any] = Field(default_factory=dict)


class RunList(BaseModel):
    runs: list[RunSummary]
    limit: int
    offset: int
    total: int = Field(description="decisions matching the filters, ignoring limit and offset")


class LlmCallOut(BaseModel):
    id: int
    run_id: str
    node: str
    provider: str
    model: str
    prompt_ref: str | None
    request: dict[str, Any]
    response: dict[str, Any] | None
    verdict: str | None
    latency_ms: float
    created_at: datetime
    error: str | None


class OrderOut(BaseModel):
    """An order; prices and volumes are exact decimals, sent as JSON strings."""

    identifier: str
    run_id: str | None
    market: str
    side: str
    ord_type: str
    price: Decimal | None
    volume: Decimal | None
    state: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    executed_volume: Decimal
    paid_fee: Decimal


class EventOut(BaseModel):
    id: int
    run_id: str | None
    ts: datetime
    type: str
    payload: dict[str, Any]


class RunDetail(RunSummary):
    """Everything recorded about one run."""

    nodes: dict[str, Any]
    ml: dict[str, Any]
    verdicts: dict[str, Any]
    sizing: dict[str, Any] | None
    events: list[EventOut]
    orders: list[OrderOut]
    llm_calls: list[LlmCallOut]


class RunAccepted(BaseModel):
    run_id: str


class GraphEdge(BaseModel):
    source: str
    target: str
    conditional: bool


class GraphOut(BaseModel):
    mermaid: str
    nodes: list[str] = Field(description="the graph's nodes in order, without __start__/__end__")
    edges: list[GraphEdge] = Field(description="every edge, with __start__ and __end__ ones")


class HaltRequest(BaseModel):
    """Stop trading: no order of any kind except cancels (and selling all, with `flatten`)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200, description="why trading stops")
    flatten: bool = Field(default=False, description="also sell every position at market")


class ResumeRequest(BaseModel):
    """Trade again (reducing, exits only, while today's daily loss limit is breached)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200, description="why trading resumes")


class TradingStateOut(BaseModel):
    """The operator's trading state as the journal holds it; the engine applies it."""

    state: str = Field(description="active, reducing (exits only) or halted")
    reason: str
    flatten_requested: bool = Field(description="a flatten was asked for and is not done yet")
    updated_at: datetime | None = Field(description="None until the state was first set")
    updated_by: str | None = Field(description="cli, api or engine; None until first set")
