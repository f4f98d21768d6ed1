"""GET / serves the viewer page; /assets serves static files when the web folder has them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx

from api.app import FALLBACK_WEB_DIR, create_app, viewer_dir
from store.bus import InProcessBus
from store.journal import Journal


def client_for(journal: Journal, web_dir: Path) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), web_dir=web_dir)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_root_serves_the_fallback_viewer_when_none_is_built(
    journal: Journal, tmp_path: Path
) -> None:
    app = create_app(journal=journal, bus=InProcessBus())
    app.state.services = dataclasses.replace(app.state.services, web_dir=FALLBACK_WEB_DIR)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/api/graph" in page
    assert "new EventSource" in page
    assert "/api/runs" in page
    assert "실행 기록" in page
    assert response.text == (FALLBACK_WEB_DIR / "index.html").read_text(encoding="utf-8")


def test_viewer_page_loads_nothing_from_other_hosts() -> None:
    page = (FALLBACK_WEB_DIR / "index.html").read_text(encoding="utf-8")

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


async def test_a_built_viewer_in_dist_wins_and_serves_its_own_routes(
    journal: Journal, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<script src='/src/main.tsx'></script>", "utf-8")
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>built</title>", encoding="utf-8")
    (dist / "assets" / "index-abc.js").write_text("export {}", encoding="utf-8")
    (dist / "favicon.svg").write_text("<svg/>", encoding="utf-8")

    async with client_for(journal, tmp_path) as client:
        root = await client.get("/")
        route = await client.get("/runs/some-run-id")
        asset = await client.get("/assets/index-abc.js")
        icon = await client.get("/favicon.svg")
        missing_file = await client.get("/nope.png")
        escape = await client.get("/..%2F..%2Fetc%2Fpasswd")
        api_typo = await client.get("/api/nope")

    assert viewer_dir(tmp_path) == dist.resolve()
    assert root.text == route.text == "<!doctype html><title>built</title>"
    assert (asset.status_code, asset.text) == (200, "export {}")
    assert (icon.status_code, icon.text) == (200, "<svg/>")
    assert missing_file.status_code == 404
    assert "root:" not in escape.text
    assert (api_typo.status_code, api_typo.json()) == (404, {"detail": "no API route /api/nope"})
