"""Hard risk limits and the trading state, checked in one place before any order leaves.

`RiskGuard` holds the limits and the trading state; `GuardedExchange` wraps an exchange so
that every order passes `RiskGuard.check` first (freqtrade's last-moment check). Refusals
raise `OrderRejected` naming the rule, so the trade node records them as a hold.

The state is composed of the operator's choice (`set_state`: halt, resume) and two loss limits
(`on_equity`): HALTED wins, then REDUCING (chosen, the daily limit breached today, or the
monthly cap breached this month), else ACTIVE. A daily breach lasts until the next trading day,
which starts at `day_start_hour_utc` (KST midnight). The monthly cap compares equity with the
first equity seen in the calendar month (KST); a breach lasts until the next month or an
operator's resume (`resume_monthly`, which starts the month's count again from the equity then).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, get_args

from exchange.rules import MIN_ORDER_KRW
from exchange.types import (
    AccountSnapshot,
    Exchange,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)

__all__ = [
    "GuardedExchange",
    "OrderPurpose",
    "RiskGuard",
    "RiskLimits",
    "RiskRejected",
    "RiskRule",
    "TradingState",
]

logger = logging.getLogger(__name__)

_HUNDRED = Decimal(100)
_KST = timedelta(hours=9)
_ZERO = Decimal(0)


class TradingState(StrEnum):
    ACTIVE = "active"  # entries and exits
    REDUCING = "reducing"  # exits only: entries refused
    HALTED = "halted"  # nothing but cancels and the flattening asked for


RiskRule = Literal["purpose", "halted", "reducing", "max_exposure", "max_position", "held"]


class RiskRejected(OrderRejected):
    """The risk guard refused the order before it reached the exchange; `rule` says which."""

    def __init__(self, rule: RiskRule, reason: str, *, identifier: str | None = None) -> None:
        super().__init__(f"risk: {reason}", identifier=identifier)
        self.rule = rule


OrderPurpose = Literal["entry", "exit", "emergency", "flatten"]
ORDER_PURPOSES: tuple[str, ...] = get_args(OrderPurpose)

# Which side each purpose may take: entries buy, everything else sells (spot, no shorts).
_PURPOSE_SIDE: dict[str, Side] = {
    "entry": Side.BID,
    "exit": Side.ASK,
    "emergency": Side.ASK,
    "flatten": Side.ASK,
}


def _check_pct(name: str, value: float) -> None:
    if not 0 < value <= 100:  # also refuses NaN
        raise ValueError(f"{name} must be in (0, 100], got {value!r}")


@dataclass(frozen=True)
class RiskLimits:
    """Hard limits no sizing or LLM output can override."""

    daily_loss_limit_pct: float = 3.0  # entries stop for the day once equity is this far down
    max_exposure_pct: float = 100.0  # coins held, at marks, as % of equity, after the order
    max_position_pct: float = 100.0  # one coin, at marks, as % of equity, after the order
    day_start_hour_utc: int = 15  # the trading day starts at KST midnight
    monthly_loss_cap_pct: float = 3.0  # entries stop for the month once equity is this far down

    def __post_init__(self) -> None:
        _check_pct("daily_loss_limit_pct", self.daily_loss_limit_pct)
        _check_pct("monthly_loss_cap_pct", self.monthly_loss_cap_pct)
        _check_pct("max_exposure_pct", self.max_exposure_pct)
        _check_pct("max_position_pct", self.max_position_pct)
        hour = self.day_start_hour_utc
        if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
            raise ValueError(f"day_start_hour_utc must be an integer hour 0..23, got {hour!r}")


def _pct(value: float) -> Decimal:
    return Decimal(str(value))


def _format_pct(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'))}"


class RiskGuard:
    """The trading state and the hard limits; `check` refuses what they do not allow."""

    def __init__(
        self,
        limits: RiskLimits,
        *,
        state: TradingState = TradingState.ACTIVE,
        reason: str = "",
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Start in `state` (the operator's choice, e.g. read back from the journal).

        `on_change` is called with `snapshot()` whenever the effective state or reason changes
        (to journal and publish it).
        """
        self.limits = limits
        self._manual_state = TradingState(state)
        self._manual_reason = reason
        self._on_change = on_change
        self._trading_day: date | None = None
        self._day_start_equity: Decimal | None = None
        self._last_equity: Decimal | None = None
        self._daily_loss_pct: Decimal | None = None
        self._daily_limit_reason: str | None = None  # set while the limit is breached today
        self._month: str | None = None  # "YYYY-MM" in KST
        self._month_start_equity: Decimal | None = None
        self._monthly_loss_pct: Decimal | None = None
        self._monthly_cap_reason: str | None = None  # set while the cap is breached this month
        self._monthly_breached_at: datetime | None = None
        self._outage_reason: str | None = None  # set while the exchange or database is away

    # -- the state ---------------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        """The effective state: HALTED, else REDUCING (chosen, a limit, an outage), else ACTIVE."""
        if self._manual_state is TradingState.HALTED:
            return TradingState.HALTED
        if (
            self._manual_state is TradingState.REDUCING
            or self._daily_limit_reason is not None
            or self._monthly_cap_reason is not None
            or self._outage_reason is not None
        ):
            return TradingState.REDUCING
        return TradingState.ACTIVE

    @property
    def reason(self) -> str:
        """Why the effective state is what it is ("" when active)."""
        if self._manual_state is TradingState.HALTED:
            return self._manual_reason
        if self._manual_state is TradingState.REDUCING:
            return self._manual_reason
        if self._daily_limit_reason is not None:
            return self._daily_limit_reason
        if self._monthly_cap_reason is not None:
            return self._monthly_cap_reason
        if self._outage_reason is not None:
            return self._outage_reason
        return ""

    @property
    def outage(self) -> str | None:
        """Why entries are held for a failing exchange or database (None while all answer)."""
        return self._outage_reason

    def set_outage(self, reason: str | None) -> None:
        """Reduce (exits only) while the exchange or the database keeps failing; None clears."""
        before = (self.state, self.reason)
        self._outage_reason = reason
        self._notify(before)

    @property
    def manual_state(self) -> TradingState:
        """The operator's choice alone (what `set_state` was last given), without the limit."""
        return self._manual_state

    @property
    def daily_limit_breached(self) -> bool:
        """Whether today's loss has reached the daily limit."""
        return self._daily_limit_reason is not None

    @property
    def monthly_cap_breached(self) -> bool:
        """Whether this month's loss has reached the monthly cap (and no resume cleared it)."""
        return self._monthly_cap_reason is not None

    @property
    def monthly_breached_at(self) -> datetime | None:
        """When the monthly cap was breached (None while it is not)."""
        return self._monthly_breached_at

    @property
    def day_start_equity(self) -> Decimal | None:
        """Equity at the first observation of the current trading day."""
        return self._day_start_equity

    @property
    def trading_day(self) -> date | None:
        """The current trading day (the UTC date of `now - day_start_hour_utc`)."""
        return self._trading_day

    def set_state(self, state: TradingState, reason: str = "") -> TradingState:
        """Apply the operator's choice; return the effective state.

        Resuming (ACTIVE) while the daily loss limit is breached today gives REDUCING.
        Calling it again with the same values changes nothing (safe to call every bar).
        """
        before = (self.state, self.reason)
        self._manual_state = TradingState(state)
        self._manual_reason = reason
        self._notify(before)
        return self.state

    def trading_day_of(self, now: datetime) -> date:
        """Return the trading day `now` falls in."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
        shifted = now.astimezone(UTC) - timedelta(hours=self.limits.day_start_hour_utc)
        return shifted.date()

    def month_of(self, now: datetime) -> str:
        """Return the KST calendar month `now` falls in, as YYYY-MM."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
        return (now.astimezone(UTC) + _KST).strftime("%Y-%m")

    def monthly_snapshot(self) -> dict[str, Any]:
        """The monthly cap's figures, JSON-friendly (what the journal keeps across restarts)."""
        return {
            "month": self._month,
            "start_equity": _str_or_none(self._month_start_equity),
            "last_equity": _str_or_none(self._last_equity),
            "loss_pct": None
            if self._monthly_loss_pct is None
            else round(float(self._monthly_loss_pct), 4),
            "cap_pct": self.limits.monthly_loss_cap_pct,
            "breached": self._monthly_cap_reason is not None,
            "reason": self._monthly_cap_reason,
            "breached_at": None
            if self._monthly_breached_at is None
            else self._monthly_breached_at.isoformat(),
        }

    def restore_monthly(self, saved: Mapping[str, Any]) -> None:
        """Take back the month's start equity and breach written before a restart."""
        month, start = saved.get("month"), saved.get("start_equity")
        if not month or start in (None, ""):
            return
        self._month = str(month)
        self._month_start_equity = Decimal(str(start))
        self._monthly_cap_reason = saved.get("reason") if saved.get("breached") else None
        breached_at = saved.get("breached_at")
        self._monthly_breached_at = (
            datetime.fromisoformat(str(breached_at))
            if breached_at and saved.get("breached")
            else None
        )

    def resume_monthly(self, equity: Decimal, now: datetime) -> bool:
        """The operator's resume: clear a monthly breach and count the month again from `equity`.

        Returns whether a breach was cleared.
        """
        before = (self.state, self.reason)
        cleared = self._monthly_cap_reason is not None
        self._month = self.month_of(now)
        self._month_start_equity = equity
        self._monthly_cap_reason = None
        self._monthly_breached_at = None
        self._monthly_loss_pct = Decimal(0)
        self._notify(before)
        return cleared

    def on_equity(self, equity: Decimal, now: datetime) -> TradingState:
        """Observe the account's equity at `now`; apply the daily loss limit; return the state.

        The first observation of a trading day sets that day's starting equity and clears
        yesterday's breach. An observation older than the current day does not roll back.
        """
        before = (self.state, self.reason)
        day = self.trading_day_of(now)
        if self._trading_day is None or day > self._trading_day:
            self._trading_day = day
            self._day_start_equity = equity
            self._daily_limit_reason = None
        self._last_equity = equity
        start = self._day_start_equity
        if start is not None and start > 0:
            loss_pct = (start - equity) / start * _HUNDRED
            self._daily_loss_pct = loss_pct
            limit = _pct(self.limits.daily_loss_limit_pct)
            if self._daily_limit_reason is None and loss_pct >= limit:
                self._daily_limit_reason = (
                    f"daily loss limit: -{_format_pct(loss_pct)}% (limit {_format_pct(limit)}%)"
                )
        self._observe_month(equity, now)
        self._notify(before)
        return self.state

    def _observe_month(self, equity: Decimal, now: datetime) -> None:
        month = self.month_of(now)
        if self._month is None or month > self._month:
            self._month = month
            self._month_start_equity = equity
            self._monthly_cap_reason = None
            self._monthly_breached_at = None
        start = self._month_start_equity
        if start is None or start <= 0:
            return
        loss_pct = (start - equity) / start * _HUNDRED
        self._monthly_loss_pct = loss_pct
        cap = _pct(self.limits.monthly_loss_cap_pct)
        if self._monthly_cap_reason is None and loss_pct >= cap:
            self._monthly_cap_reason = (
                f"monthly loss cap: -{_format_pct(loss_pct)}% since {self._month} began at "
                f"{start:.0f} (cap {_format_pct(cap)}%); entries resume next month or on "
                "`lxa resume`"
            )
            self._monthly_breached_at = now

    def _notify(self, before: tuple[TradingState, str]) -> None:
        if (self.state, self.reason) != before:
            logger.warning("trading state %s -> %s (%s)", before[0], self.state, self.reason)
            if self._on_change is not None:
                self._on_change(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """Return the state, reason, limits and the day's figures as JSON-friendly values."""
        return {
            "state": self.state.value,
            "reason": self.reason,
            "manual_state": self._manual_state.value,
            "daily_limit_breached": self.daily_limit_breached,
            "limits": asdict(self.limits),
            "trading_day": None if self._trading_day is None else self._trading_day.isoformat(),
            "day_start_equity": _str_or_none(self._day_start_equity),
            "last_equity": _str_or_none(self._last_equity),
            "daily_loss_pct": None if self._daily_loss_pct is None else float(self._daily_loss_pct),
            "monthly_cap_breached": self.monthly_cap_breached,
            "monthly": self.monthly_snapshot(),
            "outage": self._outage_reason,
        }

    # -- the check ---------------------------------------------------------------------------

    def check(
        self,
        request: OrderRequest,
        purpose: OrderPurpose,
        account: AccountSnapshot,
        marks: Mapping[str, float],
    ) -> None:
        """Refuse the order (raise `OrderRejected` naming the rule) unless every rule allows it."""
        identifier = request.identifier

        def refuse(rule: RiskRule, reason: str) -> RiskRejected:
            return RiskRejected(rule, reason, identifier=identifier)

        if purpose not in _PURPOSE_SIDE:
            raise refuse(
                "purpose", f"unknown order purpose {purpose!r}: use one of {ORDER_PURPOSES}"
            )
        expected_side = _PURPOSE_SIDE[purpose]
        if request.side is not expected_side:
            raise refuse(
                "purpose",
                f"purpose {purpose!r} must be side {expected_side.value!r}, "
                f"got {request.side.value!r}",
            )
        state = self.state
        if state is TradingState.HALTED and purpose != "flatten":
            raise refuse(
                "halted",
                f"trading is halted ({self.reason or 'no reason given'}): only cancels and "
                f"the requested flattening are allowed, not {purpose!r} orders",
            )
        if state is TradingState.REDUCING and purpose == "entry":
            raise refuse(
                "reducing",
                f"trading is reducing ({self.reason or 'no reason given'}): exits only, "
                "entries are refused",
            )
        if request.side is Side.BID:
            self._check_exposure(request, account, marks, refuse)
        else:
            self._check_held(request, account, refuse)

    def _check_exposure(
        self,
        request: OrderRequest,
        account: AccountSnapshot,
        marks: Mapping[str, float],
        refuse: Callable[[RiskRule, str], RiskRejected],
    ) -> None:
        """Refuse a buy that would lift exposure or the coin's position over its limit."""
        order_krw = _bid_krw(request)
        if order_krw is None:
            raise refuse(
                "max_exposure",
                "max exposure: the buy's KRW amount is unknown "
                "(ord_type 'price' needs price; 'limit' needs price and volume)",
            )
        prices = dict(marks)
        equity = account.equity(prices)
        if equity <= 0:
            raise refuse(
                "max_exposure", f"max exposure: equity is {equity:f} KRW, nothing may be bought"
            )
        held = {
            market: position.volume * _unit(position.avg_buy_price, prices.get(market))
            for market, position in account.positions.items()
        }
        exposure_pct = (sum(held.values(), _ZERO) + order_krw) / equity * _HUNDRED
        limit = _pct(self.limits.max_exposure_pct)
        if exposure_pct > limit:
            raise refuse(
                "max_exposure",
                f"max exposure: coins would be {_format_pct(exposure_pct)}% of equity after "
                f"this buy (limit {_format_pct(limit)}%)",
            )
        position_pct = (held.get(request.market, _ZERO) + order_krw) / equity * _HUNDRED
        limit = _pct(self.limits.max_position_pct)
        if position_pct > limit:
            raise refuse(
                "max_position",
                f"max position: {request.market} would be {_format_pct(position_pct)}% of "
                f"equity after this buy (limit {_format_pct(limit)}%)",
            )

    @staticmethod
    def _check_held(
        request: OrderRequest,
        account: AccountSnapshot,
        refuse: Callable[[RiskRule, str], RiskRejected],
    ) -> None:
        """Refuse a sell of more than the free (unlocked) volume held."""
        if request.volume is None:
            return  # malformed: the exchange refuses it with its own reason
        position = account.positions.get(request.market)
        free = _ZERO if position is None else position.volume - position.locked
        if request.volume > free:
            raise refuse(
                "held",
                f"sell more than held: the order sells {request.volume:f} {request.market}, "
                f"{free:f} is held and free",
            )


def _str_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _unit(avg_buy_price: Decimal, mark: float | None) -> Decimal:
    return avg_buy_price if mark is None else Decimal(str(mark))


def _bid_krw(request: OrderRequest) -> Decimal | None:
    """Return the KRW a buy spends (before fees), or None when the request does not say."""
    if request.price is None:
        return None
    if request.ord_type is OrderType.PRICE:
        return request.price
    if request.volume is None:
        return None
    return request.price * request.volume


class GuardedExchange:
    """An `Exchange` that checks every order with a `RiskGuard` before the inner one sees it.

    Before each check the guard observes the account's equity at `clock()`, so the daily loss
    limit is applied to the latest account even between the engine's observations.
    """

    def __init__(
        self,
        inner: Exchange,
        guard: RiskGuard,
        *,
        marks: Callable[[], Mapping[str, float]],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Wrap `inner` (an `Exchange`); `marks` gives the latest price per market.

        `clock` must be the engine's clock (the paper exchange's `now` in a replay); default
        wall time, UTC.
        """
        self.inner = inner
        self.guard = guard
        self.name = inner.name
        self._marks = marks
        self._clock = clock or (lambda: datetime.now(UTC))

    async def get_account(self) -> AccountSnapshot:
        """Free and locked KRW and every coin position (the inner exchange's)."""
        return await self.inner.get_account()

    async def place_order(
        self,
        request: OrderRequest,
        purpose: OrderPurpose | None = None,
        *,
        account: AccountSnapshot | None = None,
    ) -> Order:
        """Check the order against the guard, then send it; raise `OrderRejected` if refused.

        Without `purpose` (the protocol's plain call) a bid is an "entry", an ask an "exit".
        `account` is a snapshot the caller read just before (the watchdog's fast path), so the
        check costs no second call to the exchange.
        """
        if purpose is None:
            purpose = "entry" if request.side is Side.BID else "exit"
        if account is None:
            account = await self.get_account()
        marks = dict(self._marks())
        self.guard.on_equity(account.equity(marks), self._clock())
        self.guard.check(request, purpose, account, marks)
        return await self.inner.place_order(request)

    async def get_order(self, identifier: str) -> Order | None:
        """Look an order up by its client identifier."""
        return await self.inner.get_order(identifier)

    async def cancel_order(self, identifier: str) -> Order:
        """Cancel a resting order (allowed in every state)."""
        return await self.inner.cancel_order(identifier)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders still resting on the book."""
        return await self.inner.open_orders(market)

    async def cancel_all(self) -> list[Order]:
        """Cancel every open order (allowed in every state); return their final states."""
        return [await self.cancel_order(order.identifier) for order in await self.open_orders()]

    async def flatten(self, *, identifier_prefix: str) -> list[Order]:
        """Market-sell every free position worth at least Upbit's minimum order.

        Identifiers are `<identifier_prefix>-<market>`. A refused sell is returned as a
        REJECTED order carrying the reason, and the other markets are still sold. Cancel
        resting sells first (`cancel_all`) so that their locked volume is sold too.
        """
        account = await self.get_account()
        marks = dict(self._marks())
        results: list[Order] = []
        for market, position in sorted(account.positions.items()):
            free = position.volume - position.locked
            value = free * _unit(position.avg_buy_price, marks.get(market))
            if free <= 0 or value < MIN_ORDER_KRW:
                continue
            request = OrderRequest(
                market=market,
                side=Side.ASK,
                ord_type=OrderType.MARKET,
                identifier=f"{identifier_prefix}-{market}",
                volume=free,
            )
            try:
                results.append(await self.place_order(request, "flatten"))
            except OrderRejected as exc:
                logger.warning("flatten sell %s refused: %s", request.identifier, exc.reason)
                results.append(
                    Order(
                        identifier=request.identifier,
                        market=market,
                        side=Side.ASK,
                        ord_type=OrderType.MARKET,
                        state=OrderState.REJECTED,
                        created_at=self._clock(),
                        volume=free,
                        reason=exc.reason,
                    )
                )
        return results
