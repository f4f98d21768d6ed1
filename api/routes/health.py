"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import Health

router = APIRouter(prefix="/api/health", tags=["health"])


@router.get("", response_model=Health)
def health() -> Health:
    """Say the server is up."""
    return Health()
