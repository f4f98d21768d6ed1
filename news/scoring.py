"""Scoring an item per coin: the `Scorer` protocol and the transparent lexicon scorer.

A score is in [-1, 1] (bad to good news for that coin), `relevance` in [0, 1] (how much the
item is about that coin), `reason` one line a person can check, `scorer` the name of what
scored it ("lexicon", or an LLM's name once one plugs in through the same protocol).

The lexicon scorer adds up the weights of the English and Korean words it knows, per coin:
words in the clauses that name the coin count in full, words in clauses that name no coin
count half (context), words in clauses about another coin not at all ("Bitcoin rises while
Solana falls" is good for BTC, bad for SOL). The title counts in full, the summary half. An
English negation just before a word ("not", "no", "never", "fails to") flips it and halves it.
The sum is clipped to [-1, 1]. Nothing is learned: what scored is named in the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from news.coins import CoinTagger
from news.items import NewsItem

__all__ = [
    "ENGLISH_TERMS",
    "KOREAN_TERMS",
    "LEXICON_SCORER",
    "CoinScore",
    "LexiconScorer",
    "Scorer",
]

LEXICON_SCORER = "lexicon"


@dataclass(frozen=True, slots=True)
class CoinScore:
    """One item's score for one market, and who scored it."""

    market: str
    score: float
    relevance: float
    reason: str
    scorer: str

    def __post_init__(self) -> None:
        if not -1.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [-1, 1], got {self.score}")
        if not 0.0 <= self.relevance <= 1.0:
            raise ValueError(f"relevance must be in [0, 1], got {self.relevance}")


@runtime_checkable
class Scorer(Protocol):
    """Scores an item for each coin it concerns (an LLM scorer implements this later)."""

    name: str

    async def score(self, item: NewsItem) -> Sequence[CoinScore]:
        """One `CoinScore` per market in `item.coins` (none for an item about no coin)."""
        ...


# (pattern, weight): English patterns match case-insensitively from a word start to a word end.
ENGLISH_TERMS: tuple[tuple[str, float], ...] = (
    (r"surg(?:e|es|ed|ing)", 0.7),
    (r"soar(?:s|ed|ing)?", 0.7),
    (r"skyrocket(?:s|ed|ing)?", 0.8),
    (r"rall(?:y|ies|ied|ying)", 0.6),
    (r"jump(?:s|ed|ing)?", 0.5),
    (r"gain(?:s|ed|ing)?", 0.4),
    (r"ris(?:e|es|en|ing)", 0.4),
    (r"climb(?:s|ed|ing)?", 0.4),
    (r"rebound(?:s|ed|ing)?", 0.4),
    (r"recover(?:s|ed|ing|y)?", 0.3),
    (r"breakout", 0.5),
    (r"(?:all-time|record) highs?", 0.6),
    (r"bullish", 0.6),
    (r"approv(?:e|es|ed|al)", 0.5),
    (r"adopt(?:s|ed|ion)", 0.4),
    (r"inflows?", 0.4),
    (r"partnership", 0.3),
    (r"upgrade(?:s|d)?", 0.3),
    (r"listing", 0.3),
    (r"accumulat(?:e|es|ed|ing|ion)", 0.3),
    (r"crash(?:es|ed|ing)?", -0.8),
    (r"plung(?:e|es|ed|ing)", -0.8),
    (r"plummet(?:s|ed|ing)?", -0.8),
    (r"tumbl(?:e|es|ed|ing)", -0.6),
    (r"slump(?:s|ed|ing)?", -0.6),
    (r"sink(?:s|ing)?|sank", -0.5),
    (r"drop(?:s|ped|ping)?", -0.4),
    (r"fall(?:s|en|ing)?|fell", -0.4),
    (r"declin(?:e|es|ed|ing)", -0.4),
    (r"sell-?off", -0.6),
    (r"bearish", -0.6),
    (r"hack(?:s|ed|er|ers)?", -0.9),
    (r"exploit(?:s|ed)?", -0.8),
    (r"stolen|theft", -0.8),
    (r"lawsuits?|sue(?:s|d)?", -0.5),
    (r"ban(?:s|ned)?", -0.7),
    (r"crackdown", -0.6),
    (r"fraud(?:ulent)?", -0.8),
    (r"scam(?:s|mer|mers)?", -0.8),
    (r"outflows?", -0.4),
    (r"liquidat(?:ed|ion|ions)", -0.5),
    (r"delist(?:s|ed|ing)?", -0.9),
    (r"suspend(?:s|ed)?|suspension", -0.5),
    (r"halt(?:s|ed)?", -0.5),
    (r"outage", -0.5),
    (r"investigat(?:e|es|ed|ion)|probe", -0.4),
    (r"reject(?:s|ed|ion)?", -0.5),
    (r"warn(?:s|ed|ing)?", -0.4),
    (r"downgrade(?:s|d)?", -0.4),
    (r"fears?", -0.3),
)

# (substring, weight): Korean stems match anywhere (particles and endings follow them).
KOREAN_TERMS: tuple[tuple[str, float], ...] = (
    ("급등", 0.8),
    ("폭등", 0.8),
    ("상승", 0.4),
    ("반등", 0.4),
    ("강세", 0.5),
    ("호재", 0.7),
    ("돌파", 0.5),
    ("최고치", 0.6),
    ("신고가", 0.6),
    ("승인", 0.5),
    ("신규 거래지원", 0.5),
    ("유입", 0.3),
    ("매수세", 0.3),
    ("회복", 0.3),
    ("채택", 0.4),
    ("협력", 0.3),
    ("급락", -0.8),
    ("폭락", -0.9),
    ("하락", -0.4),
    ("약세", -0.5),
    ("악재", -0.7),
    ("해킹", -0.9),
    ("도난", -0.8),
    ("유출", -0.6),
    ("사기", -0.8),
    ("소송", -0.5),
    ("규제", -0.4),
    ("제재", -0.6),
    ("조사", -0.3),
    ("청산", -0.5),
    ("매도세", -0.3),
    ("유의 종목", -0.9),
    ("유의종목", -0.9),
    ("거래지원 종료", -1.0),
    ("거래지원종료", -1.0),
    ("상장폐지", -1.0),
    ("일시 중단", -0.4),
    ("중단", -0.3),
    ("경고", -0.4),
    ("우려", -0.3),
)

_ENGLISH = [(re.compile(rf"(?i)\b(?:{p})\b"), w) for p, w in ENGLISH_TERMS]
_NEGATION = re.compile(
    r"(?i)\b(?:not|no|never|without|fails? to|failed to|isn't|wasn't|won't|doesn't|didn't)"
    r"(?:\s+\w+)?\s*$"
)
# Clause breaks: sentence ends, separators, and the conjunctions that turn a headline around.
_CLAUSES = re.compile(
    r"[.!?]+\s|[,;:|·…]|\s(?:while|but|as|whereas|although|amid)\s|반면|하지만|그러나",
    re.IGNORECASE,
)
_SUMMARY_CHARS = 600
_TITLE_WEIGHT = 1.0
_SUMMARY_WEIGHT = 0.5
_CONTEXT_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class _Hit:
    word: str
    weight: float
    start: int


def _hits(clause: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for pattern, weight in _ENGLISH:
        for match in pattern.finditer(clause):
            value = weight
            if _NEGATION.search(clause[: match.start()]):
                value = -weight / 2
            hits.append(_Hit(match.group(0), value, match.start()))
    taken: list[tuple[int, int]] = []
    # Longer Korean terms first, so "거래지원 종료" is not also counted as "중단"/"종료" parts.
    for term, weight in sorted(KOREAN_TERMS, key=lambda tw: -len(tw[0])):
        start = clause.find(term)
        while start != -1:
            end = start + len(term)
            if not any(s < end and start < e for s, e in taken):
                taken.append((start, end))
                hits.append(_Hit(term, weight, start))
            start = clause.find(term, end)
    return hits


def _clauses(text: str) -> list[tuple[int, str]]:
    pieces: list[tuple[int, str]] = []
    position = 0
    for match in _CLAUSES.finditer(text):
        pieces.append((position, text[position : match.start()]))
        position = match.end()
    pieces.append((position, text[position:]))
    return [(start, piece) for start, piece in pieces if piece.strip()]


class LexiconScorer:
    """Scores items per coin from the words it knows (module docstring); `score_item` is sync."""

    name = LEXICON_SCORER

    def __init__(self, tagger: CoinTagger | None = None) -> None:
        self._tagger = tagger or CoinTagger()

    async def score(self, item: NewsItem) -> Sequence[CoinScore]:
        """The `Scorer` protocol: `score_item`, which does no I/O."""
        return self.score_item(item)

    def score_item(self, item: NewsItem) -> list[CoinScore]:
        """One score per market in `item.coins`."""
        if not item.coins:
            return []
        parts = [("title", item.title, _TITLE_WEIGHT)]
        if item.summary:
            parts.append(("summary", item.summary[:_SUMMARY_CHARS], _SUMMARY_WEIGHT))
        totals = {market: 0.0 for market in item.coins}
        named_in_title = set(self._tagger.tag(item.title))
        words: dict[str, list[str]] = {market: [] for market in item.coins}
        for label, text, part_weight in parts:
            for _, clause in _clauses(text):
                hits = _hits(clause)
                if not hits:
                    continue
                named = set(self._tagger.spans(clause)) & set(item.coins)
                targets = named or set(item.coins)
                weight = part_weight * (1.0 if named else _CONTEXT_WEIGHT)
                for market in targets:
                    for hit in hits:
                        totals[market] += hit.weight * weight
                        words[market].append(f"{hit.word}({hit.weight * weight:+.2f} {label})")
        scores = []
        for market in item.coins:
            score = round(max(-1.0, min(1.0, totals[market])), 3)
            relevance = 1.0 if market in named_in_title else 0.6
            found = words[market]
            reason = "lexicon: " + (" ".join(found[:8]) if found else "no scored words")
            scores.append(CoinScore(market, score, relevance, reason, self.name))
        return scores
