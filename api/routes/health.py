"""Liveness, what this server runs, and a token check for the viewer."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import (
    CHANGE_RESPONSES,
    LLM_SETTINGS,
    ReviewerSource,
    Seller,
    Services,
    ServicesDep,
    require_read_access,
    require_token,
)
from api.schemas import AuthCheck, Health, InfoOut, ReviewerInfo
from api.version import API_VERSION

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    """Say the server is up."""
    return Health()


@router.get("/info", response_model=InfoOut, dependencies=[Depends(require_read_access)])
def info(services: ServicesDep) -> InfoOut:
    """Say what this server runs: session, paper or live, the feed, what it can do.

    `reviewers` says who answers each LLM node now (an LLM as provider:model, or the
    rule-based stand-in that reads no prompt), from the engine's configuration.
    """
    return InfoOut(
        session_id=services.session_id,
        mode=services.mode if services.mode in ("paper", "live") else "none",  # type: ignore[arg-type]
        feed=services.feed,
        markets=list(services.markets),
        can_run=services.runner is not None,
        can_replay=services.replayer is not None,
        token_configured=services.api_token is not None,
        reads_need_token=services.reads_need_token,
        bus="redis" if services.bus_kind == "redis" else "in-process",
        version=API_VERSION,
        reviewers=configured_reviewers(services),
        can_sell=isinstance(services.account, Seller),
    )


def configured_reviewers(services: Services) -> dict[str, ReviewerInfo] | None:
    """Who answers each LLM node in the engine here (None without one), with its setting."""
    source = services.account
    if not isinstance(source, ReviewerSource):
        return None
    found = source.reviewers()
    return {
        node: ReviewerInfo(**found[node], setting=setting)
        for node, setting in LLM_SETTINGS.items()
        if node in found
    }


@router.post(
    "/auth/check",
    response_model=AuthCheck,
    dependencies=[Depends(require_token)],
    responses=CHANGE_RESPONSES,
)
def auth_check() -> AuthCheck:
    """Answer 200 when the bearer token is right (401/403 otherwise); changes nothing."""
    return AuthCheck()
