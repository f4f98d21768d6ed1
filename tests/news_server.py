"""A local server that answers like news sources: RSS 2.0, Atom, Upbit's notice list, CryptoPanic.

Runs a Starlette app under uvicorn in a background thread on 127.0.0.1 (an ephemeral port).
Each path serves a `Feed`: a body with its media type, an `ETag` and a `Last-Modified`, and
answers a conditional GET the way web servers do (`If-None-Match` matching the ETag, or
`If-Modified-Since` not older than Last-Modified: 304, no body). Paths can also be made to
fail: a status (500, 429 with Retry-After), garbage bytes, an HTML page, or no answer at all
(`hang`, released when the server stops). CryptoPanic's path refuses a request without
`auth_token` as the service does (401 JSON). Every request is recorded with its headers.

The payloads follow the real formats (RSS 2.0 as WordPress and Arc publish it, Atom 1.0,
Upbit's `api/v1/announcements` JSON, CryptoPanic's v1 posts JSON); their headlines are
SYNTHETIC, written for the tests.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Self

import uvicorn
from loopback import start_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_KST = timezone(timedelta(hours=9))


@dataclass
class Feed:
    """What one path answers."""

    body: bytes
    media_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: datetime | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (the client times out)
    require_token: str | None = None  # CryptoPanic: the auth_token the path expects


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


class NewsServer:
    """Serves `Feed`s by path; `requests(path)` tells what each client sent and got."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, Feed] = {}
        self._seen: list[Seen] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET"])])

    def serve(self, path: str, feed: Feed) -> None:
        with self._lock:
            self._feeds[path] = feed

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if path is None or s.path == path]

    def url(self, path: str) -> str:
        if self.port is None:
            raise RuntimeError("NewsServer is not started")
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            feed = self._feeds.get(path)
        status, response = self._answer(request, feed)
        with self._lock:
            self._seen.append(Seen(path, dict(request.query_params), dict(request.headers), status))
        if feed is not None and feed.hang:
            if self._release is None:
                self._loop = asyncio.get_running_loop()
                self._release = asyncio.Event()
            await self._release.wait()
        return response

    @staticmethod
    def _answer(request: Request, feed: Feed | None) -> tuple[int, Response]:
        if feed is None:
            return 404, Response("not found", 404, media_type="text/plain")
        token = request.query_params.get("auth_token")
        if feed.require_token is not None and token != feed.require_token:
            body = json.dumps({"status": "Incomplete", "info": "Token not found"})
            return 401, Response(body, 401, media_type="application/json")
        headers = dict(feed.headers)
        if feed.etag:
            headers["ETag"] = feed.etag
        if feed.last_modified:
            headers["Last-Modified"] = format_datetime(feed.last_modified, usegmt=True)
        if feed.status == 200 and _not_modified(request, feed):
            return 304, Response(status_code=304, headers=headers)
        return feed.status, Response(
            feed.body, feed.status, headers=headers, media_type=feed.media_type
        )

    def start(self) -> Self:
        self._server, self._thread, self.port = start_in_thread(self.app, "news-server")
        return self

    def stop(self) -> None:
        if self._release is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _not_modified(request: Request, feed: Feed) -> bool:
    match = request.headers.get("if-none-match")
    if match is not None and feed.etag is not None:
        return feed.etag in [tag.strip() for tag in match.split(",")] or match.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since and feed.last_modified is not None:
        try:
            return feed.last_modified <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


# ---- payloads in the real formats (headlines SYNTHETIC) ------------------------------------


def rfc822(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def rss(items: list[dict[str, Any]], *, title: str = "Synthetic Crypto News") -> bytes:
    """RSS 2.0 as WordPress/Arc feeds publish it (dc:creator, guid, media:content, pubDate)."""
    entries = []
    for item in items:
        published = item.get("published")
        pub = f"<pubDate>{rfc822(published)}</pubDate>" if published else ""
        if "pub_raw" in item:
            pub = f"<pubDate>{item['pub_raw']}</pubDate>"
        entries.append(
            f"""
    <item>
      <title><![CDATA[{item["title"]}]]></title>
      <link>{item["link"]}</link>
      <dc:creator><![CDATA[Synthetic Desk]]></dc:creator>
      {pub}
      <category><![CDATA[Markets]]></category>
      <guid isPermaLink="false">{item.get("guid", item["link"])}</guid>
      <description><![CDATA[<p>{item.get("summary", "")}</p>]]></description>
      <media:content url="https://example.test/image.jpg" type="image/jpeg" medium="image"/>
    </item>"""
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
  xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom"
  xmlns:media="http://search.yahoo.com/mrss/">
  <channel>
    <title>{title}</title>
    <atom:link href="https://example.test/feed/" rel="self" type="application/rss+xml"/>
    <link>https://example.test</link>
    <description>SYNTHETIC test feed</description>
    <lastBuildDate>Tue, 01 Dec 2026 09:00:00 +0000</lastBuildDate>
    <language>en-US</language>{"".join(entries)}
  </channel>
</rss>
""".encode()


def atom(entries: list[dict[str, Any]]) -> bytes:
    """Atom 1.0 (RFC 4287): id, title, link rel=alternate, published/updated, summary."""
    rows = []
    for entry in entries:
        when = entry["published"].isoformat().replace("+00:00", "Z")
        rows.append(
            f"""
  <entry>
    <id>{entry.get("id", entry["link"])}</id>
    <title type="html">{entry["title"]}</title>
    <link rel="alternate" type="text/html" href="{entry["link"]}"/>
    <published>{when}</published>
    <updated>{when}</updated>
    <author><name>Synthetic Desk</name></author>
    <summary type="html">{entry.get("summary", "")}</summary>
  </entry>"""
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <id>tag:example.test,2026:feed</id>
  <title>Synthetic Atom News</title>
  <updated>2026-12-01T09:00:00Z</updated>
  <link rel="self" href="https://example.test/atom.xml"/>{"".join(rows)}
</feed>
""".encode()


def upbit_notices(
    notices: list[dict[str, Any]], fixed: list[dict[str, Any]] | None = None
) -> bytes:
    """Upbit's `GET api-manager.upbit.com/api/v1/announcements` answer."""

    def notice(n: dict[str, Any]) -> dict[str, Any]:
        listed = n["listed_at"].astimezone(_KST).isoformat()
        return {
            "listed_at": listed,
            "first_listed_at": listed,
            "id": n["id"],
            "title": n["title"],
            "category": n.get("category", "거래"),
            "need_new_badge": True,
            "need_update_badge": False,
        }

    payload = {
        "success": True,
        "data": {
            "total_pages": 1,
            "total_count": len(notices),
            "notices": [notice(n) for n in notices],
            "fixed_notices": [notice(n) for n in fixed or []],
        },
    }
    return json.dumps(payload, ensure_ascii=False).encode()


def cryptopanic_posts(posts: list[dict[str, Any]]) -> bytes:
    """CryptoPanic's v1 `GET /api/v1/posts/` answer."""
    results = []
    for n, post in enumerate(posts, start=1):
        when = post["published"].isoformat().replace("+00:00", "Z")
        results.append(
            {
                "kind": "news",
                "domain": "example.test",
                "source": {
                    "title": "Synthetic Wire",
                    "region": "en",
                    "domain": "example.test",
                    "path": None,
                },
                "title": post["title"],
                "published_at": when,
                "slug": f"synthetic-{n}",
                "id": 20_000_000 + n,
                "url": f"https://cryptopanic.com/news/{20_000_000 + n}/synthetic-{n}",
                "created_at": when,
                "votes": {
                    "negative": 0,
                    "positive": 1,
                    "important": 0,
                    "liked": 0,
                    "disliked": 0,
                    "lol": 0,
                    "toxic": 0,
                    "saved": 0,
                    "comments": 0,
                },
                "currencies": [
                    {
                        "code": code,
                        "title": code,
                        "slug": code.lower(),
                        "url": f"https://cryptopanic.com/news/{code.lower()}/",
                    }
                    for code in post.get("currencies", [])
                ],
            }
        )
    return json.dumps(
        {"count": len(results), "next": None, "previous": None, "results": results}
    ).encode()
