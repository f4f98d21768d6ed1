"""The money: the account's figures since start and today, and every round trip with its exit.

Everything is computed here from the journal (fills, positions, the equity each run was
given, the trading state); the viewer only formats it.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import DailyLimitSource, JournalDep, Services, ServicesDep, require_read_access
from api.routes.account import BAD_RANGE, FEE_RATE, Market, _decimal
from api.routes.runs import Time, as_utc
from store.journal import Journal
from store.trading_view import trading_view

router = APIRouter(prefix="/api", tags=["money"], dependencies=[Depends(require_read_access)])

KST = timezone(timedelta(hours=9))
ExitKind = Literal["ml_exit", "stop_loss", "take_profit", "watchdog", "flatten", "adopted", "other"]
StateCode = Literal[
    "active",
    "halted",
    "reducing",
    "daily_limit",
    "monthly_cap",
    "unproven_model_blocked",
    "unproven_model_paper",
]


class TradeOut(BaseModel):
    """One round trip: from the first buy while flat to the sell that left the market flat."""

    market: str
    status: Literal["closed", "open", "unmatched"] = Field(
        description="closed; open (coins still held); unmatched (a sell with nothing held)"
    )
    entry_ts: datetime | None = Field(description="the first buy's fill time")
    entry_kind: Literal["entry", "adopted"] | None = Field(
        description="entry: a buy the engine made; adopted: `lxa reconcile --adopt` took the "
        "exchange's balance (no trade)"
    )
    entry_price: Decimal | None = Field(description="the buys' volume-weighted price")
    entry_run_id: str | None
    entry_order: str | None
    exit_ts: datetime | None
    exit_price: Decimal | None = Field(description="the sells' volume-weighted price")
    exit_run_id: str | None = Field(description="the run that sold (the policy's exit)")
    exit_order: str | None
    exit_kind: ExitKind | None = Field(
        description="ml_exit (the policy, through the graph), stop_loss, take_profit, watchdog "
        "(its detector in exit_detail), flatten (the operator), adopted, other"
    )
    exit_detail: str | None = Field(description="the policy's rule, or the watchdog's detector")
    closed_event_id: int | None = Field(description="the position_closed event, when journaled")
    volume: Decimal = Field(description="coins bought (sold, for an unmatched sell)")
    volume_open: Decimal = Field(description="coins still held (open trips)")
    cost: Decimal = Field(description="KRW paid for the coins, buy fees included")
    fees: Decimal = Field(description="KRW fees of every fill of the trip")
    realised_pnl: Decimal = Field(description="KRW: sells' proceeds after fees less their cost")
    return_pct: float | None = Field(description="realised P&L over cost in % (closed trips)")


class TradeList(BaseModel):
    trades: list[TradeOut] = Field(description="newest first")
    total: int
    closed: int
    realised_pnl: Decimal
    fees: Decimal


class PeriodOut(BaseModel):
    """The account over a period (since start, or today in KST)."""

    start: datetime | None = Field(description="the period's first bar")
    start_equity: Decimal | None
    equity: Decimal | None
    return_pct: float | None = Field(description="equity against start_equity, in %")
    realised_pnl: Decimal = Field(description="KRW realised by the sells in the period")
    fees: Decimal = Field(description="KRW fees of the fills in the period")
    trades_closed: int
    wins: int
    win_rate_pct: float | None = Field(description="closed trips with a gain, in %")
    max_drawdown_pct: float = Field(description="largest fall from a peak of equity, in %")


class StateOut(BaseModel):
    """What the engine may do now, and why, in words."""

    code: StateCode = Field(description="a key the viewer translates")
    effective_state: Literal["active", "reducing", "halted"]
    entries_allowed: bool
    reason: str = Field(description="the journal's reason, in the server's words")
    model_proven: bool | None
    model_verdict: str | None


class SummaryOut(BaseModel):
    """The money first: equity, returns against buy-and-hold and cash, P&L, fees, drawdown."""

    session_id: str | None
    source: Literal["engine", "journal"] = Field(
        description="engine: the running engine's account; journal: the last run's"
    )
    first_bar: datetime | None
    last_bar: datetime | None
    start_equity: Decimal | None
    equity: Decimal | None
    return_pct: float | None
    buy_and_hold_equity: Decimal | None
    buy_and_hold_return_pct: float | None = Field(
        description="the start equity split over the markets, held (fee paid once)"
    )
    cash_return_pct: float = Field(description="keeping the KRW: 0")
    vs_buy_and_hold_pct: float | None = Field(description="return_pct - buy_and_hold_return_pct")
    realised_pnl: Decimal
    unrealised_pnl: Decimal
    fees: Decimal
    drawdown_pct: float = Field(description="equity now below its peak, in %")
    open_positions: int
    since_start: PeriodOut
    today: PeriodOut = Field(description="the KST day of the last bar")
    today_date: date | None
    state: StateOut
    note: str = ""


def _pct(value: Decimal | None, base: Decimal | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return float((value / base - 1) * 100)


def _drawdowns(values: list[Decimal]) -> tuple[float, float]:
    """(the largest fall from a peak, the fall now), in %."""
    peak, worst, now = Decimal(0), 0.0, 0.0
    for value in values:
        peak = max(peak, value)
        now = float((1 - value / peak) * 100) if peak > 0 else 0.0
        worst = max(worst, now)
    return worst, now


def _state(services: Services) -> StateOut:
    source = services.account
    daily = source.daily_limit() if isinstance(source, DailyLimitSource) else None
    view = trading_view(services.journal, daily=daily)
    model = view.get("model_status") or {}
    effective = str(view["effective_state"])
    monthly = view.get("monthly") or {}
    code: Any
    if effective == "halted":
        code = "halted"
    elif effective == "reducing":
        if view.get("state") == "reducing":
            code = "reducing"
        elif daily is not None and daily.get("breached"):
            code = "daily_limit"
        elif monthly.get("breached"):
            code = "monthly_cap"
        else:
            code = "reducing"
    elif not view["entries_allowed"]:
        code = "unproven_model_blocked"
    elif model and model.get("proven") is False:
        code = "unproven_model_paper"
    else:
        code = "active"
    reason = str(view.get("effective_reason") or view.get("reason") or "")
    if code == "unproven_model_paper":
        reason = str(model.get("verdict") or "")
    return StateOut(
        code=code,
        effective_state=effective,  # type: ignore[arg-type]
        entries_allowed=bool(view["entries_allowed"]),
        reason=reason,
        model_proven=model.get("proven") if model else None,
        model_verdict=model.get("verdict") if model else None,
    )


def _trade(row: dict[str, Any]) -> TradeOut:
    ret = row.get("return")
    return TradeOut(
        **{k: v for k, v in row.items() if k in TradeOut.model_fields},
        return_pct=None if ret is None else ret * 100,
    )


def _in_day(ts: datetime | None, day: date | None) -> bool:
    return ts is not None and day is not None and ts.astimezone(KST).date() == day


def _period(
    trips: list[dict[str, Any]],
    fills: list[dict[str, Any]],
    history: list[tuple[datetime, Decimal]],
    equity: Decimal | None,
    day: date | None = None,
) -> PeriodOut:
    """The figures of the trips closed, the fills and the equity points in the period."""
    if day is not None:
        trips = [t for t in trips if _in_day(t["exit_ts"], day)]
        fills = [f for f in fills if _in_day(f["ts"], day)]
        before = [h for h in history if h[0].astimezone(KST).date() < day]
        history = [h for h in history if _in_day(h[0], day)]
        # The day starts from the last equity before it, else from its first point.
        if before:
            history = [before[-1], *history]
    closed = [t for t in trips if t["status"] == "closed" and t["entry_kind"] == "entry"]
    wins = sum(1 for t in closed if t["realised_pnl"] > 0)
    start = history[0][1] if history else None
    values = [v for _, v in history] + ([equity] if equity is not None else [])
    worst, _ = _drawdowns(values)
    return PeriodOut(
        start=history[0][0] if history else None,
        start_equity=start,
        equity=equity,
        return_pct=_pct(equity, start),
        realised_pnl=sum((t["realised_pnl"] for t in trips), Decimal(0)),
        fees=sum((Decimal(f["fee"]) for f in fills), Decimal(0)),
        trades_closed=len(closed),
        wins=wins,
        win_rate_pct=wins / len(closed) * 100 if closed else None,
        max_drawdown_pct=worst,
    )


async def _marks(services: Services, journal: Journal, markets: list[str]) -> dict[str, Decimal]:
    """The price each held market is marked at: the engine's, else the last journaled close."""
    marks: dict[str, Decimal] = {}
    if services.account is not None:
        view = await services.account.account()
        for market, mark in (view.get("positions") or {}).items():
            price = _decimal(mark.get("mark_price"))
            if price is not None:
                marks[market] = price
    for market in markets:
        if market not in marks:
            last = journal.price_history(market, limit=1)
            price = _decimal(last[0]["close"]) if last else None
            if price is not None:
                marks[market] = price
    return marks


@router.get("/summary", response_model=SummaryOut)
async def summary(services: ServicesDep, journal: JournalDep) -> SummaryOut:
    """Equity against buy-and-hold and cash, realised and unrealised P&L, fees, drawdown and
    win rate since start and today (KST), and the trading state in words.

    The session is this engine's (else the journal's latest); trips and fees are the
    journal's, so they are the account's whatever session made them.
    """
    session = services.session_id or journal.latest_session_id()
    raw = journal.equity_history(session) if session else []
    history: list[tuple[datetime, Decimal]] = []
    first_closes: dict[str, Decimal] = {}
    last_closes: dict[str, Decimal] = {}
    for item in raw:
        value = _decimal(item["account"].get("equity"))
        if value is None:
            continue
        closes = {m: c for m, c0 in item["closes"].items() if (c := _decimal(c0)) is not None}
        if not history:
            first_closes = {m: c for m, c in closes.items() if c > 0}
        last_closes.update(closes)
        history.append((item["bar_ts"], value))
    trips = journal.round_trips()
    fills = journal.list_fills()
    positions = journal.positions()
    open_trips = {t["market"]: t for t in trips if t["status"] == "open"}
    marks = await _marks(services, journal, list(positions))
    unrealised = Decimal(0)
    for market, position in positions.items():
        mark = marks.get(market)
        if mark is None:
            continue
        volume = Decimal(position["volume"])
        trip = open_trips.get(market)
        cost = trip["cost_open"] if trip else volume * Decimal(position["avg_buy_price"])
        unrealised += volume * mark - cost
    source: Literal["engine", "journal"] = "journal"
    equity = history[-1][1] if history else None
    if services.account is not None:
        view = await services.account.account()
        live = _decimal(view.get("equity"))
        if live is not None:
            equity, source = live, "engine"
    start = history[0][1] if history else None
    hold: Decimal | None = None
    if start is not None and first_closes and all(m in last_closes for m in first_closes):
        per_market = start * (1 - FEE_RATE) / len(first_closes)
        hold = sum(
            (per_market * last_closes[m] / first for m, first in first_closes.items()),
            Decimal(0),
        ).quantize(Decimal("0.01"))
    ret, hold_ret = _pct(equity, start), _pct(hold, start)
    values = [v for _, v in history] + ([equity] if equity is not None else [])
    _, drawdown_now = _drawdowns(values)
    last_bar = history[-1][0] if history else None
    day = last_bar.astimezone(KST).date() if last_bar else None
    note = "" if history else "no run has recorded an equity yet"
    return SummaryOut(
        session_id=session,
        source=source,
        first_bar=history[0][0] if history else None,
        last_bar=last_bar,
        start_equity=start,
        equity=equity,
        return_pct=ret,
        buy_and_hold_equity=hold,
        buy_and_hold_return_pct=hold_ret,
        cash_return_pct=0.0,
        vs_buy_and_hold_pct=None if ret is None or hold_ret is None else ret - hold_ret,
        realised_pnl=sum((t["realised_pnl"] for t in trips), Decimal(0)),
        unrealised_pnl=unrealised.quantize(Decimal("0.01")),
        fees=journal.total_fees(),
        drawdown_pct=drawdown_now,
        open_positions=len(positions),
        since_start=_period(trips, fills, history, equity),
        today=_period(trips, fills, history, equity, day),
        today_date=day,
        state=_state(services),
        note=note,
    )


def _filtered(
    journal: Journal,
    market: str | None,
    exit_kind: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[dict[str, Any]]:
    trips = journal.round_trips(market=market)

    def when(trip: dict[str, Any]) -> datetime:
        return trip["exit_ts"] or trip["entry_ts"]

    return [
        t
        for t in reversed(trips)
        if (exit_kind is None or t["exit_kind"] == exit_kind)
        and (status is None or t["status"] == status)
        and (since is None or when(t) >= since)
        and (until is None or when(t) < until)
    ]


ExitQuery = Annotated[ExitKind | None, Query(description="only trips closed this way")]
StatusQuery = Annotated[Literal["closed", "open", "unmatched"] | None, Query()]
SinceQuery = Annotated[Time | None, Query(description="exit (else entry) from; no zone = UTC")]
UntilQuery = Annotated[Time | None, Query(description="exit (else entry) until, exclusive")]


@router.get("/trades", response_model=TradeList, responses=BAD_RANGE)
def trades(
    journal: JournalDep,
    market: Market = None,
    exit_kind: ExitQuery = None,
    status: StatusQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> TradeList:
    """Every round trip, newest first, with its entry, exit, size, fees, realised P&L and why
    it closed (the policy's exit, a stop, the watchdog's detector, the operator, an adoption).
    """
    rows = _filtered(
        journal, market, exit_kind, status, as_utc(since, "since"), as_utc(until, "until")
    )
    return TradeList(
        trades=[_trade(r) for r in rows],
        total=len(rows),
        closed=sum(1 for r in rows if r["status"] == "closed"),
        realised_pnl=sum((r["realised_pnl"] for r in rows), Decimal(0)),
        fees=sum((r["fees"] for r in rows), Decimal(0)),
    )


CSV_COLUMNS = [
    "market",
    "status",
    "entry_ts",
    "entry_kind",
    "entry_price",
    "exit_ts",
    "exit_price",
    "volume",
    "cost",
    "fees",
    "realised_pnl",
    "return_pct",
    "exit_kind",
    "exit_detail",
    "entry_run_id",
    "exit_run_id",
    "exit_order",
]


@router.get(
    "/trades.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the trades as CSV"}},
)
def trades_csv(
    journal: JournalDep,
    market: Market = None,
    exit_kind: ExitQuery = None,
    status: StatusQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Response:
    """The same trips as `GET /api/trades`, as CSV (UTC times, KRW amounts)."""
    rows = _filtered(
        journal, market, exit_kind, status, as_utc(since, "since"), as_utc(until, "until")
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        trade = _trade(row).model_dump(mode="json")
        writer.writerow(["" if trade[c] is None else trade[c] for c in CSV_COLUMNS])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="lxa-trades-{stamp}.csv"'},
    )
