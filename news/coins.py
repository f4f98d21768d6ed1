"""Which coins a text names: tickers, English and Korean names, on word boundaries.

Tickers match in upper case only (`SOL`, `$SOL`, `KRW-SOL`), never inside a word ("SOLution",
"ETHos"); English names match in any case on word boundaries ("ether" not in "whether");
Korean names match where no Hangul comes before them, so particles may follow ("비트코인이")
but "트리플" is not 리플. A name that is part of another coin's name is not that coin:
"Bitcoin Cash", "Ethereum Classic", "비트코인캐시", "이더리움클래식".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
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

_ALNUM = re.compile(r"[A-Za-z0-9]+")
_CACHE_SIZE = 512
_HANGUL = re.compile("[\uac00-\ud7a3]")


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


def _excluded(names: CoinNames) -> re.Pattern[str] | None:
    if not names.excluded:
        return None
    return re.compile("|".join(re.escape(n) for n in names.excluded), re.IGNORECASE)


class CoinTagger:
    """Tag texts with the markets they name (`tag`) and where (`spans`).

    A text is read once: its runs of ASCII letters and digits are looked up as tickers (exact
    case) and English names (any case, two-word names as pairs), and its Hangul is scanned for
    the Korean names. A coin's excluded names are looked for only in texts that named it.
    """

    def __init__(self, coins: Iterable[CoinNames] = DEFAULT_COIN_NAMES) -> None:
        self._coins = tuple(coins)
        self._tickers: dict[str, str] = {}
        self._english: dict[str, str] = {}
        korean: dict[str, list[tuple[str, str]]] = {}
        for coin in self._coins:
            self._tickers.update(dict.fromkeys(coin.tickers, coin.market))
            self._english.update(dict.fromkeys((n.lower() for n in coin.english), coin.market))
            for name in coin.korean:
                korean.setdefault(name[0], []).append((name, coin.market))
        self._korean = {c: sorted(v, key=lambda nm: -len(nm[0])) for c, v in korean.items()}
        # The first syllables of the Korean names: where a Korean name may start.
        self._korean_first = re.compile("[" + "".join(self._korean) + "]") if korean else None
        self._excluded = {c.market: _excluded(c) for c in self._coins}
        # Two-word English names ("xrp ledger"): their first words, for the pair lookup.
        self._pair_starts = {name.split()[0] for name in self._english if " " in name}
        self._cache: dict[str, dict[str, list[tuple[int, int]]]] = {}

    @property
    def markets(self) -> tuple[str, ...]:
        """The markets this tagger knows, in order."""
        return tuple(c.market for c in self._coins)

    def spans(self, text: str) -> Mapping[str, Sequence[tuple[int, int]]]:
        """Each named market's match positions in `text` (markets not named are absent).

        The last texts' answers are kept (the service tags a text, then the scorer reads it).
        """
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            cached = self._cache[text] = self._find(text)
        return cached

    def _find(self, text: str) -> dict[str, list[tuple[int, int]]]:
        found: dict[str, list[tuple[int, int]]] = {}
        tickers, english, pair_starts = self._tickers, self._english, self._pair_starts
        previous = ""
        previous_start = 0
        for match in _ALNUM.finditer(text):
            word = match.group(0)
            lower = word.lower()
            market = tickers.get(word) or english.get(lower)
            start = match.start()
            if market is None and previous in pair_starts:
                market = english.get(f"{previous} {lower}")
                start = previous_start
            if market is not None:
                found.setdefault(market, []).append((start, match.end()))
            previous, previous_start = lower, match.start()
        if self._korean_first is not None and _HANGUL.search(text):
            self._korean_spans(text, found)
        for market in list(found):
            excluded = self._excluded[market]
            if excluded is None:
                continue
            blocked = [m.span() for m in excluded.finditer(text)]
            if blocked:
                kept = [s for s in found[market] if not any(b <= s[0] < e for b, e in blocked)]
                if kept:
                    found[market] = kept
                else:
                    del found[market]
        return found

    def _korean_spans(self, text: str, found: dict[str, list[tuple[int, int]]]) -> None:
        first = self._korean_first
        position = 0
        while first is not None and (match := first.search(text, position)) is not None:
            position = match.start()
            if position == 0 or not _is_hangul(text[position - 1]):
                for name, market in self._korean[text[position]]:
                    if text.startswith(name, position):
                        found.setdefault(market, []).append((position, position + len(name)))
                        position += len(name) - 1
                        break
            position += 1

    def tag(self, *texts: str) -> tuple[str, ...]:
        """The markets any of `texts` names, in the tagger's order."""
        named: set[str] = set()
        for text in texts:
            if text:
                named.update(self.spans(text))
        return tuple(m for m in self.markets if m in named)
