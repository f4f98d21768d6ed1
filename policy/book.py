"""The policy's memory of each market: when it was entered and exited, and today's entries.

Built from fills (the journal's on a restart, the engine's as they come), so what the rules
see survives a crash. Times are the fills' own; a cycle measures minutes from them to the bar
close it decides at (rounded down), and counts entries per KST calendar day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

KST = timedelta(hours=9)


def kst_day(ts: datetime) -> date:
    """The KST calendar day of a timezone-aware time."""
    if ts.tzinfo is None:
        raise ValueError(f"time must be timezone-aware, got {ts.isoformat()}")
    return (ts.astimezone(UTC) + KST).date()


def minutes_between(earlier: datetime, later: datetime) -> int:
    """Whole minutes from `earlier` to `later` (rounded down; negative spans count as 0)."""
    return max(0, int((later - earlier).total_seconds() // 60))


@dataclass
class MarketMemory:
    """One market's entries and exits as the policy needs them."""

    entered_at: datetime | None = None  # first buy fill of the open position
    last_exit_at: datetime | None = None  # the sell fill that last emptied a position
    entries: dict[date, int] = field(default_factory=dict)  # KST day -> buys that opened one


class PolicyBook:
    """Per-market memory, fed with fills in time order."""

    def __init__(self) -> None:
        """Start with no history."""
        self._markets: dict[str, MarketMemory] = {}

    def memory(self, market: str) -> MarketMemory:
        """Return (creating if needed) the memory of `market`."""
        return self._markets.setdefault(market, MarketMemory())

    def on_fill(self, market: str, side: str, ts: datetime, *, flat_after: bool) -> None:
        """Fold one fill in: `side` is bid or ask; `flat_after` says the position is now empty."""
        memory = self.memory(market)
        if side == "bid":
            if memory.entered_at is None:
                memory.entered_at = ts
                day = kst_day(ts)
                memory.entries[day] = memory.entries.get(day, 0) + 1
                for old in [d for d in memory.entries if d < day - timedelta(days=2)]:
                    del memory.entries[old]
        elif side == "ask":
            if flat_after:
                memory.entered_at = None
                memory.last_exit_at = ts
        else:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")

    def snapshot(self, market: str, now: datetime) -> dict[str, Any]:
        """The JSON view one cycle's state carries for `market`, measured at `now`."""
        memory = self._markets.get(market, MarketMemory())
        return {
            "entered_at": memory.entered_at.isoformat() if memory.entered_at else None,
            "last_exit_at": memory.last_exit_at.isoformat() if memory.last_exit_at else None,
            "held_minutes": minutes_between(memory.entered_at, now) if memory.entered_at else None,
            "minutes_since_exit": minutes_between(memory.last_exit_at, now)
            if memory.last_exit_at
            else None,
            "entries_today": memory.entries.get(kst_day(now), 0),
        }

    @classmethod
    def from_fills(cls, fills: Iterable[Mapping[str, Any]], dust: float = 1e-12) -> PolicyBook:
        """Rebuild the memory from journal fills (market, side, volume, ts), oldest first."""
        book = cls()
        volumes: dict[str, float] = {}
        for fill in fills:
            market = str(fill["market"])
            side = str(fill["side"])
            volume = float(str(fill["volume"]))
            ts = fill["ts"]
            if isinstance(ts, str):
                ts = datetime.fromisoformat(ts)
            held = volumes.get(market, 0.0) + (volume if side == "bid" else -volume)
            volumes[market] = 0.0 if abs(held) <= dust else held
            book.on_fill(market, side, ts, flat_after=volumes[market] == 0.0)
        return book
