"""Composition root: build the engine and its services from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alerts.dispatcher import AlertDispatcher
from alerts.types import Alert
from app.alerting import start_alerts
from app.engine import Engine
from app.engine.ledger import JournaledExchange, Ledger
from app.engine.models import LoadedModel, ModelSwitch
from app.engine.venue import Outbox
from app.llm import Reviewers, build_meter, build_reviewers
from app.settings import Settings, SettingsError
from exchange.orders import OrderManager
from exchange.paper import PaperExchange, SlippageModel
from exchange.reconcile import ReconcileReport, reconcile
from exchange.risk import GuardedExchange, RiskGuard, RiskLimits, TradingState
from exchange.rules import FEE_RATE
from exchange.types import Exchange, ExchangeError
from exchange.upbit import UpbitExchange
from exchange.watchdog import Watchdog, WatchdogConfig
from graph.builder import build_graph
from graph.checkpoint import open_checkpointer
from graph.context import Context, TradingPolicy
from llm.cost import CallMeter
from ml.anomaly import AnomalyModel, BarAnomalyScorer
from ml.champion import CHAMPION_FILE, ModelRegistry
from ml.predict import Predictor
from ml.registry import META_FILE, latest_model_dir
from policy.evidence import model_evidence
from policy.params import PolicyParams, PolicyParamsError
from store.bus import EventBus, InProcessBus
from store.journal import Journal, JournalResponseCache

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent / "demo"
BUNDLED_CANDLES = DEMO_DIR / "candles_upbit_1m_demo.parquet"
BUNDLED_MODELS = DEMO_DIR / "model"


class ModelNotFoundError(RuntimeError):
    """No model set where the settings point."""


class LiveTradingRefused(RuntimeError):
    """Live trading cannot start: Upbit and the journal disagree, or Upbit cannot be read."""

    def __init__(self, message: str, report: ReconcileReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def resolve_model_dir(settings: Settings) -> Path:
    """Pick the named model set, else the registry's champion, else the newest trained one,
    else the bundled demo model."""
    if settings.model_dir is not None:
        if not (settings.model_dir / "meta.json").is_file():
            raise ModelNotFoundError(f"LXA_MODEL_DIR={settings.model_dir} holds no model set")
        return settings.model_dir
    champion = ModelRegistry(settings.models_dir).champion_dir()
    if champion is not None:
        return champion
    trained = latest_model_dir(settings.models_dir) if settings.models_dir.is_dir() else None
    if trained is not None:
        return trained
    bundled = latest_model_dir(BUNDLED_MODELS)
    if bundled is None:
        raise ModelNotFoundError("no model set found; run `lxa train --quick --candles FILE`")
    log.warning("no trained model under %s: using the bundled demo model", settings.models_dir)
    return bundled


def policy_params_from(settings: Settings, model_meta: dict[str, Any]) -> PolicyParams:
    """The trading policy's parameters: LXA_POLICY_* settings and the model's label horizon."""
    horizon = int((model_meta.get("label") or {}).get("horizon", 10))
    min_hold = settings.policy_min_hold_minutes
    if min_hold is not None and min_hold < horizon:
        raise SettingsError(
            f"invalid settings:\n  LXA_POLICY_MIN_HOLD_MINUTES: {min_hold} is shorter than the "
            f"model's label horizon of {horizon} minutes (the forecast is for that long)"
        )
    try:
        return PolicyParams(
            horizon_minutes=horizon,
            fee_rate=float(FEE_RATE),
            slippage_bps=settings.slippage_bps,
            entry_margin_bps=settings.policy_entry_margin_bps,
            exit_margin_bps=settings.policy_exit_margin_bps,
            min_hold_minutes=min_hold if min_hold is not None else horizon,
            max_hold_minutes=settings.policy_max_hold_minutes,
            reentry_pause_minutes=settings.policy_reentry_pause_minutes,
            max_entries_per_day=settings.policy_max_entries_per_day,
            max_open_positions=settings.max_open_positions,
            daily_loss_limit_pct=settings.daily_loss_limit_pct,
            monthly_loss_cap_pct=settings.monthly_loss_cap_pct,
        )
    except PolicyParamsError as exc:
        raise SettingsError(f"invalid settings:\n  LXA_POLICY_*: {exc}") from None


def policy_from(settings: Settings, model_meta: dict[str, Any]) -> TradingPolicy:
    """Translate settings (and the model set's label) into the graph's policy and limits."""
    return TradingPolicy(
        rules=policy_params_from(settings, model_meta),
        risk_level=settings.risk_level,
        stop_loss_cap_pct=settings.stop_loss_cap_pct,
    )


def model_status(settings: Settings, meta: dict[str, Any]) -> dict[str, Any]:
    """The model set in use, whether its policy has shown an edge, and what follows from it.

    A set whose own hold-out result is not positive after fees is "unproven": live trading
    refuses its entries unless LXA_ALLOW_UNPROVEN_MODEL (`--allow-unproven-model`) is set, which
    is recorded; paper trading goes on and says so.
    """
    evaluation = meta.get("policy_evaluation")
    ok, verdict = model_evidence(evaluation)
    strategy = (evaluation or {}).get("strategy") or {}
    return {
        "model_id": meta.get("model_id"),
        "proven": ok,
        "verdict": verdict,
        "live": settings.live,
        "allow_unproven_model": settings.allow_unproven_model,
        "block_entries": settings.live and not ok and not settings.allow_unproven_model,
        "evaluation_window": (evaluation or {}).get("window"),
        "evaluation_return": strategy.get("total_return"),
        "evaluation_entries": strategy.get("entries"),
        "buy_and_hold_return": (evaluation or {}).get("buy_and_hold_return"),
        "created_at": meta.get("created_at"),
        "max_age_days": settings.model_max_age_days,
    }


def load_model(settings: Settings, model_dir: Path) -> LoadedModel:
    """A model set with the policy and status it implies (the engine's switch calls this)."""
    predictor = Predictor.load(model_dir)
    return LoadedModel(
        predictor, policy_from(settings, predictor.meta), model_status(settings, predictor.meta)
    )


def champion_switch(settings: Settings, current_id: str) -> ModelSwitch | None:
    """Follow the registry's champion, unless LXA_MODEL_DIR pins a set (then None)."""
    if settings.model_dir is not None:
        return None
    registry = ModelRegistry(settings.models_dir)
    return ModelSwitch(
        current_id,
        registry.champion_dir,
        lambda path: load_model(settings, path),
        pointer=settings.models_dir / CHAMPION_FILE,
    )


@dataclass
class Services:
    """Everything one running engine holds open."""

    settings: Settings
    engine: Engine
    journal: Journal
    bus: EventBus
    exchange: PaperExchange | UpbitExchange  # the venue: paper, or Upbit when LXA_LIVE
    predictor: Predictor
    meter: CallMeter  # the LLM calls' tokens, money and latency


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    session_id: str,
    account_path: Path,
    journal_url: str | None = None,
    checkpointer_url: str | None = None,
    bus: EventBus | None = None,
    reviewers: Reviewers | None = None,
    meter: CallMeter | None = None,
) -> AsyncIterator[Services]:
    """Open the journal, account, model and checkpointer, and build the engine.

    The account is the paper one, or with `settings.live` Upbit's, reached through the order
    manager after a reconciliation that must agree (else `LiveTradingRefused`). `reviewers`
    replaces the configured checks and sizer (a backtest's stand-ins).
    """
    journal = Journal.open(journal_url or settings.journal_url)
    http, alerts = None, None
    live: UpbitExchange | None = None
    try:
        http, alerts = await start_alerts(settings)
        exchange: PaperExchange | UpbitExchange
        inner: Exchange
        if settings.live:
            live, inner = await open_live_exchange(settings, journal)
            exchange = live
        else:
            account_path.parent.mkdir(parents=True, exist_ok=True)
            exchange = inner = PaperExchange(
                account_path,
                initial_krw=settings.initial_capital_krw,
                slippage=SlippageModel(base_bps=settings.slippage_bps),
            )
        predictor = Predictor.load(resolve_model_dir(settings))
        event_bus = bus or build_bus(settings)
        control = journal.read_trading_control()
        guard = RiskGuard(
            RiskLimits(
                daily_loss_limit_pct=settings.daily_loss_limit_pct,
                monthly_loss_cap_pct=settings.monthly_loss_cap_pct,
                max_exposure_pct=settings.max_exposure_pct,
                max_position_pct=settings.max_position_pct,
            ),
            state=TradingState(control["state"]),
            reason=control.get("reason") or "",
        )
        if isinstance(inner, OrderManager):
            inner.on_blocked = _halt_on_block(journal, guard, alerts)
        # Orders are judged on the replay's clock, so a replayed day rolls like a real one.
        guarded = GuardedExchange(inner, guard, marks=exchange.marks, clock=exchange.now)
        outbox = Outbox(journal, event_bus, alerts)
        ledger = Ledger(
            journal,
            exchange,
            outbox,
            fee_rate=FEE_RATE,
            restore_stop_loss_pct=Decimal(str(settings.stop_loss_cap_pct)),
        )
        journaled = JournaledExchange(guarded, ledger)
        async with open_checkpointer(checkpointer_url or settings.checkpointer_url) as saver:
            meter = meter or build_meter(settings, on_spent=_alert_budget(alerts))
            reviewers = reviewers or build_reviewers(settings, JournalResponseCache(journal), meter)
            context = Context(
                signal_model=predictor,
                exchange=journaled,
                groq=reviewers.groq,
                ollama=reviewers.ollama,
                sizer=reviewers.sizer,
                policy=policy_from(settings, predictor.meta),
            )
            engine = Engine(
                graph=build_graph(saver),
                context=context,
                venue=exchange,
                exchange=journaled,
                ledger=ledger,
                outbox=outbox,
                watchdog=build_watchdog(settings, _anomaly_path(predictor)),
                cooldown_s=settings.watchdog_cooldown_s,
                outage_reducing_after_s=settings.outage_reducing_after_s,
                markets=list(settings.markets),
                session_id=session_id,
                models=champion_switch(settings, predictor.model_id),
            )
            engine.announce_model(model_status(settings, predictor.meta))
            try:
                yield Services(settings, engine, journal, event_bus, exchange, predictor, meter)
            except Exception as exc:  # a fatal stop: say so where the trader looks
                if alerts is not None:
                    alerts.publish(
                        Alert(
                            kind="error",
                            title="lxa stopped",
                            text=f"{type(exc).__name__}: {exc}"[:500],
                        )
                    )
                raise
            finally:
                await engine.close()
    finally:
        if live is not None:
            await live.aclose()
        if alerts is not None:
            await alerts.stop()
        if http is not None:
            await http.aclose()
        journal.close()


async def open_live_exchange(
    settings: Settings, journal: Journal
) -> tuple[UpbitExchange, OrderManager]:
    """Connect to Upbit, reconcile with the journal, and return the venue and order manager.

    Raises `LiveTradingRefused` naming every difference when the two do not agree, or when
    Upbit cannot be read. Nothing is sent while reconciling.
    """
    venue = _connect_upbit(settings)
    try:
        manager = OrderManager(
            venue, journal, max_slippage_bps=Decimal(str(settings.live_max_slippage_bps))
        )
        report = await _reconcile_recorded(manager, journal, settings, adopt=False)
        if not report.ok:
            raise LiveTradingRefused(
                "refusing to trade live: Upbit and the journal differ. " + report.summary(),
                report,
            )
        venue.initial_krw = (await venue.get_account()).equity({})
        for market in settings.markets:  # read the rules now, not on the first (urgent) order
            await venue.rules(market)
        if settings.order_lane and not await venue.client.open_lane():
            log.warning("order lane not open yet: emergency sells use the pooled client meanwhile")
    except BaseException:
        await venue.aclose()
        raise
    log.info("live trading on %s: %s", settings.upbit_rest_url, report.summary())
    return venue, manager


def _connect_upbit(settings: Settings) -> UpbitExchange:
    access, secret = settings.upbit_access_key, settings.upbit_secret_key
    if access is None or secret is None:
        raise LiveTradingRefused("live trading needs LXA_UPBIT_ACCESS_KEY and LXA_UPBIT_SECRET_KEY")
    return UpbitExchange.connect(
        settings.upbit_rest_url,
        access_key=access,
        secret_key=secret,
        timeout_s=settings.upbit_timeout_s,
    )


async def _reconcile_recorded(
    manager: OrderManager, journal: Journal, settings: Settings, *, adopt: bool
) -> ReconcileReport:
    """Reconcile Upbit with the journal and journal the report (`LiveTradingRefused` if unread)."""
    try:
        report = await reconcile(manager, journal, markets=list(settings.markets), adopt=adopt)
    except ExchangeError as exc:
        raise LiveTradingRefused(
            f"refusing to trade live: Upbit could not be read to reconcile ({exc})"
        ) from None
    journal.record_event(
        None,
        "reconciliation",
        report.as_dict(),
        datetime.now(UTC),
    )
    return report


async def reconcile_upbit(settings: Settings, *, adopt: bool) -> ReconcileReport:
    """`lxa reconcile`: compare Upbit with the journal (and adopt its balances if asked).

    Sends no order. Settles what the journal's fills lack and rebuilds positions from fills;
    `adopt` records each balance the fills cannot explain as an adoption fill.
    """
    journal = Journal.open(settings.journal_url)
    try:
        venue = _connect_upbit(settings)
        try:
            manager = OrderManager(venue, journal)
            return await _reconcile_recorded(manager, journal, settings, adopt=adopt)
        finally:
            await venue.aclose()
    finally:
        journal.close()


def _alert_budget(alerts: AlertDispatcher | None) -> Callable[[str], None]:
    """Alert once a day when the LLM budget is spent (the reviewers hold until midnight KST)."""

    def spent(reason: str) -> None:
        if alerts is not None:
            alerts.publish(Alert(kind="error", title="LLM budget spent", text=reason))

    return spent


def _halt_on_block(
    journal: Journal, guard: RiskGuard, alerts: AlertDispatcher | None
) -> Callable[[str], None]:
    """Halt trading at once when Upbit blocks the client (418), journal it and alert."""

    def halt(reason: str) -> None:
        if guard.manual_state is TradingState.HALTED:
            return
        guard.set_state(TradingState.HALTED, reason)
        journal.write_trading_control("halted", reason, by="engine")
        if alerts is not None:
            alerts.publish(Alert(kind="halt", title="Upbit blocked this client (418)", text=reason))

    return halt


def build_bus(settings: Settings) -> EventBus:
    """Return a Redis Stream bus when LXA_REDIS_URL is set (processes share it), else in-process."""
    if settings.redis_url:
        from store.redis_bus import RedisBus

        return RedisBus(settings.redis_url)
    return InProcessBus()


def watchdog_config(settings: Settings) -> WatchdogConfig | None:
    """The watchdog's thresholds from settings, or None when it is disabled."""
    if not settings.watchdog_enabled:
        return None
    return WatchdogConfig(
        drop_window_s=settings.watchdog_drop_window_s,
        drop_pct=settings.watchdog_drop_pct / 100,
        volume_spike_pct=settings.watchdog_volume_spike_pct / 100,
        sentiment_threshold=settings.watchdog_sentiment_threshold,
        network_failures=settings.watchdog_network_failures,
        anomaly_threshold=settings.watchdog_anomaly_score,
    )


def build_watchdog(settings: Settings, anomaly_path: Path | None = None) -> Watchdog | None:
    """The emergency watchdog from settings, or None when disabled.

    `anomaly_path` is the model set's exported autoencoder (full model sets have one); the
    autoencoder detector is off without it.
    """
    config = watchdog_config(settings)
    if config is None:
        return None
    anomaly = BarAnomalyScorer(AnomalyModel.load(anomaly_path)) if anomaly_path else None
    return Watchdog(settings.markets, config, anomaly)


def _anomaly_path(predictor: Any) -> Path | None:
    """The autoencoder weights of a full model set, or None (quick sets have none)."""
    path = getattr(predictor, "anomaly_path", None)
    return path if isinstance(path, Path) and path.exists() else None


def with_default_model(settings: Settings) -> Settings:
    """Point settings that name no model set at the bundled demo model (the demo's default)."""
    if settings.model_dir:
        return settings
    return settings.model_copy(update={"model_dir": latest_model_dir(BUNDLED_MODELS)})


def load_predictor(path: Path) -> Predictor:
    """Load a model set directory, or the newest set in a models directory."""
    model_dir = path if (path / META_FILE).is_file() else latest_model_dir(path)
    if model_dir is None:
        raise FileNotFoundError(f"no model set in {path}")
    return Predictor.load(model_dir)
