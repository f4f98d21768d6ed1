"""News throughput: items per second through coin tagging and the lexicon scorer.

Data: SYNTHETIC headlines (no news corpus ships with the project): English and Korean
templates filled with the four coins' tickers and names, words the lexicon knows, neutral
words, lookalikes that must not be tagged ("SOLution", "Bitcoin Cash", "트리플") and clauses
about two coins, drawn with a fixed seed, each title made unique by a serial number; English
items carry a one-sentence summary.

Timed, over the same items in the same run (best of ``--repeats``):

* ``ours``: ``news.coins.CoinTagger.tag(title, summary)`` then
  ``news.scoring.LexiconScorer.score_item`` (word boundaries, excluded names, clauses per
  coin, negation), what ``news.service.NewsService`` does to each new item;
* ``naive``: the reference a first version would write: lower-case the text, tag a coin when
  any of its names is a substring, score by adding the weight of every lexicon stem that is a
  substring, no clauses, no boundaries;
* ``parse``: ``feedparser`` parsing the same items as one RSS 2.0 document (what a poll does
  before tagging), as items per second.

Reported: items/s of each, the ratios ours/naive and ours/parse, and how often the naive
reference agrees with ours (same coins; same sign of the score per coin): the price of the
boundaries and clauses, and what they change.

Latency (``--latency-runs N``, 0 to skip): from an item's arrival to the watchdog's sell order
leaving, p50/p99 over N runs, in the real engine (``app.wiring.open_services``: the paper
account, the journal, the bundled model, one held coin, KRW-XRP) with the news service
``app.news.build_news_service`` composes. Each run serves one new SYNTHETIC headline on the local
news server (tests/news_server.py, real RSS 2.0), re-arms the watchdog's sentiment level and
buys the coin back; the clock starts as the poll that fetches it starts (``poll_once``: the HTTP
fetch, parse, dedup, tagging, scoring, the journal sink) and stops when the paper exchange is
handed the market sell (``NewsWatch.check`` -> ``Engine.on_trigger`` -> the emergency exit ->
the risk guard). Not in it: the wait for the poll itself (up to ``LXA_NEWS_POLL_INTERVAL_S``,
and a source's floor, ``LXA_NEWS_FEED_MIN_INTERVAL_S``). Timed for:

* ``news_lexicon``: the lexicon alone scores (no LLM configured);
* ``news_llm``: the LLM scorer first, over the real Groq client against the local server that
  speaks Groq's protocol (tests/integration/llm_servers.py), answering at once: our overhead
  around an LLM call, not Groq's own latency (add that: a few hundred ms);
* ``tick`` (the reference, same engine, same run): a watchdog drop on ticks, the path
  bench/watchdog.py times live: from ``Engine.on_tick`` of the falling tick to the same sell
  handed to the paper exchange.

Run from the project root: ``.venv/bin/python bench/news.py [--items N] [--repeats R]
[--latency-runs N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import feedparser

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "tests" / "integration"):  # the local servers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from news.coins import DEFAULT_COIN_NAMES, CoinTagger  # noqa: E402
from news.items import NewsItem  # noqa: E402
from news.scoring import KOREAN_TERMS, LexiconScorer  # noqa: E402

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EN_COINS = ["Bitcoin", "BTC", "Ethereum", "ETH", "ether", "XRP", "Ripple", "Solana", "SOL"]
KO_COINS = ["비트코인", "이더리움", "리플", "솔라나"]
EN_MOVES = [
    "surges",
    "plunges",
    "rallies",
    "slumps",
    "rises",
    "falls",
    "hits record high",
    "crashes",
    "rebounds",
    "is steady",
    "does not crash",
    "faces lawsuit",
    "gains",
    "drops",
    "holds its range",
]
KO_MOVES = ["급등", "급락", "상승", "하락", "반등", "보합", "해킹 피해", "강세", "약세", "횡보"]
EN_CONTEXT = [
    "as ETF inflows jump",
    "amid regulatory fears",
    "after exchange hack",
    "on upgrade news",
    "ahead of the Fed meeting",
    "while traders wait",
    "",
]
LOOKALIKES = [
    "SOLution providers meet",
    "Bitcoin Cash jumps",
    "Ethereum Classic slides",
    "트리플 위칭데이 앞두고",
    "ETHos of open finance",
]
# The naive reference's words: English stems as plain substrings, the Korean terms as they are.
NAIVE_STEMS: dict[str, float] = {
    "surg": 0.7,
    "soar": 0.7,
    "rall": 0.6,
    "jump": 0.5,
    "gain": 0.4,
    "rise": 0.4,
    "climb": 0.4,
    "rebound": 0.4,
    "record high": 0.6,
    "approv": 0.5,
    "inflow": 0.4,
    "upgrade": 0.3,
    "crash": -0.8,
    "plung": -0.8,
    "tumbl": -0.6,
    "slump": -0.6,
    "drop": -0.4,
    "fall": -0.4,
    "declin": -0.4,
    "hack": -0.9,
    "exploit": -0.8,
    "lawsuit": -0.5,
    "fear": -0.3,
    "slide": -0.4,
    **dict(KOREAN_TERMS),
}
NAIVE_NAMES = {
    names.market: tuple(n.lower() for n in (*names.tickers, *names.english, *names.korean))
    for names in DEFAULT_COIN_NAMES
}


def synthetic_items(count: int, seed: int = 17) -> list[NewsItem]:
    """SYNTHETIC headlines: a fixed mix of English, Korean, two-coin and lookalike titles."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        roll = rng.random()
        summary = ""
        if roll < 0.45:
            title = f"{rng.choice(EN_COINS)} {rng.choice(EN_MOVES)} {rng.choice(EN_CONTEXT)}"
            summary = f"{rng.choice(EN_COINS)} {rng.choice(EN_MOVES)} in early trading."
        elif roll < 0.6:
            a, b = rng.sample(EN_COINS[::2], 2)
            title = f"{a} {rng.choice(EN_MOVES)} while {b} {rng.choice(EN_MOVES)}"
        elif roll < 0.9:
            title = f"{rng.choice(KO_COINS)} {rng.choice(KO_MOVES)}, {rng.choice(KO_COINS)} " + (
                rng.choice(KO_MOVES)
            )
        else:
            title = rng.choice(LOOKALIKES)
        # A serial number keeps every title unique, as real headlines are (no cache hits).
        title = f"{title.strip()} (no. {n})"
        items.append(NewsItem("synthetic", title, f"https://x.test/{n}", T0, summary=summary))
    return items


def ours(items: list[NewsItem], tagger: CoinTagger, scorer: LexiconScorer) -> list[Any]:
    out = []
    for item in items:
        coins = tagger.tag(item.title, item.summary)
        scores = scorer.score_item(item.with_coins(coins)) if coins else []
        out.append((coins, {s.market: s.score for s in scores}))
    return out


def naive(items: list[NewsItem]) -> list[Any]:
    out = []
    for item in items:
        text = f"{item.title} {item.summary}".lower()
        coins = tuple(m for m, names in NAIVE_NAMES.items() if any(n in text for n in names))
        total = sum(w for stem, w in NAIVE_STEMS.items() if stem in text)
        score = max(-1.0, min(1.0, total))
        out.append((coins, dict.fromkeys(coins, score)))
    return out


def as_rss(items: list[NewsItem]) -> bytes:
    rows = "".join(
        f"<item><title>{escape(i.title)}</title><link>{i.link}</link>"
        f"<pubDate>Tue, 01 Dec 2026 09:00:00 +0000</pubDate>"
        f"<description>{escape(i.summary)}</description></item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>synthetic</title><link>https://x.test</link>{rows}</channel></rss>"
    ).encode()


MARKET = "KRW-XRP"
LATENCY_PRICE = Decimal(20_000)  # KRW bought back before each run (each tick run loses 2%)


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _groq_answer(request_json: dict[str, Any]) -> Any:
    from llm_servers import Text

    user = request_json["messages"][-1]["content"]
    markets = json.loads(user.split("## Markets to score\n", 1)[1].split("\n", 1)[0])
    scores = [{"market": m, "score": -0.9, "relevance": 1.0, "reason": "bench"} for m in markets]
    return Text(json.dumps({"scores": scores}), prompt_tokens=150, completion_tokens=30)


async def _latencies(runs: int, workdir: Path) -> dict[str, list[float] | int]:
    """Item arrival to sell, scored by the lexicon and by the LLM, and the tick reference (ms),
    in one engine session."""
    from llm_servers import GroqServer
    from news_server import Feed, NewsServer, rss

    from app.engine.news import LiveNews
    from app.news import build_news_service
    from app.session import collect_closes
    from app.settings import Settings
    from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, open_services
    from exchange.types import OrderRequest, OrderType, Side
    from ml.data import load_candles
    from ml.features import WARMUP_BARS
    from ml.registry import latest_model_dir

    closes = await collect_closes(load_candles([BUNDLED_CANDLES]))
    timings: dict[str, list[float]] = {"news_lexicon": [], "news_llm": [], "tick": []}
    with NewsServer() as server, GroqServer(default=_groq_answer) as groq:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=workdir / "data",
            checkpoint_url="memory",
            model_dir=latest_model_dir(BUNDLED_MODELS),
            markets=[MARKET],
            news_feeds=[f"wire={server.url('/feed/')}"],
            groq_api_key="bench-key",
            groq_base_url=groq.base_url,
            llm_max_retries=0,
            daily_loss_limit_pct=50.0,  # the runs' small losses must not stop the buys
            monthly_loss_cap_pct=50.0,
        )
        sold_at: list[float] = []
        async with open_services(
            settings, session_id="bench", account_path=workdir / "account.json"
        ) as svc:
            engine, watchdog = svc.engine, svc.engine.watchdog
            assert watchdog is not None
            engine.warm_up(closes[:WARMUP_BARS])
            inner_place = svc.exchange.place_order

            async def timed_place(request: OrderRequest) -> Any:
                if request.side == Side.ASK:
                    sold_at.append(time.perf_counter())
                return await inner_place(request)

            async def buy(identifier: str) -> None:
                request = OrderRequest(
                    MARKET, Side.BID, OrderType.PRICE, identifier, price=LATENCY_PRICE
                )
                await engine.exchange.place_order(request)

            def took(path: str, start: float, sold: int) -> None:
                if len(sold_at) == sold:
                    raise RuntimeError(f"{path}: nothing was sold")
                timings[path].append((sold_at[-1] - start) * 1000)

            svc.exchange.place_order = timed_place  # type: ignore[method-assign]
            services = {
                "news_lexicon": build_news_service(
                    settings.model_copy(update={"news_scorer": "lexicon"}), journal=svc.journal
                ),
                "news_llm": build_news_service(settings, journal=svc.journal, meter=svc.meter),
            }
            base = closes[WARMUP_BARS].ts
            try:
                for run in range(runs):
                    for path, service in services.items():
                        watch = engine.attach_news(LiveNews(service), timedelta(hours=1))
                        await buy(f"bench-{path}-{run}")
                        now = datetime.now(UTC)
                        watchdog.on_sentiment(MARKET, 0.0, int(now.timestamp() * 1000))  # re-arm
                        title = f"XRP crashes after Ripple hack, exchanges halt XRP ({path} {run})"
                        link = f"https://news.test/bench-{path}-{run}"
                        server.serve("/feed/", Feed(rss([{"title": title, "link": link}])))
                        sold = len(sold_at)
                        start = time.perf_counter()
                        await service.poll_once(force=True)
                        await watch.check(datetime.now(UTC))
                        took(path, start, sold)
                    # The reference: a 2% fall on ticks (the watchdog's drop is 1%; the stop 3%).
                    await buy(f"bench-tick-{run}")
                    price = float(svc.exchange.marks()[MARKET])
                    ts = base + timedelta(minutes=10 * (run + 1))
                    await engine.on_tick(MARKET, ts, price, 0.1)
                    sold = len(sold_at)
                    start = time.perf_counter()
                    await engine.on_tick(MARKET, ts + timedelta(seconds=1), price * 0.98, 0.1)
                    took("tick", start, sold)
                    await engine.on_tick(MARKET, ts + timedelta(seconds=2), price, 0.1)
            finally:
                for service in services.values():
                    await service.aclose()
        calls = sum(1 for r in groq.chat_requests if "## Markets to score" in str(r.json))
    return {**timings, "llm_calls": calls}


def latency(runs: int) -> dict[str, Any]:
    """The lexicon's and the LLM's item-to-sell latencies and the tick reference, in ms."""
    logging.getLogger("app").setLevel(logging.ERROR)  # the sells' warnings, once per run
    with tempfile.TemporaryDirectory() as workdir:
        timings = asyncio.run(_latencies(runs, Path(workdir)))
    figures: dict[str, Any] = {"latency_runs": runs, "latency_llm_calls": timings["llm_calls"]}
    for name in ("news_lexicon", "news_llm", "tick"):
        values = timings[name]
        assert isinstance(values, list)
        figures[f"{name}_to_sell_p50_ms"] = round(percentile(values, 0.5), 3)
        figures[f"{name}_to_sell_p99_ms"] = round(percentile(values, 0.99), 3)
    for name in ("news_lexicon", "news_llm"):
        figures[f"ratio_{name}_vs_tick_p50"] = round(
            figures[f"{name}_to_sell_p50_ms"] / figures["tick_to_sell_p50_ms"], 2
        )
    return figures


def _sign(value: float) -> int:
    return (value > 1e-9) - (value < -1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=30, help="0: no latency runs")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()

    items = synthetic_items(args.items)
    tagger = CoinTagger()
    scorer = LexiconScorer(tagger)
    document = as_rss(items)
    ours(items[:200], tagger, scorer)  # regexes compiled, caches warm
    best = {"ours": float("inf"), "naive": float("inf"), "parse": float("inf")}
    ours_out: list[Any] = []
    naive_out: list[Any] = []
    parsed = 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours_out = ours(items, tagger, scorer)
        best["ours"] = min(best["ours"], time.perf_counter() - start)
        start = time.perf_counter()
        naive_out = naive(items)
        best["naive"] = min(best["naive"], time.perf_counter() - start)
        start = time.perf_counter()
        parsed = len(feedparser.parse(document).entries)
        best["parse"] = min(best["parse"], time.perf_counter() - start)

    same_coins = sum(a[0] == b[0] for a, b in zip(ours_out, naive_out, strict=True))
    pairs = [
        (_sign(a[1][m]), _sign(b[1][m]))
        for a, b in zip(ours_out, naive_out, strict=True)
        for m in set(a[1]) & set(b[1])
    ]
    rate = {name: len(items) / seconds for name, seconds in best.items()}
    result = {
        "data": "SYNTHETIC headlines (English and Korean templates, fixed seed)",
        "items": len(items),
        "tagged_items": sum(bool(o[0]) for o in ours_out),
        "coin_scores": sum(len(o[1]) for o in ours_out),
        "parsed_entries": parsed,
        "ours_items_per_s": round(rate["ours"]),
        "naive_items_per_s": round(rate["naive"]),
        "parse_items_per_s": round(rate["parse"]),
        "ratio_ours_vs_naive": round(rate["ours"] / rate["naive"], 3),
        "ratio_ours_vs_parse": round(rate["ours"] / rate["parse"], 3),
        "ours_us_per_item": round(best["ours"] / len(items) * 1e6, 2),
        "naive_same_coins": round(same_coins / len(items), 3),
        "naive_same_sign": round(sum(a == b for a, b in pairs) / max(len(pairs), 1), 3),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    if args.latency_runs > 0:
        result.update(latency(args.latency_runs))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['items']} SYNTHETIC items ({result['tagged_items']} tagged to a coin)")
    print(
        f"ours (tag + lexicon): {result['ours_items_per_s']:>9,} items/s "
        f"({result['ours_us_per_item']} us/item)"
    )
    print(f"naive substrings:     {result['naive_items_per_s']:>9,} items/s")
    print(f"feedparser parse:     {result['parse_items_per_s']:>9,} items/s")
    print(
        f"ratio ours/naive {result['ratio_ours_vs_naive']}, ours/parse "
        f"{result['ratio_ours_vs_parse']}; naive agrees on coins {result['naive_same_coins']:.1%},"
        f" on the sign {result['naive_same_sign']:.1%}"
    )
    if args.latency_runs > 0:
        print(f"item arrival (poll start) to the sell order, {args.latency_runs} runs each:")
        for name, label in (
            ("news_lexicon", "news, lexicon scorer"),
            ("news_llm", "news, LLM scorer (local Groq)"),
            ("tick", "reference: tick drop"),
        ):
            print(
                f"  {label:<30} p50 {result[f'{name}_to_sell_p50_ms']:>8.2f} ms"
                f"  p99 {result[f'{name}_to_sell_p99_ms']:>8.2f} ms"
            )
        print(
            f"  ratio to the tick path (p50): lexicon {result['ratio_news_lexicon_vs_tick_p50']},"
            f" LLM {result['ratio_news_llm_vs_tick_p50']}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
