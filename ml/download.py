"""Download Upbit 1-minute candles into parquet files of the shared schema, one folder per market.

``GET {base}/v1/candles/minutes/1?market=..&to=..&count=200`` returns up to 200 candles
before ``to`` (exclusive), newest first; paging goes backwards from ``until`` to ``since``.
Every few pages are written as one part file ``<out>/<market>/<first ts ms>-<last ts ms>.parquet``
(written to a temporary name, then renamed), so an interruption loses at most the pages not
yet written. A new run reads what is on disk and fetches only what is missing: the stretch
before the oldest candle held, and the one after the newest.

Requests respect Upbit's quotation limit (10 per second): at most ``max_per_second`` in any
second, a pause until the next second when the ``Remaining-Req`` header says ``sec=0``, and a
back-off and retry on 429. A 418 (Upbit's block) stops the download with an error.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_BASE_URL = "https://api.upbit.com"
CANDLES_PATH = "/v1/candles/minutes/1"
PAGE_SIZE = 200
PAGES_PER_PART = 10
SOURCE = "upbit-rest"
MINUTE = timedelta(minutes=1)
_REMAINING = re.compile(r"sec=(?P<sec>\d+)")
_PART = re.compile(r"^(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_MARKET = re.compile(r"^[A-Z]{2,5}-[A-Z0-9]{1,15}$")

SCHEMA = pa.schema(
    [
        ("market", pa.large_string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("ts_ms", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("value", pa.float64()),
        ("exchange", pa.large_string()),
        ("source", pa.large_string()),
    ]
)

Progress = Callable[[str, int, int], None]  # market, minutes covered, minutes wanted
Sleep = Callable[[float], None]


class DownloadError(RuntimeError):
    """The download cannot go on (blocked, bad reply, bad arguments)."""


@dataclass
class RateLimiter:
    """At most ``max_per_second`` requests in any one-second window; obeys Remaining-Req."""

    max_per_second: int = 10
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        """Start with an empty window."""
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    def wait(self) -> None:
        """Sleep until one more request may go out, and count it."""
        now = self.clock()
        if now < self._blocked_until:
            self.sleep(self._blocked_until - now)
            now = self.clock()
        while self._sent and now - self._sent[0] >= 1.0:
            self._sent.popleft()
        if len(self._sent) >= self.max_per_second:
            self.sleep(1.0 - (now - self._sent[0]))
            now = self.clock()
            while self._sent and now - self._sent[0] >= 1.0:
                self._sent.popleft()
        self._sent.append(now)

    def observe(self, remaining_req: str | None) -> None:
        """Hold off until the next second when the server says none are left this second."""
        if not remaining_req:
            return
        match = _REMAINING.search(remaining_req)
        if match and int(match.group("sec")) <= 0:
            self._blocked_until = self.clock() + 1.0

    def back_off(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after a 429)."""
        self._blocked_until = max(self._blocked_until, self.clock() + seconds)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise DownloadError("times must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def held_span(folder: Path) -> tuple[datetime, datetime] | None:
    """Return the (oldest, newest) candle open time in a market folder's part files."""
    firsts: list[int] = []
    lasts: list[int] = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _PART.match(path.name)
            if match:
                firsts.append(int(match.group("first")))
                lasts.append(int(match.group("last")))
    if not firsts:
        return None
    return (
        datetime.fromtimestamp(min(firsts) / 1000, tz=UTC),
        datetime.fromtimestamp(max(lasts) / 1000, tz=UTC),
    )


def parse_candles(market: str, payload: Any) -> pd.DataFrame:
    """Turn one REST reply (a JSON list, newest first) into schema rows, oldest first."""
    if not isinstance(payload, list):
        raise DownloadError(
            f"{market}: expected a JSON list of candles, got {type(payload).__name__}"
        )
    rows: list[dict[str, Any]] = []
    for item in payload:
        try:
            if item["market"] != market:
                raise DownloadError(f"asked for {market}, got a candle of {item['market']}")
            ts = pd.Timestamp(str(item["candle_date_time_utc"]), tz="UTC")
            rows.append(
                {
                    "ts": ts,
                    "open": float(item["opening_price"]),
                    "high": float(item["high_price"]),
                    "low": float(item["low_price"]),
                    "close": float(item["trade_price"]),
                    "volume": float(item["candle_acc_trade_volume"]),
                    "value": float(item["candle_acc_trade_price"]),
                }
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DownloadError(f"{market}: malformed candle {item!r}: {error}") from None
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("ms")
    frame = frame.drop_duplicates("ts").sort_values("ts", kind="stable").reset_index(drop=True)
    frame.insert(0, "market", market)
    frame.insert(2, "ts_ms", frame["ts"].astype("int64"))
    frame["exchange"] = "upbit"
    frame["source"] = SOURCE
    return frame


def write_part(folder: Path, frame: pd.DataFrame) -> Path:
    """Write rows (one market, oldest first) as one part file, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    first, last = int(frame["ts_ms"].iloc[0]), int(frame["ts_ms"].iloc[-1])
    path = folder / f"{first}-{last}.parquet"
    staging = folder / f".{path.name}.{os.getpid()}.tmp"
    table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
    pq.write_table(table, staging, compression="zstd")
    os.replace(staging, path)
    return path


class CandleDownloader:
    """Page one market's candles backwards over a span and write them as part files."""

    def __init__(
        self,
        client: httpx.Client,
        out_dir: Path,
        *,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        max_retries: int = 5,
        pages_per_part: int = PAGES_PER_PART,
    ) -> None:
        """Use ``client`` for every request; write under ``out_dir/<market>/``."""
        self.client = client
        self.out_dir = Path(out_dir)
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter or RateLimiter()
        self.max_retries = max_retries
        self.pages_per_part = pages_per_part
        self.requests = 0

    def _page(self, market: str, to: datetime) -> pd.DataFrame:
        """Return up to PAGE_SIZE candles opened before ``to``, oldest first."""
        params = {
            "market": market,
            "to": to.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": str(PAGE_SIZE),
        }
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            self.requests += 1
            try:
                reply = self.client.get(f"{self.base_url}{CANDLES_PATH}", params=params)
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise DownloadError(f"{market}: request failed: {error}") from error
                self.limiter.back_off(min(2.0**attempt, 10.0))
                continue
            self.limiter.observe(reply.headers.get("Remaining-Req"))
            if reply.status_code == 418:
                raise DownloadError(
                    f"{market}: Upbit answered 418 (blocked for exceeding the rate limit); "
                    "wait before trying again"
                )
            if reply.status_code == 429 or reply.status_code >= 500:
                if attempt == self.max_retries:
                    raise DownloadError(f"{market}: HTTP {reply.status_code} after retries")
                self.limiter.back_off(min(2.0**attempt, 10.0))
                continue
            if reply.status_code != 200:
                raise DownloadError(f"{market}: HTTP {reply.status_code}: {reply.text[:200]}")
            try:
                payload = reply.json()
            except ValueError as error:
                raise DownloadError(f"{market}: reply is not JSON: {error}") from None
            return parse_candles(market, payload)
        raise DownloadError(f"{market}: no reply")  # pragma: no cover - loop always returns

    def _fill(
        self,
        market: str,
        newest: datetime,
        oldest: datetime,
        on_page: Callable[[datetime], None],
    ) -> int:
        """Fetch candles opened in [oldest, newest) paging backwards; return rows written."""
        folder = self.out_dir / market
        pending: list[pd.DataFrame] = []
        written = 0
        to = newest
        pages = 0

        def flush() -> int:
            if not pending:
                return 0
            frame = pd.concat(pending, ignore_index=True)
            frame = frame.drop_duplicates("ts").sort_values("ts", kind="stable")
            pending.clear()
            if frame.empty:
                return 0
            write_part(folder, frame.reset_index(drop=True))
            return len(frame)

        while to > oldest:
            page = self._page(market, to)
            if page.empty:
                break
            page = page[(page["ts"] >= pd.Timestamp(oldest)) & (page["ts"] < pd.Timestamp(to))]
            if page.empty:
                break
            pending.append(page)
            pages += 1
            to = page["ts"].iloc[0].to_pydatetime()
            on_page(to)
            if pages % self.pages_per_part == 0:
                written += flush()
        written += flush()
        return written

    def download(
        self,
        market: str,
        since: datetime,
        until: datetime,
        on_progress: Progress | None = None,
    ) -> int:
        """Make ``out_dir/<market>`` hold [since, until); fetch only what is missing; rows added."""
        if not _MARKET.match(market):
            raise DownloadError(f"market must look like KRW-BTC, got {market!r}")
        since, until = _utc(since), _utc(until)
        if since >= until:
            raise DownloadError(f"since ({since.isoformat()}) must be before until")
        wanted = int((until - since) / MINUTE)
        held = held_span(self.out_dir / market)
        gaps: list[tuple[datetime, datetime]] = []
        if held is None:
            gaps.append((until, since))
        else:
            oldest_held, newest_held = held
            if newest_held + MINUTE < until:
                gaps.append((until, max(newest_held + MINUTE, since)))
            if oldest_held > since:
                gaps.append((min(oldest_held, until), since))
        covered_before = wanted - sum(int((a - b) / MINUTE) for a, b in gaps)
        done = {"minutes": max(covered_before, 0)}

        def report(gap: tuple[datetime, datetime]) -> Callable[[datetime], None]:
            top = gap[0]

            def on_page(reached: datetime) -> None:
                minutes = done["minutes"] + int((top - reached) / MINUTE)
                if on_progress is not None:
                    on_progress(market, min(minutes, wanted), wanted)

            return on_page

        if on_progress is not None:
            on_progress(market, done["minutes"], wanted)
        added = 0
        for gap in gaps:
            added += self._fill(market, gap[0], gap[1], report(gap))
            done["minutes"] += int((gap[0] - gap[1]) / MINUTE)
            if on_progress is not None:
                on_progress(market, min(done["minutes"], wanted), wanted)
        return added


def download_candles(
    markets: Sequence[str],
    out_dir: Path,
    *,
    since: datetime,
    until: datetime | None = None,
    base_url: str = DEFAULT_BASE_URL,
    on_progress: Progress | None = None,
    timeout_s: float = 10.0,
    limiter: RateLimiter | None = None,
) -> dict[str, int]:
    """Download every market into ``out_dir``; return the rows added per market."""
    end = _utc(until) if until is not None else datetime.now(UTC)
    end = end.replace(second=0, microsecond=0)
    with httpx.Client(timeout=timeout_s, headers={"Accept": "application/json"}) as client:
        downloader = CandleDownloader(client, out_dir, base_url=base_url, limiter=limiter)
        return {market: downloader.download(market, since, end, on_progress) for market in markets}


def read_downloaded(out_dir: Path) -> pd.DataFrame:
    """Read every part file under ``out_dir`` into one frame of the shared schema."""
    paths = sorted(Path(out_dir).glob("*/*.parquet"))
    if not paths:
        return pa.Table.from_pylist([], schema=SCHEMA).to_pandas()
    frames = [pq.read_table(p).to_pandas() for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop_duplicates(["market", "ts"]).sort_values(["market", "ts"], kind="stable")
    return frame.reset_index(drop=True)


__all__ = [
    "DEFAULT_BASE_URL",
    "CandleDownloader",
    "DownloadError",
    "RateLimiter",
    "download_candles",
    "held_span",
    "read_downloaded",
]
