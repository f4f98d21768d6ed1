"""RiskGuard: the state x purpose x side matrix, the daily loss limit, the day roll, exposure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from exchange.risk import OrderPurpose, RiskGuard, RiskLimits, RiskRejected, TradingState
from exchange.types import AccountSnapshot, OrderRejected, OrderRequest, OrderType, Position, Side

MARKET = "KRW-BTC"
MARKS = {MARKET: 100_000_000.0, "KRW-ETH": 5_000_000.0}
# 14:00 UTC on 2026-03-01 is trading day 2026-02-28's last hour (the day starts at 15:00 UTC).
T0 = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
START = Decimal(1_000_000)


def account(krw: str = "1000000", btc: str = "0.001", locked: str = "0") -> AccountSnapshot:
    positions = {}
    if Decimal(btc) > 0:
        positions[MARKET] = Position(
            MARKET, Decimal(btc), Decimal(100_000_000), locked=Decimal(locked)
        )
    return AccountSnapshot(krw=Decimal(krw), krw_locked=Decimal(0), positions=positions)


def buy(krw: str = "10000", market: str = MARKET) -> OrderRequest:
    return OrderRequest(market, Side.BID, OrderType.PRICE, "id-buy", price=Decimal(krw))


def sell(volume: str = "0.0001", market: str = MARKET) -> OrderRequest:
    return OrderRequest(market, Side.ASK, OrderType.MARKET, "id-sell", volume=Decimal(volume))


def guard_in(state: TradingState, **limits: Any) -> RiskGuard:
    return RiskGuard(RiskLimits(**limits), state=state, reason="operator said so")


# ---- the state x purpose x side matrix ------------------------------------------------------

ALLOWED: set[tuple[TradingState, str, Side]] = {
    (TradingState.ACTIVE, "entry", Side.BID),
    (TradingState.ACTIVE, "exit", Side.ASK),
    (TradingState.ACTIVE, "emergency", Side.ASK),
    (TradingState.ACTIVE, "flatten", Side.ASK),
    (TradingState.REDUCING, "exit", Side.ASK),
    (TradingState.REDUCING, "emergency", Side.ASK),
    (TradingState.REDUCING, "flatten", Side.ASK),
    (TradingState.HALTED, "flatten", Side.ASK),
}
PURPOSES: list[OrderPurpose] = ["entry", "exit", "emergency", "flatten"]


@pytest.mark.parametrize("state", list(TradingState))
@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("side", list(Side))
def test_check_allows_exactly_the_listed_state_purpose_side_combinations(
    state: TradingState, purpose: OrderPurpose, side: Side
) -> None:
    guard = guard_in(state)
    request = buy() if side is Side.BID else sell()

    if (state, purpose, side) in ALLOWED:
        guard.check(request, purpose, account(), MARKS)
    else:
        with pytest.raises(RiskRejected) as refused:
            guard.check(request, purpose, account(), MARKS)
        wrong_side = (purpose == "entry") != (side is Side.BID)
        assert refused.value.rule == ("purpose" if wrong_side else state.value)
        assert refused.value.reason.startswith("risk: ")
        assert refused.value.identifier == request.identifier
        assert isinstance(refused.value, OrderRejected)  # the trade node's hold


def test_halted_refusal_names_the_state_and_the_operators_reason() -> None:
    with pytest.raises(OrderRejected, match=r"halted \(operator said so\)"):
        guard_in(TradingState.HALTED).check(sell(), "exit", account(), MARKS)


def test_reducing_refusal_says_entries_are_refused() -> None:
    with pytest.raises(OrderRejected, match="entries are refused"):
        guard_in(TradingState.REDUCING).check(buy(), "entry", account(), MARKS)


def test_an_entry_that_sells_is_refused_naming_the_side() -> None:
    with pytest.raises(OrderRejected, match="purpose 'entry' must be side 'bid'"):
        guard_in(TradingState.ACTIVE).check(sell(), "entry", account(), MARKS)


def test_selling_more_than_the_free_volume_is_refused() -> None:
    guard = guard_in(TradingState.ACTIVE)
    half_locked = account(btc="0.001", locked="0.0005")

    guard.check(sell("0.0005"), "exit", half_locked, MARKS)
    with pytest.raises(RiskRejected, match="sell more than held") as refused:
        guard.check(sell("0.0006"), "exit", half_locked, MARKS)
    assert refused.value.rule == "held"
    with pytest.raises(OrderRejected, match="sell more than held"):
        guard.check(sell("1", market="KRW-ETH"), "flatten", half_locked, MARKS)


# ---- exposure --------------------------------------------------------------------------------


def test_max_exposure_refuses_a_buy_that_lifts_coins_over_the_limit() -> None:
    # equity 1,100,000: 1,000,000 KRW + 0.001 BTC at 100,000,000 = 100,000 held (9.1%)
    guard = guard_in(TradingState.ACTIVE, max_exposure_pct=20.0)

    guard.check(buy("120000"), "entry", account(), MARKS)  # (100k + 120k) / 1.1M = 20.0%
    with pytest.raises(RiskRejected, match=r"max exposure: coins would be 20\.1% of equity") as no:
        guard.check(buy("121000"), "entry", account(), MARKS)
    assert no.value.rule == "max_exposure"


def test_max_position_limits_one_coin_but_not_another() -> None:
    guard = guard_in(TradingState.ACTIVE, max_position_pct=10.0)

    with pytest.raises(RiskRejected, match=r"max position: KRW-BTC would be 10\.5%") as no:
        guard.check(buy("15000"), "entry", account(), MARKS)
    assert no.value.rule == "max_position"
    guard.check(buy("100000", market="KRW-ETH"), "entry", account(), MARKS)


def test_exposure_uses_the_marks_and_falls_back_to_cost_without_one() -> None:
    guard = guard_in(TradingState.ACTIVE, max_exposure_pct=50.0)
    # BTC doubled: held 200,000 of equity 1,200,000; a 400,000 buy makes 50.0%
    doubled = {MARKET: 200_000_000.0}

    guard.check(buy("400000"), "entry", account(), doubled)
    with pytest.raises(OrderRejected, match="max exposure"):
        guard.check(buy("400000"), "entry", account(), doubled | {MARKET: 300_000_000.0})
    guard.check(buy("450000"), "entry", account(), {})  # at cost: (100k + 450k) / 1.1M = 50%


def test_a_limit_buy_counts_price_times_volume() -> None:
    guard = guard_in(TradingState.ACTIVE, max_position_pct=10.0)
    request = OrderRequest(
        MARKET,
        Side.BID,
        OrderType.LIMIT,
        "id-limit",
        volume=Decimal("0.0002"),
        price=Decimal(100_000_000),
    )

    with pytest.raises(OrderRejected, match="max position"):
        guard.check(request, "entry", account(), MARKS)  # (100k + 20k) / 1.1M = 10.9%


def test_a_buy_without_an_amount_is_refused_by_the_exposure_rule() -> None:
    request = OrderRequest(MARKET, Side.BID, OrderType.PRICE, "id-none")

    with pytest.raises(OrderRejected, match="KRW amount is unknown"):
        guard_in(TradingState.ACTIVE).check(request, "entry", account(), MARKS)


# ---- daily loss limit and the trading day ----------------------------------------------------


def test_a_loss_of_exactly_the_limit_stops_entries() -> None:
    guard = RiskGuard(RiskLimits())
    guard.on_equity(START, T0)

    just_above = guard.on_equity(Decimal(970_001), T0 + timedelta(minutes=1))
    at_limit = guard.on_equity(Decimal(970_000), T0 + timedelta(minutes=2))

    assert just_above is TradingState.ACTIVE
    assert at_limit is TradingState.REDUCING
    assert guard.reason == "daily loss limit: -3.0% (limit 3.0%)"
    with pytest.raises(OrderRejected, match="daily loss limit"):
        guard.check(buy(), "entry", account(), MARKS)
    guard.check(sell(), "exit", account(), MARKS)


def test_the_reason_shows_the_loss_to_one_decimal() -> None:
    guard = RiskGuard(RiskLimits())
    guard.on_equity(START, T0)

    guard.on_equity(Decimal(969_000), T0 + timedelta(minutes=1))

    assert guard.reason == "daily loss limit: -3.1% (limit 3.0%)"


def test_the_breach_lasts_the_day_even_when_equity_recovers() -> None:
    guard = RiskGuard(RiskLimits())
    guard.on_equity(START, T0)
    guard.on_equity(Decimal(960_000), T0 + timedelta(minutes=1))

    state = guard.on_equity(START, T0 + timedelta(minutes=59))  # 14:59 UTC, same day

    assert state is TradingState.REDUCING


def test_the_day_rolls_at_15_utc_and_clears_the_breach() -> None:
    guard = RiskGuard(RiskLimits(monthly_loss_cap_pct=50.0))  # the daily limit alone
    guard.on_equity(START, T0)
    guard.on_equity(Decimal(960_000), T0 + timedelta(minutes=30))
    day_before = guard.trading_day

    state = guard.on_equity(Decimal(960_000), datetime(2026, 3, 1, 15, 0, tzinfo=UTC))

    assert state is TradingState.ACTIVE
    assert guard.reason == ""
    assert guard.trading_day == datetime(2026, 3, 1).date() != day_before
    assert guard.day_start_equity == Decimal(960_000)


def test_the_day_start_equity_is_the_first_observation_of_the_day() -> None:
    guard = RiskGuard(RiskLimits())
    guard.on_equity(Decimal(500_000), T0)  # yesterday

    guard.on_equity(START, T0 + timedelta(hours=1, minutes=5))  # 15:05: a new day
    state = guard.on_equity(Decimal(975_000), T0 + timedelta(hours=3))

    assert guard.day_start_equity == START
    assert state is TradingState.ACTIVE  # -2.5% of today's start, not vs yesterday's


def test_halted_survives_a_day_roll_and_a_breach() -> None:
    guard = RiskGuard(RiskLimits(), state=TradingState.HALTED, reason="kill switch")
    guard.on_equity(START, T0)
    guard.on_equity(Decimal(900_000), T0 + timedelta(minutes=1))

    state = guard.on_equity(Decimal(900_000), T0 + timedelta(days=1))

    assert state is TradingState.HALTED
    assert guard.reason == "kill switch"


def test_resume_while_breached_today_gives_reducing_then_active_next_day() -> None:
    guard = RiskGuard(
        RiskLimits(monthly_loss_cap_pct=50.0), state=TradingState.HALTED, reason="kill switch"
    )
    guard.on_equity(START, T0)
    guard.on_equity(Decimal(950_000), T0 + timedelta(minutes=1))

    resumed = guard.set_state(TradingState.ACTIVE, "resume")
    next_day = guard.on_equity(Decimal(950_000), T0 + timedelta(hours=2))

    assert resumed is TradingState.REDUCING
    assert guard.manual_state is TradingState.ACTIVE
    assert next_day is TradingState.ACTIVE


def test_a_manual_reducing_state_survives_the_day_roll() -> None:
    guard = RiskGuard(RiskLimits(), state=TradingState.REDUCING, reason="wind down")

    state = guard.on_equity(START, T0 + timedelta(days=3))

    assert state is TradingState.REDUCING
    assert guard.reason == "wind down"


def test_on_change_is_told_each_change_once() -> None:
    seen: list[dict[str, Any]] = []
    guard = RiskGuard(RiskLimits(), on_change=seen.append)

    guard.on_equity(START, T0)
    guard.on_equity(Decimal(960_000), T0 + timedelta(minutes=1))
    guard.on_equity(Decimal(950_000), T0 + timedelta(minutes=2))
    guard.set_state(TradingState.HALTED, "stop")
    guard.set_state(TradingState.HALTED, "stop")

    assert [(s["state"], s["reason"]) for s in seen] == [
        ("reducing", "daily loss limit: -4.0% (limit 3.0%)"),
        ("halted", "stop"),
    ]


def test_snapshot_is_json_friendly_and_complete() -> None:
    guard = RiskGuard(RiskLimits(max_exposure_pct=80.0))
    guard.on_equity(START, T0)

    snapshot = guard.snapshot()

    assert snapshot["state"] == "active"
    assert snapshot["limits"]["max_exposure_pct"] == 80.0
    assert snapshot["day_start_equity"] == "1000000"
    assert snapshot["trading_day"] == "2026-02-28"
    assert snapshot["daily_limit_breached"] is False


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RiskGuard(RiskLimits()).on_equity(START, datetime(2026, 3, 1, 12))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("daily_loss_limit_pct", 0.0),
        ("daily_loss_limit_pct", float("nan")),
        ("max_exposure_pct", 101.0),
        ("max_position_pct", -1.0),
        ("day_start_hour_utc", 24),
        ("day_start_hour_utc", -1),
    ],
)
def test_limits_out_of_range_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})


# ---- the monthly loss cap (the plan: losses held to -3% a month) ----------------------------

# 2026-03-31 14:00 UTC is 23:00 KST on the 31st; 15:00 UTC is 00:00 KST on April 1st.
MONTH_END = datetime(2026, 3, 31, 14, 0, tzinfo=UTC)


def test_small_daily_losses_that_add_up_to_3pct_stop_entries_for_the_month() -> None:
    guard = RiskGuard(RiskLimits())
    equity = START
    states = []
    for day in range(4):  # -1% a day: never the daily limit, -3.94% by the fourth day
        now = datetime(2026, 3, 2 + day, 1, 0, tzinfo=UTC)
        guard.on_equity(equity, now)
        equity = equity * Decimal("0.99")
        states.append(guard.on_equity(equity, now + timedelta(hours=1)))

    assert states[:3] == [TradingState.ACTIVE] * 3  # -1%, -1.99%, -2.97%
    assert states[3] is TradingState.REDUCING  # -3.94%
    assert guard.monthly_cap_breached
    assert not guard.daily_limit_breached
    assert guard.reason.startswith("monthly loss cap: -")
    assert "2026-03" in guard.reason
    with pytest.raises(RiskRejected, match="reducing"):
        guard.check(buy(), "entry", account(), MARKS)
    guard.check(sell(), "exit", account(), MARKS)  # exits still go out


def test_the_monthly_breach_lasts_until_the_next_kst_month() -> None:
    guard = RiskGuard(RiskLimits(daily_loss_limit_pct=50.0))
    guard.on_equity(START, datetime(2026, 3, 2, tzinfo=UTC))
    guard.on_equity(Decimal(965_000), datetime(2026, 3, 3, tzinfo=UTC))
    before_midnight = guard.on_equity(Decimal(965_000), MONTH_END)

    april = guard.on_equity(Decimal(965_000), MONTH_END + timedelta(hours=1))

    assert before_midnight is TradingState.REDUCING
    assert april is TradingState.ACTIVE
    assert guard.monthly_snapshot()["month"] == "2026-04"
    assert guard.monthly_snapshot()["start_equity"] == "965000"


def test_resume_monthly_clears_the_breach_and_counts_again_from_the_equity_then() -> None:
    guard = RiskGuard(RiskLimits(daily_loss_limit_pct=50.0))
    guard.on_equity(START, datetime(2026, 3, 2, tzinfo=UTC))
    guard.on_equity(Decimal(960_000), datetime(2026, 3, 3, tzinfo=UTC))

    cleared = guard.resume_monthly(Decimal(960_000), datetime(2026, 3, 4, tzinfo=UTC))
    after_small_loss = guard.on_equity(Decimal(940_000), datetime(2026, 3, 5, tzinfo=UTC))
    after_3pct_more = guard.on_equity(Decimal(931_000), datetime(2026, 3, 6, tzinfo=UTC))

    assert cleared is True
    assert after_small_loss is TradingState.ACTIVE  # -2.08% of 960,000
    assert after_3pct_more is TradingState.REDUCING  # -3.02% of 960,000


def test_the_monthly_figures_survive_a_restart() -> None:
    first = RiskGuard(RiskLimits(daily_loss_limit_pct=50.0))
    first.on_equity(START, datetime(2026, 3, 2, tzinfo=UTC))
    first.on_equity(Decimal(960_000), datetime(2026, 3, 3, tzinfo=UTC))
    saved = first.monthly_snapshot()

    second = RiskGuard(RiskLimits(daily_loss_limit_pct=50.0))
    second.restore_monthly(saved)
    state = second.on_equity(Decimal(961_000), datetime(2026, 3, 10, tzinfo=UTC))

    assert saved["breached"] is True
    assert state is TradingState.REDUCING
    assert second.monthly_snapshot()["start_equity"] == "1000000"
    assert second.monthly_breached_at == datetime(2026, 3, 3, tzinfo=UTC)


def test_a_restart_without_saved_figures_starts_the_month_from_the_first_equity() -> None:
    guard = RiskGuard(RiskLimits())
    guard.restore_monthly({})

    state = guard.on_equity(Decimal(900_000), datetime(2026, 3, 10, tzinfo=UTC))

    assert state is TradingState.ACTIVE
    assert guard.monthly_snapshot()["start_equity"] == "900000"
