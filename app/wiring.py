"""Composition root: build the engine and its services from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from app.alerts import AlertDispatcher, build_notifiers
from app.engine import Engine
from app.llm import build_reviewers
from app.settings import Settings
from exchange.paper import PaperExchange, SlippageModel
from exchange.risk import GuardedExchange, RiskGuard, RiskLimits, TradingState
from exchange.watchdog import Watchdog, WatchdogConfig
from graph.builder import build_graph
from graph.checkpoint import open_checkpointer
from graph.context import Context, TradingPolicy
from ml.predict import Predictor
from ml.registry import latest_model_dir
from store.bus import EventBus, InProcessBus
from store.journal import Journal, JournalResponseCache

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent / "demo"
BUNDLED_CANDLES = DEMO_DIR / "candles_upbit_1m_demo.parquet"
BUNDLED_MODELS = DEMO_DIR / "model"


class ModelNotFoundError(RuntimeError):
    """No model set where the settings point."""


def resolve_model_dir(settings: Settings) -> Path:
    """Pick the named model set, else the newest trained one, else the bundled demo model."""
    if settings.model_dir is not None:
        if not (settings.model_dir / "meta.json").is_file():
            raise ModelNotFoundError(f"LXA_MODEL_DIR={settings.model_dir} holds no model set")
        return settings.model_dir
    trained = latest_model_dir(settings.models_dir) if settings.models_dir.is_dir() else None
    if trained is not None:
        return trained
    bundled = latest_model_dir(BUNDLED_MODELS)
    if bundled is None:
        raise ModelNotFoundError("no model set found; run `lxa train --quick --candles FILE`")
    log.warning("no trained model under %s: using the bundled demo model", settings.models_dir)
    return bundled


def policy_from(settings: Settings, model_meta: dict[str, Any]) -> TradingPolicy:
    """Translate settings (and the model set's own thresholds) into the graph's limits."""
    thresholds = model_meta.get("decision_thresholds") or {}
    entry = settings.entry_probability_min
    if entry is None:  # 0.0 is a valid setting, so no `or` here
        entry = thresholds.get("entry_probability_min")
    exit_ = settings.exit_probability_min
    if exit_ is None:
        exit_ = thresholds.get("exit_probability_min")
    if entry is None or exit_ is None:
        raise ModelNotFoundError(
            f"model {model_meta.get('model_id')} carries no decision thresholds: set "
            "LXA_ENTRY_PROBABILITY_MIN and LXA_EXIT_PROBABILITY_MIN"
        )
    return TradingPolicy(
        entry_probability_min=float(entry),
        exit_probability_min=float(exit_),
        max_open_positions=settings.max_open_positions,
        risk_level=settings.risk_level,
        stop_loss_cap_pct=settings.stop_loss_cap_pct,
    )


@dataclass
class Services:
    """Everything one running engine holds open."""

    settings: Settings
    engine: Engine
    journal: Journal
    bus: EventBus
    exchange: PaperExchange
    predictor: Predictor


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    session_id: str,
    account_path: Path,
    journal_url: str | None = None,
    checkpointer_url: str | None = None,
    bus: EventBus | None = None,
) -> AsyncIterator[Services]:
    """Open the journal, paper account, model and checkpointer, and build the engine."""
    journal = Journal.open(journal_url or settings.journal_url)
    http, alerts = None, None
    try:
        http, alerts = await start_alerts(settings)
        account_path.parent.mkdir(parents=True, exist_ok=True)
        exchange = PaperExchange(
            account_path,
            initial_krw=settings.initial_capital_krw,
            slippage=SlippageModel(base_bps=settings.slippage_bps),
        )
        predictor = Predictor.load(resolve_model_dir(settings))
        event_bus = bus or InProcessBus()
        control = journal.read_trading_control()
        guard = RiskGuard(
            RiskLimits(
                daily_loss_limit_pct=settings.daily_loss_limit_pct,
                max_exposure_pct=settings.max_exposure_pct,
                max_position_pct=settings.max_position_pct,
            ),
            state=TradingState(control["state"]),
            reason=control.get("reason") or "",
        )
        # Orders are judged on the replay's clock, so a replayed day rolls like a real one.
        guarded = GuardedExchange(exchange, guard, marks=exchange.marks, clock=exchange.now)
        async with open_checkpointer(checkpointer_url or settings.checkpointer_url) as saver:
            reviewers = build_reviewers(settings, JournalResponseCache(journal))
            context = Context(
                signal_model=predictor,
                exchange=guarded,
                groq=reviewers.groq,
                ollama=reviewers.ollama,
                sizer=reviewers.sizer,
                policy=policy_from(settings, predictor.meta),
            )
            engine = Engine(
                graph=build_graph(saver),
                context=context,
                paper=exchange,
                exchange=guarded,
                watchdog=build_watchdog(settings),
                alerts=alerts,
                cooldown_s=settings.watchdog_cooldown_s,
                journal=journal,
                bus=event_bus,
                markets=list(settings.markets),
                session_id=session_id,
            )
            context.order_log = engine.order_log
            try:
                yield Services(settings, engine, journal, event_bus, exchange, predictor)
            finally:
                await engine.close()
    finally:
        if alerts is not None:
            await alerts.stop()
        if http is not None:
            await http.aclose()
        journal.close()


def build_watchdog(settings: Settings) -> Watchdog | None:
    """The emergency watchdog from settings, or None when disabled."""
    if not settings.watchdog_enabled:
        return None
    config = WatchdogConfig(
        drop_window_s=settings.watchdog_drop_window_s,
        drop_pct=settings.watchdog_drop_pct / 100,
        volume_spike_pct=settings.watchdog_volume_spike_pct / 100,
        sentiment_threshold=settings.watchdog_sentiment_threshold,
        network_failures=settings.watchdog_network_failures,
    )
    return Watchdog(settings.markets, config)


async def start_alerts(
    settings: Settings,
) -> tuple[httpx.AsyncClient | None, AlertDispatcher | None]:
    """Start Slack/Telegram alerting when configured."""
    client = httpx.AsyncClient(timeout=10.0)
    notifiers = build_notifiers(
        slack_webhook_url=_secret(settings.slack_webhook_url),
        telegram_bot_token=_secret(settings.telegram_bot_token),
        telegram_chat_id=settings.telegram_chat_id,
        telegram_api_base=settings.telegram_api_base,
        client=client,
    )
    if not notifiers:
        await client.aclose()
        return None, None
    dispatcher = AlertDispatcher(notifiers)
    await dispatcher.start()
    return client, dispatcher


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
