"""A news item as the service keeps it: normalised, keyed for deduplication, tagged to coins.

`first_seen_at` is when this process first saw the item (the point-in-time key a backtest
filters on); `published_at` is the source's own time, parsed to UTC, or None when the source
gave none or gave one that cannot be read (`published_raw` keeps the text as given).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "CLOCK_SKEW",
    "TITLE_DEDUP_WINDOW",
    "ItemKind",
    "NewsItem",
    "NoticeKind",
    "canonical_link",
    "classify_notice",
    "event_time",
    "link_key",
    "normalise_title",
    "title_key",
    "utc",
]

ItemKind = Literal["news", "notice"]
NoticeKind = Literal["warning", "delisting", "suspension", "other"]

# The same normalised title within this window is the same story (syndicated or re-posted);
# an exchange notice repeated months later (another suspension for a network upgrade) is not.
TITLE_DEDUP_WINDOW = timedelta(days=7)
# A source's clock may run ahead of ours: a published time up to this far after first seen
# is taken as first seen; further ahead, it is not a usable time.
CLOCK_SKEW = timedelta(minutes=10)

_TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "mc_cid", "mc_eid", "ref", "ref_src", "cmpid", "ocid", "igshid"}
)
_PUNCTUATION = re.compile(r"[^\w]+", re.UNICODE)


def canonical_link(link: str) -> str:
    """The link without what varies between copies of one story.

    Scheme and host lower-cased, `http` as `https`, no `www.`, no fragment, no tracking
    parameters (`utm_*`, `fbclid`, ...), the rest of the query sorted, no trailing slash.
    """
    text = link.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "http":
        scheme = "https"
    host = parts.netloc.lower().removeprefix("www.")
    query = sorted(
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not name.lower().startswith("utm_") and name.lower() not in _TRACKING_PARAMS
    )
    path = parts.path.rstrip("/") or ""
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def normalise_title(title: str) -> str:
    """The title as compared for duplicates: NFKC, lower case, words only, single spaces."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_PUNCTUATION.sub(" ", folded).split())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def link_key(link: str, title: str) -> str:
    """The dedup key of a link (of the normalised title when there is no link)."""
    canonical = canonical_link(link)
    return _sha256("link:" + canonical if canonical else "title:" + normalise_title(title))


def title_key(title: str) -> str:
    """The dedup key of a normalised title."""
    return _sha256("title:" + normalise_title(title))


# Upbit's notice titles, e.g. "[거래] 유의 종목 지정 안내 (XYZ)", "[거래지원종료] ... 거래지원 종료
# 안내", "[입출금] 솔라나(SOL) 입출금 일시 중단 안내". Order matters: a delisting that follows a
# warning names both, and is a delisting.
_DELISTING = re.compile(
    r"거래\s*지원\s*종료|상장\s*폐지|\bdelist(?:ing|ed)?\b|termination of trading support",
    re.IGNORECASE,
)
_WARNING_LIFTED = re.compile(r"(?:유의|주의)\s*종목\s*지정\s*해제|해제", re.IGNORECASE)
_WARNING = re.compile(
    r"(?:투자\s*)?유의\s*종목|주의\s*종목|투자\s*유의|investment warning|designated.*caution",
    re.IGNORECASE,
)
_SUSPENSION = re.compile(
    r"(?:입출금|입금|출금|거래|deposit|withdrawal|trading)[^\n]{0,20}?(?:일시\s*)?중단"
    r"|\bsuspen(?:d|ded|sion)\b|\bhalt(?:ed)?\b",
    re.IGNORECASE,
)


def classify_notice(title: str) -> NoticeKind:
    """What an exchange notice announces, from its title: warning, delisting, suspension, other.

    A lifted warning ("유의 종목 지정 해제") is `other`: it takes a warning away.
    """
    if _DELISTING.search(title):
        return "delisting"
    if _WARNING.search(title):
        return "other" if _WARNING_LIFTED.search(title) else "warning"
    if _SUSPENSION.search(title):
        return "suspension"
    return "other"


def event_time(published_at: datetime | None, first_seen_at: datetime) -> datetime | None:
    """When a story happened as far as a backtest may know, or None (live use only): the
    published time, never later than first seen; None without one, or with one further ahead
    of first seen than `CLOCK_SKEW` (a clock that cannot be trusted)."""
    if published_at is None or published_at > first_seen_at + CLOCK_SKEW:
        return None
    return min(published_at, first_seen_at)


@dataclass(frozen=True, slots=True)
class NewsItem:
    """One story or notice, normalised; `coins` are the markets it names (KRW-BTC, ...)."""

    source: str
    title: str
    link: str
    first_seen_at: datetime
    published_at: datetime | None = None
    published_raw: str | None = None
    summary: str = ""
    kind: ItemKind = "news"
    notice_kind: NoticeKind | None = None
    coins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError(f"news item from {self.source!r} has no title")
        for name in ("first_seen_at", "published_at"):
            value = getattr(self, name)
            if value is not None and (value.tzinfo is None or value.utcoffset() is None):
                raise ValueError(f"{name} must be timezone-aware UTC, got {value.isoformat()}")
        if self.kind == "notice" and self.notice_kind is None:
            raise ValueError("an exchange notice needs its notice_kind")

    @property
    def link_key(self) -> str:
        """The dedup key of the canonical link."""
        return link_key(self.link, self.title)

    @property
    def title_key(self) -> str:
        """The dedup key of the normalised title."""
        return title_key(self.title)

    @property
    def event_time(self) -> datetime | None:
        """When the story happened as far as a backtest may know, or None (live use only).

        The published time, never later than first seen; None without a published time, or
        with one further ahead of first seen than `CLOCK_SKEW` (a clock that cannot be trusted).
        """
        return event_time(self.published_at, self.first_seen_at)

    def with_coins(self, coins: tuple[str, ...]) -> NewsItem:
        """A copy tagged with `coins`."""
        return NewsItem(
            source=self.source,
            title=self.title,
            link=self.link,
            first_seen_at=self.first_seen_at,
            published_at=self.published_at,
            published_raw=self.published_raw,
            summary=self.summary,
            kind=self.kind,
            notice_kind=self.notice_kind,
            coins=coins,
        )


def utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} (timezone-aware required)")
    return value.astimezone(UTC)
