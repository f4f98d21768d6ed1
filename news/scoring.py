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


# (forms, weight): the English words, every form spelled out ("|" between forms; a form may
# be two words). A text's words are looked up, case-insensitively, as whole words.
ENGLISH_TERMS: tuple[tuple[str, float], ...] = (
    ("surge|surges|surged|surging", 0.7),
    ("soar|soars|soared|soaring", 0.7),
    ("skyrocket|skyrockets|skyrocketed|skyrocketing", 0.8),
    ("rally|rallies|rallied|rallying", 0.6),
    ("jump|jumps|jumped|jumping", 0.5),
    ("gain|gains|gained|gaining", 0.4),
    ("rise|rises|risen|rising", 0.4),
    ("climb|climbs|climbed|climbing", 0.4),
    ("rebound|rebounds|rebounded|rebounding", 0.4),
    ("recover|recovers|recovered|recovering|recovery", 0.3),
    ("breakout", 0.5),
    ("record high|record highs|all-time high|all-time highs", 0.6),
    ("bullish", 0.6),
    ("approve|approves|approved|approval", 0.5),
    ("adopt|adopts|adopted|adoption", 0.4),
    ("inflow|inflows", 0.4),
    ("partnership", 0.3),
    ("upgrade|upgrades|upgraded", 0.3),
    ("listing", 0.3),
    ("accumulate|accumulates|accumulated|accumulating|accumulation", 0.3),
    ("crash|crashes|crashed|crashing", -0.8),
    ("plunge|plunges|plunged|plunging", -0.8),
    ("plummet|plummets|plummeted|plummeting", -0.8),
    ("tumble|tumbles|tumbled|tumbling", -0.6),
    ("slump|slumps|slumped|slumping", -0.6),
    ("sink|sinks|sinking|sank", -0.5),
    ("drop|drops|dropped|dropping", -0.4),
    ("fall|falls|fallen|falling|fell", -0.4),
    ("decline|declines|declined|declining", -0.4),
    ("sell-off|selloff|sell off", -0.6),
    ("bearish", -0.6),
    ("hack|hacks|hacked|hacker|hackers", -0.9),
    ("exploit|exploits|exploited", -0.8),
    ("stolen|theft", -0.8),
    ("lawsuit|lawsuits|sue|sues|sued", -0.5),
    ("ban|bans|banned", -0.7),
    ("crackdown", -0.6),
    ("fraud|fraudulent", -0.8),
    ("scam|scams|scammer|scammers", -0.8),
    ("outflow|outflows", -0.4),
    ("liquidated|liquidation|liquidations", -0.5),
    ("delist|delists|delisted|delisting", -0.9),
    ("suspend|suspends|suspended|suspension", -0.5),
    ("halt|halts|halted", -0.5),
    ("outage", -0.5),
    ("investigate|investigates|investigated|investigation|probe", -0.4),
    ("reject|rejects|rejected|rejection", -0.5),
    ("warn|warns|warned|warning", -0.4),
    ("downgrade|downgrades|downgraded", -0.4),
    ("fear|fears", -0.3),
)
# A word just after one of these, or one word further, counts the other way, at half weight.
NEGATIONS = frozenset(
    {"not", "no", "never", "without", "fail", "fails", "failed"}
    | {"isn't", "wasn't", "won't", "doesn't", "didn't"}
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

_ENGLISH = {form: weight for forms, weight in ENGLISH_TERMS for form in forms.split("|")}
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
# Korean stems by their first syllable, longest first ("일시 중단" is one hit, not also "중단").
_KOREAN: dict[str, list[tuple[str, float]]] = {}
for _term, _weight in sorted(KOREAN_TERMS, key=lambda term: -len(term[0])):
    _KOREAN.setdefault(_term[0], []).append((_term, _weight))
_KOREAN_FIRST = re.compile("[" + "".join(_KOREAN) + "]")
_HANGUL = re.compile("[\uac00-\ud7a3]")
# Clause breaks: sentence ends, separators, and the conjunctions that turn a headline around.
_CLAUSES = re.compile(
    r"[.!?]+\s|[,;:|·…]|\s(?:while|but|as|whereas|although|amid)\s|반면|하지만|그러나",
    re.IGNORECASE,
)
_SUMMARY_CHARS = 600
_TITLE_WEIGHT = 1.0
_SUMMARY_WEIGHT = 0.5
_CONTEXT_WEIGHT = 0.5


def _clauses(text: str) -> list[tuple[int, int]]:
    """Each clause's (start, end) in `text`."""
    bounds: list[tuple[int, int]] = []
    position = 0
    for match in _CLAUSES.finditer(text):
        bounds.append((position, match.start()))
        position = match.end()
    bounds.append((position, len(text)))
    return bounds


def _hits(text: str, start: int, end: int, korean: bool) -> list[tuple[str, float]]:
    """The scored words of text[start:end], in order of kind: (word, weight after negation)."""
    hits = []
    before = previous = ""
    for match in _WORD.finditer(text, start, end):
        word = match.group(0).lower().replace("’", "'")
        pair = f"{previous} {word}"
        if pair in _ENGLISH:
            found, weight, negated = pair, _ENGLISH[pair], before in NEGATIONS
        elif word in _ENGLISH:
            found, weight = word, _ENGLISH[word]
            negated = previous in NEGATIONS or before in NEGATIONS
        else:
            before, previous = previous, word
            continue
        hits.append((found, -weight / 2 if negated else weight))
        before, previous = previous, word
    if korean:
        position = start
        while (syllable := _KOREAN_FIRST.search(text, position, end)) is not None:
            position = syllable.start()
            for term, weight in _KOREAN[text[position]]:
                if text.startswith(term, position, end):
                    hits.append((term, weight))
                    position += len(term) - 1
                    break
            position += 1
    return hits


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
        coins = set(item.coins)
        parts = [("title", item.title, _TITLE_WEIGHT)]
        if item.summary:
            parts.append(("summary", item.summary[:_SUMMARY_CHARS], _SUMMARY_WEIGHT))
        totals = dict.fromkeys(item.coins, 0.0)
        words: dict[str, list[str]] = {market: [] for market in item.coins}
        named_in_title: set[str] = set()
        for label, text, part_weight in parts:
            spans = self._tagger.spans(text)
            if label == "title":
                named_in_title = set(spans)
            korean = _HANGUL.search(text) is not None
            for start, end in _clauses(text):
                hits = _hits(text, start, end, korean)
                if not hits:
                    continue
                named = {
                    market
                    for market, found in spans.items()
                    if market in coins and any(start <= s < end for s, _ in found)
                }
                weight = part_weight * (1.0 if named else _CONTEXT_WEIGHT)
                for market in named or coins:
                    for word, value in hits:
                        totals[market] += value * weight
                        words[market].append(f"{word}({value * weight:+.2f} {label})")
        scores = []
        for market in item.coins:
            score = round(max(-1.0, min(1.0, totals[market])), 3)
            relevance = 1.0 if market in named_in_title else 0.6
            found = words[market]
            reason = "lexicon: " + (" ".join(found[:8]) if found else "no scored words")
            scores.append(CoinScore(market, score, relevance, reason, self.name))
        return scores
