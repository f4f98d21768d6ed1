"""Trading control: the operator's halt, resume and flatten, the loss limits, what bars entries.

The operator writes the trading state to the journal (`lxa halt`, `lxa resume`, the API); the
engine applies it at the next bar. The daily loss limit and the monthly loss cap live in the
risk guard (`exchange.risk`); the cap's figures are kept in the journal across restarts, and an
operator's resume written after a breach clears it. Entries into a market are barred while the
state is not active, while the exchange does not answer, during a watchdog cooldown, or for
every market when an unproven model trades live.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.engine.emergency import ExchangeHealth
from app.engine.ledger import JournaledExchange, Ledger
from app.engine.venue import Outbox, TradingVenue, now
from exchange.risk import RiskGuard, TradingState
from exchange.types import Order, OrderRequest, OrderType, Side
from store.journal import Journal

MONTHLY = "monthly"  # the loss-limit row the monthly cap's figures are kept in


def monthly_key(figures: Mapping[str, Any]) -> dict[str, Any]:
    """What makes the monthly figures worth writing again: period, start, breach, 0.1% steps."""
    loss = figures.get("loss_pct")
    return {
        "month": figures.get("month"),
        "start_equity": figures.get("start_equity"),
        "breached": bool(figures.get("breached")),
        "loss_step": None if loss is None else math.floor(float(loss) * 10),
    }


@dataclass
class TradingControl:
    """Applies the operator's choices and the loss limits; says why entries are barred."""

    journal: Journal
    exchange: JournaledExchange
    venue: TradingVenue
    ledger: Ledger
    outbox: Outbox
    health: ExchangeHealth
    session_id: str
    cooldowns: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    # Why no entry may be made at all (an unproven model trading live), else None.
    entry_block: str | None = None
    model_status: dict[str, Any] = field(default_factory=dict)
    _monthly_written: dict[str, Any] = field(init=False, default_factory=dict)
    _monthly_seen_at: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        control = self.journal.read_trading_control()
        self.guard.set_state(TradingState(control["state"]), control.get("reason") or "")
        saved = self.journal.read_loss_limit(MONTHLY) or {}
        self.guard.restore_monthly(saved)
        self._monthly_written = monthly_key(saved)
        self._monthly_seen_at = saved.get("seen_at") if saved.get("breached") else None

    @property
    def guard(self) -> RiskGuard:
        """The risk guard every order passes."""
        guard: RiskGuard = self.exchange.guard
        return guard

    def halt_blocked(self, reason: str) -> None:
        """Upbit blocked this client (418): halt, save it in the journal, alert; once."""
        if self.guard.manual_state is TradingState.HALTED:
            return
        self.guard.set_state(TradingState.HALTED, reason)
        self.outbox.deferred.run(
            "trading control",
            lambda: self.journal.write_trading_control("halted", reason, by="engine"),
        )
        self.outbox.alert("halt", "Upbit blocked this client (418)", reason)

    def cool_down(self, markets: list[str], until: datetime, detector: str) -> None:
        """No entry into `markets` before `until` (a watchdog trigger's cooldown)."""
        for market in markets:
            self.cooldowns[market] = (until, detector)

    def blocked_reason(self, market: str, at: datetime) -> str | None:
        """Why entries into `market` are refused at `at`, or None."""
        if self.entry_block is not None:
            return self.entry_block
        if self.guard.state is not TradingState.ACTIVE:
            return f"trading {self.guard.state.value}: {self.guard.reason}"
        if not self.health.healthy:
            return "exchange unreachable"
        cooldown = self.cooldowns.get(market)
        if cooldown is not None:
            until, detector = cooldown
            if at < until:
                return f"cooldown after {detector} until {until.isoformat()}"
            del self.cooldowns[market]
        return None

    def announce_model(self, status: Mapping[str, Any]) -> None:
        """Journal and publish the model set in use and whether its policy has shown an edge.

        With `status["block_entries"]`, no entry is proposed for any market (an unproven model
        trading live without the operator's override).
        """
        self.model_status = dict(status)
        self.entry_block = (
            f"unproven model: {status.get('verdict')}; live entries need --allow-unproven-model"
            if status.get("block_entries")
            else None
        )
        self.outbox.record(None, "model_status", self.model_status)
        self.outbox.publish({"type": "model_status", **self.model_status})
        if not status.get("proven"):
            detail = str(status.get("verdict"))
            if status.get("block_entries"):
                self.outbox.alert("error", "live entries refused: unproven model", detail)
            elif status.get("live"):
                self.outbox.alert(
                    "error", "trading live with an unproven model (overridden)", detail
                )

    async def sync(self, ts: datetime, closes: Mapping[str, float]) -> None:
        """Apply a halt, resume or flatten written by `lxa halt` or the API."""
        control = self.journal.read_trading_control()
        await self._resume_monthly_if_asked(control, ts, closes)
        guard = self.guard
        # Compare with the operator's choice, not the effective state: a breached daily limit
        # makes the guard "reducing" while the journal still says "active".
        if control["state"] != guard.manual_state.value:
            previous = guard.state
            guard.set_state(TradingState(control["state"]), control.get("reason", ""))
            self.outbox.publish(
                {
                    "type": "trading_state",
                    "state": guard.state.value,
                    "previous": previous.value,
                    "reason": guard.reason,
                }
            )
            kind = "halt" if guard.state is TradingState.HALTED else "resume"
            self.outbox.alert(kind, f"trading {guard.state.value}", guard.reason)
            if guard.state is TradingState.HALTED:
                await self.exchange.cancel_all()
        if control.get("flatten_requested"):
            await self.exchange.cancel_all()  # coins locked by resting sells cannot be sold
            stamp = ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            orders = await self.exchange.flatten(
                identifier_prefix=f"lxa-{self.session_id}-{stamp}-flatten"
            )
            for order in orders:
                await self.ledger.record_fills(None, order, None, reason="flatten")
            self.journal.clear_flatten_request()
            self.outbox.alert("halt", "positions flattened", f"{len(orders)} sell order(s)")

    async def sell_now(
        self, market: str, reason: str, cooldown_until: datetime | None = None
    ) -> Order:
        """The operator's exit from one market now (the viewer's "sell now"), outside the graph.

        Its resting orders are cancelled, then the whole free volume is market-sold through the
        guard as a flatten (allowed in every state); the fills are settled with the reason
        `operator`, journaled as an `operator_sell` event, published and alerted. With
        `cooldown_until`, no entry into `market` before then (the policy would otherwise buy
        it back at the next bar). Raises LookupError when nothing is held in `market`; the
        guard's refusal (OrderRejected) propagates with its reason.
        """
        for resting in await self.exchange.open_orders(market):
            await self.exchange.cancel_order(resting.identifier)
        account = await self.venue.get_account()
        position = account.positions.get(market)
        free = position.volume - position.locked if position is not None else Decimal(0)
        if position is None or free <= 0:
            raise LookupError(f"no position in {market} to sell")
        stamp = now().astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        request = OrderRequest(
            market=market,
            side=Side.ASK,
            ord_type=OrderType.MARKET,
            # `-flatten-`: the trades read it as the operator's exit (store/journal/trades.py)
            identifier=f"lxa-{self.session_id}-{stamp}-flatten-{market}",
            volume=free,
        )
        order = await self.exchange.place_order(request, "flatten")
        await self.ledger.record_fills(None, order, None, reason="operator")
        if cooldown_until is not None:
            self.cool_down([market], cooldown_until, "operator")
        payload = {
            "market": market,
            "identifier": order.identifier,
            "state": order.state.value,
            "volume": str(free),
            "executed_volume": str(order.executed_volume),
            "avg_price": None if order.avg_price is None else str(order.avg_price),
            "reason": reason,
            "cooldown_until": None if cooldown_until is None else cooldown_until.isoformat(),
        }
        self.outbox.record(None, "operator_sell", payload)
        self.outbox.publish({"type": "operator_sell", **payload})
        if order.executed_volume <= 0:
            self.outbox.alert("error", f"{market}: the operator's sell did not fill", reason)
        return order

    async def _resume_monthly_if_asked(
        self, control: Mapping[str, Any], ts: datetime, closes: Mapping[str, float]
    ) -> None:
        """An operator's resume written after the monthly cap was breached clears the breach."""
        seen_at = self._monthly_seen_at
        updated_at = control.get("updated_at")
        if not self.guard.monthly_cap_breached or seen_at is None or updated_at is None:
            return
        if control["state"] != TradingState.ACTIVE.value or control.get("updated_by") == "engine":
            return
        if updated_at <= datetime.fromisoformat(str(seen_at)):
            return
        account = await self.venue.get_account()
        equity = account.equity(dict(closes))
        reason = self.guard.reason
        self.guard.resume_monthly(equity, ts + timedelta(minutes=1))
        self._save_monthly(resumed_by=str(control.get("updated_by")))
        payload = {"state": self.guard.state.value, "cleared": reason, "start_equity": str(equity)}
        self.outbox.record(None, "monthly_cap_resumed", payload)
        self.outbox.publish({"type": "monthly_cap_resumed", **payload})
        text = f"counting again from {equity:.0f}"
        self.outbox.alert("resume", "monthly loss cap cleared by the operator", text)

    async def check_limits(self, at: datetime, closes: Mapping[str, float]) -> None:
        """Observe the equity at the closes: the daily limit, the monthly cap, the day's summary."""
        account = await self.venue.get_account()
        equity = account.equity(dict(closes))
        guard = self.guard
        day_before, start_before = guard.trading_day, guard.day_start_equity
        before = guard.state
        after = guard.on_equity(equity, at)
        if day_before is not None and guard.trading_day != day_before and start_before:
            change = float(equity / start_before - 1) * 100
            self.outbox.alert(
                "daily_summary",
                f"trading day {day_before.isoformat()} closed",
                f"equity {equity:.0f} KRW ({change:+.2f}% on the day)",
                fields={"positions": ", ".join(sorted(account.positions)) or "none"},
            )
        if after is not before:
            payload = {"state": after.value, "previous": before.value, "reason": guard.reason}
            self.outbox.record(None, "trading_state", payload)
            self.outbox.publish({"type": "trading_state", **payload})
            self.outbox.alert("trading_state", f"trading {after.value}", guard.reason)
        self._save_monthly()

    def _save_monthly(self, *, resumed_by: str | None = None) -> None:
        """Write the monthly cap's figures when they change (period, start, breach, 0.1% steps)."""
        figures = self.guard.monthly_snapshot()
        if figures["month"] is None:
            return
        key = monthly_key(figures)
        if key == self._monthly_written and resumed_by is None:
            return
        if figures["breached"]:
            # Wall time the breach was seen: a resume written after it clears it (bar times of
            # a replay cannot be compared with the operator's clock).
            self._monthly_seen_at = self._monthly_seen_at or now().isoformat()
        else:
            self._monthly_seen_at = None
        figures["seen_at"] = self._monthly_seen_at
        if resumed_by is not None:
            figures["resumed_at"] = now().isoformat()
            figures["resumed_by"] = resumed_by
        self.journal.write_loss_limit(MONTHLY, figures)
        self._monthly_written = key
