"""The kill switch: read the trading state; halt (optionally flattening) and resume."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import CHANGE_RESPONSES, BusDep, JournalDep, require_read_access, require_token
from api.schemas import HaltRequest, ResumeRequest, TradingStateOut
from store.bus import EventBus

router = APIRouter(prefix="/api", tags=["control"])

_CHANGE_RESPONSES = CHANGE_RESPONSES


def _publish(bus: EventBus, state: TradingStateOut) -> None:
    bus.publish({"type": "trading_state", **state.model_dump(mode="json")})


@router.get(
    "/trading-state", response_model=TradingStateOut, dependencies=[Depends(require_read_access)]
)
def read_trading_state(journal: JournalDep) -> TradingStateOut:
    """Return the trading state the operator set (active until anyone set one)."""
    return TradingStateOut.model_validate(journal.read_trading_control())


@router.post(
    "/halt",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def halt(body: HaltRequest, journal: JournalDep, bus: BusDep) -> TradingStateOut:
    """Halt trading (the engine stops every order but cancels); needs the API token."""
    row = journal.write_trading_control("halted", body.reason, flatten=body.flatten, by="api")
    state = TradingStateOut.model_validate(row)
    _publish(bus, state)
    return state


@router.post(
    "/resume",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def resume(body: ResumeRequest, journal: JournalDep, bus: BusDep) -> TradingStateOut:
    """Resume trading; a pending flatten request is dropped; needs the API token."""
    row = journal.write_trading_control("active", body.reason, by="api")
    state = TradingStateOut.model_validate(row)
    _publish(bus, state)
    return state
