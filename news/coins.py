"""Which coins a text names: tickers, English and Korean names, on word boundaries.

Tickers match in upper case only (`SOL`, `$SOL`, `KRW-SOL`), never inside a word ("SOLution",
"ETHos"); English names match in any case on word boundaries ("ether" not in "whether");
Korean names match where no Hangul comes before them, so particles may follow ("비트코인이")
but "트리플" is not 리플. A name that is part of another coin's name is not that coin:
"Bitcoin Cash", "Ethereum Classic", "비트코인캐시", "이더리움클래식".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_COIN_NAMES", "CoinNames", "CoinTagger"]


@dataclass(frozen=True)
class CoinNames:
    """How texts name one market's coin."""

    market: str  # "KRW-BTC"
    tickers: tuple[str, ...]  # matched in upper case only
    english: tuple[str, ...]  # any case, word boundaries
    korean: tuple[str, ...]  # no Hangul before
    # Names of other coins that start with one of ours ("bitcoin cash"): never ours.
    excluded: tuple[str, ...] = ()


DEFAULT_COIN_NAMES: tuple[CoinNames, ...] = (
    CoinNames(
        "KRW-BTC",
        tickers=("BTC", "XBT"),
        english=("bitcoin", "bitcoins"),
        korean=("비트코인",),
        excluded=(
            "bitcoin cash",
            "bitcoin sv",
            "bitcoin gold",
            "bitcoin diamond",
            "wrapped bitcoin",
            "비트코인캐시",
            "비트코인 캐시",
            "비트코인에스브이",
            "비트코인골드",
            "비트코인 골드",
            "랩드비트코인",
        ),
    ),
    CoinNames(
        "KRW-ETH",
        tickers=("ETH",),
        english=("ethereum", "ether"),
        korean=("이더리움",),
        excluded=(
            "ethereum classic",
            "ethereum name service",
            "이더리움클래식",
            "이더리움 클래식",
            "이더리움네임서비스",
        ),
    ),
    CoinNames(
        "KRW-XRP",
        tickers=("XRP",),
        english=("ripple", "xrp ledger"),
        korean=("리플", "엑스알피"),
        excluded=("리플레이", "리플렉", "리플릿"),
    ),
    CoinNames(
        "KRW-SOL",
        tickers=("SOL",),
        english=("solana",),
        korean=("솔라나",),
    ),
)

_HANGUL = "\uac00-\ud7a3"


def _pattern(names: CoinNames) -> re.Pattern[str]:
    parts = [rf"(?<![A-Za-z0-9])\$?{re.escape(t)}(?![A-Za-z0-9])" for t in names.tickers]
    parts += [rf"(?i:(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9]))" for n in names.english]
    parts += [rf"(?<![{_HANGUL}]){re.escape(n)}" for n in names.korean]
    return re.compile("|".join(parts))


def _excluded(names: CoinNames) -> re.Pattern[str] | None:
    if not names.excluded:
        return None
    return re.compile("|".join(re.escape(n) for n in names.excluded), re.IGNORECASE)


class CoinTagger:
    """Tag texts with the markets they name (`tag`) and where (`spans`)."""

    def __init__(self, coins: Iterable[CoinNames] = DEFAULT_COIN_NAMES) -> None:
        self._coins = tuple(coins)
        self._patterns = [(c.market, _pattern(c), _excluded(c)) for c in self._coins]

    @property
    def markets(self) -> tuple[str, ...]:
        """The markets this tagger knows, in order."""
        return tuple(c.market for c in self._coins)

    def spans(self, text: str) -> Mapping[str, list[tuple[int, int]]]:
        """Each named market's match positions in `text` (markets not named are absent)."""
        found: dict[str, list[tuple[int, int]]] = {}
        for market, pattern, excluded in self._patterns:
            blocked = [(m.start(), m.end()) for m in excluded.finditer(text)] if excluded else []
            for match in pattern.finditer(text):
                start, end = match.span()
                if any(b_start <= start < b_end for b_start, b_end in blocked):
                    continue
                found.setdefault(market, []).append((start, end))
        return found

    def tag(self, *texts: str) -> tuple[str, ...]:
        """The markets any of `texts` names, in the tagger's order."""
        named: set[str] = set()
        for text in texts:
            if text:
                named.update(self.spans(text))
        return tuple(m for m in self.markets if m in named)
