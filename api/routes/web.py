"""The browser viewer: `web/index.html` at `/`, static files under `/assets`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, Response

from api.deps import ServicesDep

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/", response_model=None)
def index(services: ServicesDep) -> Response:
    """Serve the viewer page, or say that it is not installed."""
    page = services.web_dir / "index.html"
    if not page.is_file():
        return PlainTextResponse(
            f"The LXA viewer is not installed (no {page}); the API is under /api.",
            status_code=404,
        )
    return FileResponse(page, media_type="text/html; charset=utf-8")
