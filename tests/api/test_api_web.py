"""GET / serves the viewer page; /assets serves static files when the web folder has them."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.app import DEFAULT_WEB_DIR, create_app
from store.bus import InProcessBus
from store.journal import Journal


def client_for(journal: Journal, web_dir: Path) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), web_dir=web_dir)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_root_serves_the_repository_viewer_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/api/graph" in page
    assert "new EventSource" in page
    assert "/api/runs" in page
    assert "실행 기록" in page
    assert response.text == (DEFAULT_WEB_DIR / "index.html").read_text(encoding="utf-8")


def test_viewer_page_loads_nothing_from_other_hosts() -> None:
    page = (DEFAULT_WEB_DIR / "index.html").read_text(encoding="utf-8")

    assert "http://" not in page
    assert "https://" not in page
    assert "<script src" not in page


async def test_root_serves_index_and_assets_from_the_given_web_dir(
    journal: Journal, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>custom</title>", encoding="utf-8")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("console.log('hi')", encoding="utf-8")

    async with client_for(journal, tmp_path) as client:
        page = await client.get("/")
        asset = await client.get("/assets/app.js")
        missing = await client.get("/assets/nope.js")

    assert page.text == "<!doctype html><title>custom</title>"
    assert (asset.status_code, asset.text) == (200, "console.log('hi')")
    assert missing.status_code == 404


async def test_root_without_index_says_the_viewer_is_not_installed(
    journal: Journal, tmp_path: Path
) -> None:
    async with client_for(journal, tmp_path / "absent") as client:
        response = await client.get("/")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert "viewer is not installed" in response.text
