"""News sources: RSS/Atom feeds, Upbit's notices, CryptoPanic; fetched politely, parsed strictly.

Each source is polled no more often than its `min_interval_s`, with a conditional GET
(`If-None-Match` from the last `ETag`, `If-Modified-Since` from the last `Last-Modified`): a
304 is no news and costs the source nothing. A 429 or 503 with `Retry-After` waits that long.
A source that times out, answers an error, sends what does not parse, or changes its format
raises `SourceError` with a kind (`timeout`, `network`, `http`, `parse`, `format`); the service
counts it in the source's `SourceStats`, backs off, and goes on with the others.

Formats, as the services send them:

- RSS 2.0 and Atom, parsed by `feedparser` from the bytes fetched here (`parse_feed`);
- Upbit's notice list, `GET https://api-manager.upbit.com/api/v1/announcements?os=web&page=1&
  per_page=20&category=all` (the JSON behind upbit.com/service_center/notice):
  `{"success": true, "data": {"total_pages", "total_count", "notices": [{"id", "title",
  "category", "listed_at", "first_listed_at", "need_new_badge", "need_update_badge"}],
  "fixed_notices": [...]}}`, times ISO 8601 with the +09:00 offset (`parse_upbit_notices`);
- CryptoPanic's `GET https://cryptopanic.com/api/v1/posts/?auth_token=...&public=true`:
  `{"count", "next", "previous", "results": [{"kind", "domain", "source": {...}, "title",
  "published_at", "slug", "id", "url", "created_at", "votes", "currencies": [{"code", ...}]}]}`
  (`parse_cryptopanic`).
"""

from __future__ import annotations

import calendar
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import feedparser
import httpx

from news.items import NewsItem, classify_notice

__all__ = [
    "CRYPTOPANIC_URL",
    "DEFAULT_FEEDS",
    "UPBIT_NOTICES_URL",
    "UPBIT_NOTICE_LINK",
    "Fetched",
    "SourceConfig",
    "SourceError",
    "SourceKind",
    "SourceState",
    "SourceStats",
    "fetch",
    "parse",
    "parse_cryptopanic",
    "parse_feed",
    "parse_upbit_notices",
]

SourceKind = Literal["feed", "upbit_notices", "cryptopanic"]
ErrorKind = Literal["timeout", "network", "http", "parse", "format", "other"]

UPBIT_NOTICES_URL = (
    "https://api-manager.upbit.com/api/v1/announcements?os=web&page=1&per_page=20&category=all"
)
UPBIT_NOTICE_LINK = "https://upbit.com/service_center/notice?id={id}"
CRYPTOPANIC_URL = "https://cryptopanic.com/api/v1/posts/?public=true&kind=news"
KST = timezone(timedelta(hours=9))
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BACKOFF_S = 3600.0
_TAGS = re.compile(r"<[^>]+>")
_CRYPTOPANIC_MARKETS = {"BTC": "KRW-BTC", "ETH": "KRW-ETH", "XRP": "KRW-XRP", "SOL": "KRW-SOL"}


@dataclass(frozen=True)
class SourceConfig:
    """One source: its name (as stored with each item), URL, format and polling floor."""

    name: str
    url: str
    kind: SourceKind = "feed"
    min_interval_s: float = 300.0
    timeout_s: float = 10.0
    language: str = "en"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,39}", self.name):
            raise ValueError(f"source name must be short lower-case [a-z0-9_.-]: {self.name!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"source {self.name}: URL must be http(s), got {self.url!r}")
        if self.min_interval_s < 1.0:
            raise ValueError(f"source {self.name}: min_interval_s must be >= 1")
        if self.timeout_s <= 0:
            raise ValueError(f"source {self.name}: timeout_s must be positive")


# English and Korean crypto news, and Upbit's own notices (for a KRW market they matter most).
DEFAULT_FEEDS: tuple[SourceConfig, ...] = (
    SourceConfig("upbit", UPBIT_NOTICES_URL, "upbit_notices", min_interval_s=60, language="ko"),
    SourceConfig("coindesk", "https://www.coindesk.com/arc/outboundfeeds/rss/"),
    SourceConfig("cointelegraph", "https://cointelegraph.com/rss"),
    SourceConfig("decrypt", "https://decrypt.co/feed"),
    SourceConfig("blockmedia", "https://www.blockmedia.co.kr/feed/", language="ko"),
    SourceConfig("tokenpost", "https://www.tokenpost.kr/rss", language="ko"),
)


class SourceError(Exception):
    """A poll that brought nothing usable; `kind` says why (timeout, network, http, ...)."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.retry_after_s = retry_after_s


@dataclass
class SourceStats:
    """What polling one source has done: counters a person (`lxa news`) or the API reads."""

    polls: int = 0
    fetched: int = 0  # 200 answers parsed
    not_modified: int = 0  # 304 answers
    items: int = 0  # items parsed (before deduplication)
    new_items: int = 0  # items not seen before
    skipped_entries: int = 0  # entries without a title
    errors: dict[str, int] = field(default_factory=dict)
    consecutive_errors: int = 0
    last_error: str | None = None
    last_polled_at: datetime | None = None
    last_ok_at: datetime | None = None

    @property
    def error_count(self) -> int:
        """Every error, of every kind."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly counters."""
        return {
            "polls": self.polls,
            "fetched": self.fetched,
            "not_modified": self.not_modified,
            "items": self.items,
            "new_items": self.new_items,
            "skipped_entries": self.skipped_entries,
            "errors": dict(self.errors),
            "consecutive_errors": self.consecutive_errors,
            "last_error": self.last_error,
            "last_polled_at": _iso(self.last_polled_at),
            "last_ok_at": _iso(self.last_ok_at),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass
class SourceState:
    """A source's caching validators, schedule and counters, kept between polls."""

    config: SourceConfig
    etag: str | None = None
    last_modified: str | None = None
    next_poll_at: datetime | None = None
    stats: SourceStats = field(default_factory=SourceStats)

    def due(self, now: datetime) -> bool:
        """Whether the source may be polled at `now`."""
        return self.next_poll_at is None or now >= self.next_poll_at

    def succeeded(self, now: datetime) -> None:
        """Schedule the next poll after a good answer (200 or 304)."""
        self.stats.consecutive_errors = 0
        self.stats.last_ok_at = now
        self.next_poll_at = now + timedelta(seconds=self.config.min_interval_s)

    def failed(self, now: datetime, error: SourceError) -> None:
        """Count the error and back off: the floor doubled per error in a row, up to an hour."""
        stats = self.stats
        stats.errors[error.kind] = stats.errors.get(error.kind, 0) + 1
        stats.consecutive_errors += 1
        stats.last_error = f"{error.kind}: {error}"
        delay = self.config.min_interval_s * 2 ** min(stats.consecutive_errors - 1, 12)
        delay = min(delay, max(MAX_BACKOFF_S, self.config.min_interval_s))
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        self.next_poll_at = now + timedelta(seconds=delay)


@dataclass(frozen=True)
class Fetched:
    """A 200 answer's body and headers, or a 304 (`body` None)."""

    body: bytes | None
    headers: Mapping[str, str]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _request_url(config: SourceConfig, api_key: str | None) -> str:
    if config.kind != "cryptopanic" or not api_key:
        return config.url
    parts = urlsplit(config.url)
    query = urlencode({"auth_token": api_key})
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


async def fetch(
    client: httpx.AsyncClient, state: SourceState, *, api_key: str | None = None
) -> Fetched:
    """GET the source conditionally; update its validators; raise `SourceError` on failure."""
    config = state.config
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        response = await client.get(
            _request_url(config, api_key), headers=headers, timeout=config.timeout_s
        )
    except httpx.TimeoutException as exc:
        raise SourceError("timeout", f"no answer within {config.timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise SourceError("network", f"{type(exc).__name__}: {exc}") from exc
    if response.status_code == 304:
        return Fetched(None, response.headers)
    if response.status_code != 200:
        retry = None
        if response.status_code in (429, 503):
            retry = _retry_after(response.headers.get("retry-after"))
        raise SourceError("http", f"HTTP {response.status_code}", retry_after_s=retry)
    if len(response.content) > MAX_BODY_BYTES:
        raise SourceError("format", f"body of {len(response.content)} bytes is over the limit")
    state.etag = response.headers.get("etag") or state.etag
    state.last_modified = response.headers.get("last-modified") or state.last_modified
    return Fetched(response.content, response.headers)


# ---- parsing ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(_TAGS.sub(" ", value)).split())


def _struct_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _iso_time(value: Any, default_zone: timezone = UTC) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_zone)
    return parsed.astimezone(UTC)


def parse_feed(
    body: bytes,
    source: str,
    first_seen_at: datetime,
    headers: Mapping[str, str] | None = None,
) -> tuple[list[NewsItem], int]:
    """RSS 2.0 or Atom bytes as items, and how many entries were skipped (no title).

    The answer's headers tell feedparser the charset when the document does not.
    """
    content_type = (headers or {}).get("content-type")
    parsed = feedparser.parse(
        body, response_headers={"content-type": content_type} if content_type else None
    )
    entries = parsed.get("entries") or []
    if not entries:
        if b"<html" in body[:2048].lower():
            raise SourceError("format", "an HTML page, not a feed")
        if parsed.get("bozo"):
            raise SourceError("parse", f"not a feed: {parsed.get('bozo_exception')}")
        if not parsed.get("version"):
            raise SourceError("format", "neither RSS nor Atom")
        return [], 0
    items: list[NewsItem] = []
    skipped = 0
    for entry in entries:
        title = _text(entry.get("title"))
        link = entry.get("link") or entry.get("id") or ""
        if not title or not isinstance(link, str):
            skipped += 1
            continue
        # dict.get: the raw keys, without feedparser's deprecated updated -> published mapping.
        raw = dict.get(entry, "published") or dict.get(entry, "updated")
        published = _struct_time(
            dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
        )
        items.append(
            NewsItem(
                source=source,
                title=title,
                link=link.strip(),
                first_seen_at=first_seen_at,
                published_at=published,
                published_raw=raw if isinstance(raw, str) else None,
                summary=_text(entry.get("summary")),
            )
        )
    if not items:
        raise SourceError("format", f"{len(entries)} entries, none with a title")
    return items, skipped


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError("parse", f"not JSON: {exc}") from exc


def parse_upbit_notices(
    body: bytes,
    source: str,
    first_seen_at: datetime,
    headers: Mapping[str, str] | None = None,
) -> tuple[list[NewsItem], int]:
    """Upbit's notice list (module docstring) as notice items, and how many were skipped."""
    payload = _json(body)
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("success") is not True:
        raise SourceError("format", "Upbit notices: no 'success': true")
    if not isinstance(data, dict) or not isinstance(data.get("notices"), list):
        raise SourceError("format", "Upbit notices: no data.notices list")
    fixed = data.get("fixed_notices")
    entries = [*data["notices"], *(fixed if isinstance(fixed, list) else [])]
    items: list[NewsItem] = []
    skipped = 0
    for entry in entries:
        if not isinstance(entry, dict):
            skipped += 1
            continue
        notice_id, title = entry.get("id"), _text(entry.get("title"))
        if not isinstance(notice_id, int) or isinstance(notice_id, bool) or not title:
            skipped += 1
            continue
        raw = entry.get("first_listed_at") or entry.get("listed_at")
        category = _text(entry.get("category"))
        items.append(
            NewsItem(
                source=source,
                title=title,
                link=UPBIT_NOTICE_LINK.format(id=notice_id),
                first_seen_at=first_seen_at,
                published_at=_iso_time(raw, KST),
                published_raw=raw if isinstance(raw, str) else None,
                summary=category,
                kind="notice",
                notice_kind=classify_notice(f"[{category}] {title}" if category else title),
            )
        )
    if entries and not items:
        raise SourceError("format", f"Upbit notices: {len(entries)} entries, none readable")
    return items, skipped


def parse_cryptopanic(
    body: bytes,
    source: str,
    first_seen_at: datetime,
    headers: Mapping[str, str] | None = None,
) -> tuple[list[NewsItem], int]:
    """CryptoPanic's posts (module docstring) as items tagged by their currencies."""
    payload = _json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise SourceError("format", "CryptoPanic: no results list")
    items: list[NewsItem] = []
    skipped = 0
    for entry in payload["results"]:
        title = _text(entry.get("title")) if isinstance(entry, dict) else ""
        if not title or not isinstance(entry.get("url"), str):
            skipped += 1
            continue
        codes = entry.get("currencies") if isinstance(entry.get("currencies"), list) else []
        markets = {
            _CRYPTOPANIC_MARKETS[c["code"]]
            for c in codes
            if isinstance(c, dict) and c.get("code") in _CRYPTOPANIC_MARKETS
        }
        raw = entry.get("published_at") or entry.get("created_at")
        items.append(
            NewsItem(
                source=source,
                title=title,
                link=entry["url"],
                first_seen_at=first_seen_at,
                published_at=_iso_time(raw),
                published_raw=raw if isinstance(raw, str) else None,
                coins=tuple(sorted(markets)),
            )
        )
    if payload["results"] and not items:
        raise SourceError("format", "CryptoPanic: no readable post")
    return items, skipped


_PARSERS = {
    "feed": parse_feed,
    "upbit_notices": parse_upbit_notices,
    "cryptopanic": parse_cryptopanic,
}


def parse(
    kind: SourceKind,
    body: bytes,
    source: str,
    first_seen_at: datetime,
    headers: Mapping[str, str] | None = None,
) -> tuple[list[NewsItem], int]:
    """Parse a body of the given kind; `SourceError` (parse or format) when it cannot be."""
    try:
        return _PARSERS[kind](body, source, first_seen_at, headers)
    except SourceError:
        raise
    except Exception as exc:  # a parser meeting a shape it never saw: the format changed
        raise SourceError("format", f"{type(exc).__name__}: {exc}") from exc
