"""Build the FastAPI application from services handed in by the composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.deps import Runner, Services
from api.routes import control, graph, health, runs, stream, web
from store.bus import EventBus
from store.journal import Journal

__all__ = ["DEFAULT_WEB_DIR", "create_app"]

DEFAULT_WEB_DIR = Path(__file__).resolve().parents[1] / "web"


def create_app(
    *,
    journal: Journal,
    bus: EventBus,
    runner: Runner | None = None,
    api_token: str | None = None,
    web_dir: Path | None = None,
) -> FastAPI:
    """Return the API and viewer app over `journal` and `bus`.

    Without `runner`, `POST /api/runs` answers 503; without `api_token`, every change is
    refused with 403 (reads stay open).
    """
    if api_token is not None and not api_token:
        raise ValueError("api_token must be None or a non-empty string")
    resolved_web_dir = (web_dir or DEFAULT_WEB_DIR).resolve()
    app = FastAPI(title="AutoTrader-LXA", version="0.1.0")
    app.state.services = Services(
        journal=journal, bus=bus, runner=runner, api_token=api_token, web_dir=resolved_web_dir
    )
    for router in (
        health.router,
        runs.router,
        control.router,
        graph.router,
        stream.router,
        web.router,
    ):
        app.include_router(router)
    assets = resolved_web_dir / "assets"
    if assets.is_dir():
        app.mount("/assets", StaticFiles(directory=assets), name="assets")
    return app
