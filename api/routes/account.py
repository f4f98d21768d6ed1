"""The account and its guards: positions, balances, orders, fills, equity, the watchdog."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.deps import JournalDep, ServicesDep, error, require_read_access
from api.routes.runs import Time, as_utc
from api.schemas import (
    MARKET_PATTERN,
    AccountOut,
    EquityOut,
    EquityPoint,
    EventOut,
    FillList,
    FillOut,
    OrderList,
    OrderOut,
    PositionList,
    PositionOut,
    PriceOut,
    PricePoint,
    WatchdogMarket,
    WatchdogOut,
)

router = APIRouter(prefix="/api", tags=["account"], dependencies=[Depends(require_read_access)])

Market = Annotated[str | None, Query(max_length=32, pattern=MARKET_PATTERN, examples=["KRW-BTC"])]
NO_ENGINE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: error("this server has no engine")
}
BAD_RANGE: dict[int | str, dict[str, Any]] = {
    status.HTTP_422_UNPROCESSABLE_CONTENT: error("a filter is malformed", unprocessable=True)
}
WATCHDOG_EVENTS = ("watchdog_trigger", "emergency_sell_failed")
FEE_RATE = Decimal("0.0005")  # Upbit KRW taker fee, paid once by buy-and-hold


@router.get("/positions", response_model=PositionList)
async def list_positions(services: ServicesDep, journal: JournalDep) -> PositionList:
    """Return the open positions, marked at the latest closes when an engine runs here."""
    rows = journal.positions()
    marks: dict[str, Any] = {}
    source = "journal"
    if services.account is not None:
        view = await services.account.account()
        marks = view.get("positions") or {}
        source = "engine"
    positions = []
    for market, row in rows.items():
        mark = marks.get(market) or {}
        positions.append(
            PositionOut(
                **row,
                mark_price=mark.get("mark_price"),
                unrealized_pct=mark.get("unrealized_pct"),
            )
        )
    for market, mark in marks.items():  # held on the exchange but not (yet) journaled
        if market not in rows:
            positions.append(
                PositionOut(
                    market=market,
                    volume=mark["volume"],
                    avg_buy_price=mark["avg_buy_price"],
                    stop_loss_price=mark.get("stop_loss_price"),
                    take_profit_price=mark.get("take_profit_price"),
                    opened_at=None,
                    updated_at=None,
                    run_id=None,
                    mark_price=mark.get("mark_price"),
                    unrealized_pct=mark.get("unrealized_pct"),
                )
            )
    return PositionList(positions=positions, source=source)  # type: ignore[arg-type]


@router.get("/balances", response_model=AccountOut, responses=NO_ENGINE)
async def balances(services: ServicesDep) -> AccountOut:
    """Return free KRW, each coin's balance and value, and the equity (needs the engine)."""
    if services.account is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "no engine here: balances come from the exchange the engine holds",
        )
    view = await services.account.account()
    return AccountOut.model_validate(view)


@router.get("/orders", response_model=OrderList)
def list_orders(
    journal: JournalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    market: Market = None,
    state: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    run_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> OrderList:
    """List orders newest first (graph, watchdog, protection and flatten orders alike)."""
    rows, total = journal.page_orders(
        limit=limit, offset=offset, market=market, state=state, run_id=run_id
    )
    return OrderList(
        orders=[OrderOut.model_validate(r) for r in rows], limit=limit, offset=offset, total=total
    )


@router.get("/fills", response_model=FillList, responses=BAD_RANGE)
def list_fills(
    journal: JournalDep,
    market: Market = None,
    since: Annotated[Time | None, Query(description="from (inclusive; no zone = UTC)")] = None,
    until: Annotated[Time | None, Query(description="until (exclusive; no zone = UTC)")] = None,
) -> FillList:
    """List fills oldest first (for price charts with entries and exits)."""
    rows = journal.list_fills(
        market=market, since=as_utc(since, "since"), until=as_utc(until, "until")
    )
    return FillList(fills=[FillOut.model_validate(r) for r in rows])


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


@router.get("/equity", response_model=EquityOut, responses=BAD_RANGE)
def equity(
    journal: JournalDep,
    services: ServicesDep,
    session_id: Annotated[
        str | None, Query(min_length=1, max_length=200, description="default: this engine's")
    ] = None,
    since: Annotated[Time | None, Query()] = None,
    until: Annotated[Time | None, Query()] = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 2_000,
) -> EquityOut:
    """Return the equity at each decision, with buy-and-hold over the same bars to compare.

    Buy-and-hold splits the first point's equity evenly over the markets priced there, pays
    the fee once, and holds. Long histories are thinned to `max_points` (first and last kept).
    """
    session = session_id or services.session_id or journal.latest_session_id()
    if session is None:
        return EquityOut(session_id=None, points=[], note="no decisions yet")
    history = journal.equity_history(
        session, since=as_utc(since, "since"), until=as_utc(until, "until")
    )
    history = [h for h in history if _decimal(h["account"].get("equity")) is not None]
    if len(history) > max_points:
        step = (len(history) - 1) / (max_points - 1)
        history = [history[round(i * step)] for i in range(max_points)]
    points: list[EquityPoint] = []
    note = ""
    first_closes: dict[str, Decimal] = {}
    per_market = Decimal(0)
    for item in history:
        value = _decimal(item["account"]["equity"])
        assert value is not None
        closes = {m: _decimal(c) for m, c in item["closes"].items()}
        if not points:
            first_closes = {m: c for m, c in closes.items() if c is not None and c > 0}
            if first_closes:
                per_market = value * (1 - FEE_RATE) / len(first_closes)
            else:
                note = "closes were not journaled for these runs: no buy-and-hold line"
        hold_value: Decimal | None = None
        if first_closes and all(closes.get(m) is not None for m in first_closes):
            hold_value = sum(
                (per_market * closes[m] / first for m, first in first_closes.items()),  # type: ignore[operator]
                Decimal(0),
            ).quantize(Decimal("0.01"))
        points.append(
            EquityPoint(
                ts=item["bar_ts"], equity=value, buy_and_hold=hold_value, run_id=item["run_id"]
            )
        )
    return EquityOut(session_id=session, points=points, note=note)


@router.get("/prices", response_model=PriceOut, responses=BAD_RANGE)
def prices(
    journal: JournalDep,
    market: Annotated[str, Query(max_length=32, pattern=MARKET_PATTERN, examples=["KRW-BTC"])],
    since: Annotated[
        Time | None, Query(description="bar time from (inclusive; no zone = UTC)")
    ] = None,
    until: Annotated[
        Time | None, Query(description="bar time until (exclusive; no zone = UTC)")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="only the newest bars (default: all)")
    ] = None,
    max_points: Annotated[
        int, Query(ge=2, le=10_000, description="buckets of bars beyond this many")
    ] = 2_000,
) -> PriceOut:
    """Return a market's close per bar, oldest first, as the journaled runs were given it.

    The whole range is returned: beyond `max_points` bars, consecutive bars are folded into
    buckets (first bar's time, the bucket's open, high, low and last close).
    """
    since_utc, until_utc = as_utc(since, "since"), as_utc(until, "until")
    if since_utc is not None and until_utc is not None and since_utc >= until_utc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"since ({since_utc.isoformat()}) must be before until ({until_utc.isoformat()})",
        )
    rows = journal.price_history(
        market, since=since_utc, until=until_utc, limit=limit if limit is not None else 10**9
    )
    bars = [(row["bar_ts"], close) for row in rows if (close := _decimal(row["close"])) is not None]
    return PriceOut(market=market, points=downsample(bars, max_points), bars=len(bars))


def downsample(bars: list[tuple[Any, Decimal]], max_points: int) -> list[PricePoint]:
    """One point per bar, or per bucket of consecutive bars when there are more than asked."""
    if len(bars) <= max_points:
        return [PricePoint(ts=ts, close=close) for ts, close in bars]
    size = -(-len(bars) // max_points)  # ceil: at most max_points buckets
    points = []
    for start in range(0, len(bars), size):
        bucket = bars[start : start + size]
        closes = [close for _, close in bucket]
        points.append(
            PricePoint(
                ts=bucket[0][0],
                close=closes[-1],
                open=closes[0],
                high=max(closes),
                low=min(closes),
                bars=len(bucket),
            )
        )
    return points


def _event(row: dict[str, Any]) -> EventOut:
    return EventOut.model_validate(row)


@router.get("/watchdog", response_model=WatchdogOut)
def watchdog(services: ServicesDep, journal: JournalDep) -> WatchdogOut:
    """Return the watchdog per market: cooldowns, the last trigger; and the recent triggers."""
    recent = journal.events_of_type(WATCHDOG_EVENTS, limit=50)
    # Events carry the wall clock; charts and tables place them on the bar they fell in.
    bar_times = journal.bar_times([r["ts"] for r in recent])
    triggers = [
        _event(r).model_copy(update={"bar_ts": bar})
        for r, bar in zip(recent, bar_times, strict=True)
    ]
    timed = {t.id: t for t in triggers}
    state: dict[str, Any] = {}
    if services.account is not None:
        state = services.account.watchdog_state()
    cooldowns: dict[str, Any] = state.get("cooldowns") or {}
    markets = list(services.markets) or sorted(
        {
            str((r["payload"] or {}).get("market"))
            for r in recent
            if (r["payload"] or {}).get("market")
        }
    )
    rows = []
    for market in markets:
        last = next(
            (r for r in recent if (r["payload"] or {}).get("market") in (market, None)), None
        )
        cooldown = cooldowns.get(market) or {}
        rows.append(
            WatchdogMarket(
                market=market,
                cooldown_until=cooldown.get("until"),
                cooldown_detector=cooldown.get("detector"),
                last_trigger=timed[last["id"]] if last else None,
            )
        )
    return WatchdogOut(
        enabled=bool(state.get("enabled", services.account is not None)),
        source="engine" if services.account is not None else "journal",
        config=state.get("config") or {},
        exchange_healthy=state.get("exchange_healthy"),
        consecutive_failures=state.get("consecutive_failures"),
        markets=rows,
        recent_triggers=triggers,
    )
