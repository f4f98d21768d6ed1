"""What the API is handed by the engine: runs, forks (time travel), the account; and its token."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from app.engine import Engine
from app.engine.news import LiveNews
from app.llm import groq_provider, ollama_provider
from app.settings import Settings
from app.wiring import Services
from exchange.feed import BarClose
from exchange.types import AccountSnapshot, OrderRejected, OrderRequest
from llm.cache import ResponseCache
from llm.news_scorer import NEWS_SENTIMENT_PROMPT, NEWS_SENTIMENT_VARIABLES
from llm.reviewers import REVIEW_VARIABLES, SIZING_VARIABLES, LLMReviewer, LLMSizer
from prompts.loader import OverlayPromptLibrary, PromptError

log = logging.getLogger(__name__)

TOKEN_FILE = "api_token"
LLM_NODES = ("groq_check", "ollama_check", "sizing")
PROMPT_VARIABLES: dict[str, frozenset[str]] = {
    "groq_check": frozenset(REVIEW_VARIABLES),
    "ollama_check": frozenset(REVIEW_VARIABLES),
    "sizing": frozenset(SIZING_VARIABLES),
    NEWS_SENTIMENT_PROMPT: NEWS_SENTIMENT_VARIABLES,  # the news scorer's (app/news.py)
}
FORK_NOTE = "the fork ran with orders disabled: `order` is what it WOULD have sent"


def api_token_for(settings: Settings) -> tuple[str, bool]:
    """Return the API token and whether it was just created.

    LXA_API_TOKEN wins; else `<data_dir>/api_token` is read, or created (mode 0600) with a new
    random token on first start.
    """
    if settings.api_token is not None:
        return settings.api_token.get_secret_value(), False
    path = settings.data_dir / TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)  # also when the file existed empty with other modes
    return token, True


def token_path(settings: Settings) -> Path:
    """Where a generated token is kept."""
    return settings.data_dir / TOKEN_FILE


class NoOrderExchange:
    """An exchange view for forks: reads pass through, every order is refused."""

    name = "no-orders"

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def get_account(self) -> AccountSnapshot:
        """Return the real account (reads are harmless)."""
        return await self._inner.get_account()

    async def get_order(self, identifier: str) -> Any:
        """Look an order up (reads are harmless)."""
        return await self._inner.get_order(identifier)

    async def open_orders(self, market: str | None = None) -> Any:
        """List open orders (reads are harmless)."""
        return await self._inner.open_orders(market)

    async def place_order(self, request: OrderRequest, **_: Any) -> Any:
        """Refuse: a fork never places an order."""
        raise OrderRejected("forks never place orders", identifier=request.identifier)

    async def cancel_order(self, identifier: str) -> Any:
        """Refuse: a fork never touches orders."""
        raise OrderRejected("forks never cancel orders", identifier=identifier)


def _prompt_ref(view: Mapping[str, Any] | None) -> str | None:
    call = (view or {}).get("call") or {}
    return call.get("prompt_ref") if isinstance(call, Mapping) else None


def outcome(
    run_id: str, decision: Mapping[str, Any], nodes: Mapping[str, Any], *, fork: bool
) -> dict[str, Any]:
    """One side of a replay comparison from a run's node outputs."""
    views = {node: nodes.get(node) for node in LLM_NODES}
    order = nodes.get("trade")
    proposal = (nodes.get("ml_signal") or {}).get("proposal") or {}
    would_trade = bool(order) and (order or {}).get("state") not in ("rejected",)
    action, reason = decision["action"], decision["reason"]
    if fork and order and order.get("state") == "not_sent":
        action = proposal.get("action", action)
        reason = "agreed: would place the order (forks never send one)"
    return {
        "run_id": run_id,
        "action": action,
        "market": decision.get("market"),
        "reason": reason,
        "groq": views["groq_check"],
        "ollama": views["ollama_check"],
        "sizing": views["sizing"],
        "order": order,
        "would_trade": would_trade,
        "prompt_refs": {node: _prompt_ref(view) for node, view in views.items()},
        "reviewers": {node: (view or {}).get("reviewer") for node, view in views.items()},
    }


def _utc(ts: datetime) -> datetime:
    """A journal time as UTC (SQLite gives it back without its zone)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _fork_nodes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ml_signal": {"proposal": values.get("proposal"), "signals": values.get("signals")},
        "groq_check": values.get("groq"),
        "ollama_check": values.get("ollama"),
        "sizing": values.get("sizing"),
        "trade": values.get("order"),
    }


Candle = tuple[datetime, float, float, float, float, float]
LIVE_BARS_KEPT = 14 * 24 * 60  # two weeks of minutes per market


class LiveBars:
    """The bars a live session's engine was given (warm-up candles, then the closes the
    feed built from trades), kept per market for the charts' OHLCV."""

    def __init__(self, kept: int = LIVE_BARS_KEPT) -> None:
        self._by_market: dict[str, deque[Candle]] = {}
        self._kept = kept

    def record(self, close: BarClose) -> None:
        """Keep each market's bar of one close (a minute already kept is skipped)."""
        for market, bar in close.bars.items():
            rows = self._by_market.setdefault(market, deque(maxlen=self._kept))
            ts = _utc(bar.ts)
            if rows and rows[-1][0] >= ts:
                continue
            rows.append((ts, bar.open, bar.high, bar.low, bar.close, bar.volume))

    def extend(self, closes: Iterable[BarClose]) -> None:
        """Keep many closes, oldest first."""
        for close in closes:
            self.record(close)

    def candles(self, market: str, since: datetime | None, until: datetime | None) -> list[Candle]:
        """Bars of `market` in [since, until), oldest first."""
        rows = self._by_market.get(market, ())
        low = None if since is None else _utc(since)
        high = None if until is None else _utc(until)
        return [
            row
            for row in rows
            if (low is None or row[0] >= low) and (high is None or row[0] < high)
        ]


@dataclass(frozen=True)
class ModelCatalog:
    """The model registry, read only, for the API (`GET /api/models`)."""

    settings: Settings

    def models(self) -> dict[str, Any]:
        """`lxa models --json` and the champions before the current one."""
        from app.models import list_models, registry_for

        found = list_models(self.settings)
        history = registry_for(self.settings).read_champion().get("history") or []
        return {**found, "history": list(history)}


@dataclass
class EngineBridge:
    """The engine as the API sees it: `Runner`, `Replayer` and `AccountSource` in one."""

    engine: Engine
    settings: Settings
    cache: ResponseCache | None = None
    # The candles a replay plays (market, ts, open, high, low, close, volume); None when live.
    bars: pd.DataFrame | None = None
    # A live session's bars (None in a replay, which has `bars`).
    live_bars: LiveBars | None = None
    _forks: int = field(default=0, init=False)
    _bars_by_market: dict[str, pd.DataFrame] = field(default_factory=dict, init=False)

    async def sell_now(self, market: str, reason: str) -> dict[str, Any]:
        """The operator's exit from `market` now, between bars (the engine's lock held)."""
        engine = self.engine
        if market not in engine.markets:
            raise ValueError(f"market {market} is not traded here (markets: {engine.markets})")
        # No entry into the market for the watchdog's cooldown, on bar time as its cooldowns.
        start = (
            engine.last_bar_ts + timedelta(minutes=1) if engine.last_bar_ts else datetime.now(UTC)
        )
        until = start + timedelta(seconds=engine.cooldown_s)
        async with engine._lock:  # never in the middle of a bar's orders
            try:
                order = await engine.control.sell_now(market, reason, until)
            except OrderRejected as exc:
                raise RuntimeError(f"the sell was refused: {exc.reason}") from exc
        return {
            "market": market,
            "identifier": order.identifier,
            "state": order.state.value,
            "volume": order.volume,
            "executed_volume": order.executed_volume,
            "avg_price": order.avg_price,
            "reason": reason,
            "cooldown_until": until,
        }

    def reviewers(self) -> dict[str, dict[str, Any]]:
        """Who answers each LLM node now: provider:model, or the rule-based stand-in."""
        context = self.engine.context
        found: dict[str, dict[str, Any]] = {}
        for node, role in (
            ("groq_check", context.groq),
            ("ollama_check", context.ollama),
            ("sizing", context.sizer),
        ):
            provider = role.provider if isinstance(role, LLMReviewer | LLMSizer) else None
            found[node] = {
                "kind": "rule_based" if provider is None else "llm",
                "label": str(getattr(role, "name", "rule-based")),
                "provider": None if provider is None else provider.name,
                "model": None if provider is None else provider.model,
            }
        return found

    def candles(
        self, market: str, since: datetime | None, until: datetime | None
    ) -> list[tuple[datetime, float, float, float, float, float]] | None:
        """The replayed (or live) bars of `market` up to the engine's last bar (None when
        neither is kept)."""
        if self.bars is None:
            if self.live_bars is None:
                return None
            last = self.engine.last_bar_ts
            if last is None:
                return []
            end = _utc(last) + timedelta(minutes=1)
            return self.live_bars.candles(
                market, since, end if until is None else min(_utc(until), end)
            )
        last = self.engine.last_bar_ts
        first = self.engine.journal.first_bar_ts(self.engine.session_id)
        if last is None or first is None:
            return []
        frame = self._bars_by_market.get(market)
        if frame is None:
            rows = self.bars[self.bars["market"] == market]
            frame = rows[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
            self._bars_by_market[market] = frame
        times = frame["ts"]
        low = max(_utc(first), _utc(since)) if since is not None else _utc(first)
        start = int(times.searchsorted(pd.Timestamp(low), side="left"))
        stop = int(times.searchsorted(pd.Timestamp(_utc(last)), side="right"))
        if until is not None:
            stop = min(stop, int(times.searchsorted(pd.Timestamp(_utc(until)), side="left")))
        chosen = frame.iloc[start:stop]
        return [
            (ts.to_pydatetime(), o, h, lo, c, v)
            for ts, o, h, lo, c, v in zip(
                chosen["ts"],
                chosen["open"].astype(float),
                chosen["high"].astype(float),
                chosen["low"].astype(float),
                chosen["close"].astype(float),
                chosen["volume"].astype(float),
                strict=True,
            )
        ]

    def news_sources(self) -> list[dict[str, Any]] | None:
        """The running news service's sources with their counters (None without one)."""
        watch = self.engine.news
        reader = None if watch is None else watch.reader
        if not isinstance(reader, LiveNews):
            return None
        service = reader.service
        stats = service.stats()
        return [
            {
                "name": source.name,
                "kind": source.kind,
                "url": source.url,
                "language": source.language,
                "min_interval_s": source.min_interval_s,
                **(stats[source.name].as_dict() if source.name in stats else {}),
            }
            for source in service.sources
        ]

    async def evaluate_now(self, market: str | None = None) -> str:
        """Start a manual run now (one market or all); return its id at once."""
        return await self.engine.evaluate_now(market)

    async def account(self) -> dict[str, Any]:
        """Free KRW, coin balances and equity at the latest closes, and marked positions."""
        snapshot, view = await self.engine.account_view()
        closes = self.engine.closes
        balances: list[dict[str, Any]] = [
            {"currency": "KRW", "balance": snapshot.krw, "locked": snapshot.krw_locked}
        ]
        positions: dict[str, dict[str, Any]] = {}
        for market, position in snapshot.positions.items():
            close = closes.get(market)
            value = position.volume * Decimal(str(close)) if close is not None else None
            balances.append(
                {
                    "currency": market.split("-", 1)[-1],
                    "balance": position.volume,
                    "locked": position.locked,
                    "avg_buy_price": position.avg_buy_price,
                    "value_krw": value.quantize(Decimal("0.01")) if value is not None else None,
                }
            )
            positions[market] = {**view["positions"].get(market, {}), "mark_price": close}
        return {
            "krw": snapshot.krw,
            "equity": snapshot.equity(closes).quantize(Decimal("0.01")),
            "balances": balances,
            "as_of": self.engine.last_bar_ts,
            "positions": positions,
        }

    def watchdog_state(self) -> dict[str, Any]:
        """Whether the watchdog runs, its thresholds, exchange health and the cooldowns."""
        watchdog = self.engine.watchdog
        return {
            "enabled": watchdog is not None,
            "config": dataclasses.asdict(watchdog.config) if watchdog is not None else {},
            "exchange_healthy": self.engine.exchange_healthy,
            "consecutive_failures": watchdog.consecutive_failures if watchdog else None,
            "cooldowns": {
                market: {"until": until, "detector": detector}
                for market, (until, detector) in self.engine.cooldowns.items()
            },
        }

    def daily_limit(self) -> dict[str, Any]:
        """The daily loss limit's figures as the guard holds them now (DailyLimitOut)."""
        snapshot = self.engine.guard.snapshot()
        return {
            "trading_day": snapshot["trading_day"],
            "start_equity": snapshot["day_start_equity"],
            "last_equity": snapshot["last_equity"],
            "loss_pct": snapshot["daily_loss_pct"],
            "limit_pct": snapshot["limits"]["daily_loss_limit_pct"],
            "breached": snapshot["daily_limit_breached"],
        }

    # Time travel ---------------------------------------------------------------------------
    def _fork_context(
        self, prompts: Mapping[str, str], models: Mapping[str, str], notes: list[str]
    ) -> Any:
        context = self.engine.context
        groq, ollama, sizer = context.groq, context.ollama, context.sizer
        if "groq" in models:
            if self.settings.groq_api_key is None:
                raise ValueError("groq is not configured (LXA_GROQ_API_KEY): no model to swap")
            provider = groq_provider(
                self.settings.model_copy(update={"groq_model": models["groq"]}), self.cache
            )
            library = groq.prompts if isinstance(groq, LLMReviewer) else None
            if library is None:  # pragma: no cover - a configured key always builds one
                raise ValueError("the groq check is not an LLM here")
            groq = LLMReviewer("groq_check", provider, library)
        if "ollama" in models:
            if self.settings.ollama_host is None:
                raise ValueError("ollama is not configured (LXA_OLLAMA_HOST): no model to swap")
            provider = ollama_provider(
                self.settings.model_copy(update={"ollama_model": models["ollama"]}), self.cache
            )
            library = ollama.prompts if isinstance(ollama, LLMReviewer) else None
            if library is None:  # pragma: no cover - a configured host always builds one
                raise ValueError("the ollama check is not an LLM here")
            ollama = LLMReviewer("ollama_check", provider, library)
        if prompts:
            try:
                if isinstance(groq, LLMReviewer):
                    groq = dataclasses.replace(
                        groq, prompts=OverlayPromptLibrary(groq.prompts, prompts)
                    )
                if isinstance(ollama, LLMReviewer):
                    ollama = dataclasses.replace(
                        ollama, prompts=OverlayPromptLibrary(ollama.prompts, prompts)
                    )
                if isinstance(sizer, LLMSizer):
                    sizer = dataclasses.replace(
                        sizer, prompts=OverlayPromptLibrary(sizer.prompts, prompts)
                    )
            except PromptError as exc:
                raise ValueError(str(exc)) from exc
            for name, role in (("groq_check", groq), ("ollama_check", ollama), ("sizing", sizer)):
                if name in prompts and not isinstance(role, LLMReviewer | LLMSizer):
                    notes.append(
                        f"{name} is rule-based here (no LLM configured): the edited "
                        f"{name} prompt is not used"
                    )
        return dataclasses.replace(
            context,
            groq=groq,
            ollama=ollama,
            sizer=sizer,
            exchange=NoOrderExchange(context.exchange),
            place_orders=False,
        )

    async def replay(
        self, run_id: str, prompts: Mapping[str, str], models: Mapping[str, str]
    ) -> dict[str, Any]:
        """Fork `run_id` from its checkpoint after `ml_signal` and run the rest without orders.

        The fork is a new thread seeded with that checkpoint's values (the original thread is
        left as it was), so both runs stay readable by their ids.
        """
        decision = self.engine.journal.get_decision(run_id)
        if decision is None:
            raise LookupError(f"run {run_id} not found")
        graph = self.engine.graph
        history = [
            snapshot
            async for snapshot in graph.aget_state_history({"configurable": {"thread_id": run_id}})
        ]
        start = next(
            (
                snapshot
                for snapshot in reversed(history)  # oldest first
                if "proposal" in snapshot.values and "groq" not in snapshot.values
            ),
            None,
        )
        if start is None:
            raise LookupError(
                f"run {run_id} has no checkpoint after ml_signal to fork from (checkpoints are "
                "kept by LXA_CHECKPOINT_URL; 'memory' loses them on restart)"
            )
        notes = [FORK_NOTE]
        context = self._fork_context(prompts, models, notes)
        self._forks += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        fork_id = f"{run_id}-fork-{stamp}-{self._forks}"
        fork_config = {"configurable": {"thread_id": fork_id}}
        values = {**start.values, "run_id": fork_id}
        await graph.aupdate_state(fork_config, values, as_node="ml_signal")
        proposal = start.values.get("proposal") or {}
        if proposal.get("action", "hold") == "hold":
            notes.append("the ML signal proposed hold: no LLM check runs, the fork holds too")
        bus = self.engine.bus
        checkpoint_id = str(start.config["configurable"].get("checkpoint_id", ""))
        bus.publish(
            {
                "type": "replay_started",
                "run_id": fork_id,
                "forked_from": run_id,
                "checkpoint_id": checkpoint_id,
            }
        )
        try:
            async for mode, chunk in graph.astream(
                None, fork_config, context=context, stream_mode=["updates", "custom", "tasks"]
            ):
                if mode == "custom":
                    bus.publish({**chunk, "run_id": fork_id})
                elif mode == "tasks":
                    if "input" in chunk:
                        bus.publish(
                            {"type": "node_started", "node": chunk["name"], "run_id": fork_id}
                        )
                else:
                    for node, update in chunk.items():
                        for item in (update or {}).get("events", []):
                            bus.publish({**item, "run_id": fork_id})
                        bus.publish({"type": "node_finished", "node": node, "run_id": fork_id})
        except Exception as exc:
            log.exception("fork %s of %s failed", fork_id, run_id)
            raise RuntimeError(f"the fork failed: {type(exc).__name__}: {exc}") from exc
        final = (await graph.aget_state(fork_config)).values
        fork_decision = final.get("decision") or {"action": "hold", "market": None, "reason": "?"}
        replayed = outcome(fork_id, fork_decision, _fork_nodes(final), fork=True)
        original = outcome(run_id, decision, decision.get("nodes") or {}, fork=False)
        bus.publish(
            {
                "type": "replay_finished",
                "run_id": fork_id,
                "forked_from": run_id,
                "action": replayed["action"],
                "market": replayed["market"],
                "reason": replayed["reason"],
            }
        )
        changed = (original["action"], original["market"], original["would_trade"]) != (
            replayed["action"],
            replayed["market"],
            replayed["would_trade"],
        )
        return {
            "run_id": run_id,
            "fork_id": fork_id,
            "forked_from_checkpoint": checkpoint_id,
            "forked_before": list(start.next),
            "original": original,
            "replayed": replayed,
            "changed": changed,
            "notes": notes,
        }


def create_api(
    services: Services,
    token: str,
    *,
    feed: str | None = None,
    bars: pd.DataFrame | None = None,
    live_bars: LiveBars | None = None,
) -> Any:
    """Build the API and viewer app over a running engine's services (`bars`: a replay's,
    `live_bars`: a live session's)."""
    from api.app import create_app
    from prompts.loader import DEFAULT_PROMPTS_DIR
    from store.journal import JournalResponseCache

    settings = services.settings
    bridge = EngineBridge(
        services.engine,
        settings,
        JournalResponseCache(services.journal),
        bars=bars,
        live_bars=live_bars,
    )
    local = settings.api_host in ("127.0.0.1", "localhost", "::1")
    return create_app(
        journal=services.journal,
        bus=services.bus,
        runner=bridge,
        replayer=bridge,
        account_source=bridge,
        api_token=token,
        prompts_dir=settings.prompts_dir or DEFAULT_PROMPTS_DIR,
        prompt_variables=PROMPT_VARIABLES,
        session_id=services.engine.session_id,
        markets=settings.markets,
        mode="live" if settings.live else "paper",
        feed=feed or f"live Upbit WebSocket ({getattr(settings, 'upbit_ws_url', 'upbit')})",
        reads_need_token=not local,
        bus_kind="redis" if settings.redis_url else "in-process",
        model_source=ModelCatalog(settings),
    )


@contextmanager
def open_api_alone(settings: Settings, token: str) -> Iterator[Any]:
    """Build the API and viewer alone, over the journal and LXA_REDIS_URL's event stream.

    For an engine running in another process: runs, replays and balances need the engine and
    answer 503; everything else works, live events included.
    """
    from api.app import create_app
    from app.wiring import build_bus
    from prompts.loader import DEFAULT_PROMPTS_DIR
    from store.journal import Journal

    local = settings.api_host in ("127.0.0.1", "localhost", "::1")
    with Journal.open(settings.journal_url) as journal:
        yield create_app(
            journal=journal,
            bus=build_bus(settings),
            api_token=token,
            prompts_dir=settings.prompts_dir or DEFAULT_PROMPTS_DIR,
            prompt_variables=PROMPT_VARIABLES,
            markets=settings.markets,
            feed="the engine's, in another process",
            reads_need_token=not local,
            bus_kind="redis",
            model_source=ModelCatalog(settings),
        )
