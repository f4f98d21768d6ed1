"""The trade list of a run from its journal rows: round trips with why each one closed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

ProposalOf = Callable[[str], Mapping[str, Any] | None]  # a run's ml_signal proposal


def exit_reason(
    identifier: str, orders: Mapping[str, Mapping[str, Any]], proposal_of: ProposalOf
) -> str:
    """Why a sell happened, from its order: the policy's rule, a protection or the watchdog."""
    if "-emergency-" in identifier:
        return "watchdog:" + identifier.rsplit("-emergency-", 1)[1].split("-")[0]
    for reason in ("stop_loss", "take_profit", "flatten"):
        if identifier.endswith(f"-{reason}") or f"-{reason}-" in identifier:
            return reason
    run_id = (orders.get(identifier) or {}).get("run_id")
    proposal = proposal_of(str(run_id)) if run_id else None
    if proposal is not None:
        return f"policy:{proposal.get('reason', 'sell')}"
    return "sell"


def trade_list(
    fills: Sequence[Mapping[str, Any]],
    orders: Sequence[Mapping[str, Any]],
    proposal_of: ProposalOf,
) -> list[dict[str, Any]]:
    """Every closed round trip from a journal's fills (oldest first) and orders.

    Times, prices, the result after fees and why it closed (the order's identifier says a
    protection or the watchdog; a graph run's proposal says which policy rule).
    """
    by_identifier = {str(o["identifier"]): o for o in orders}
    opened: dict[str, dict[str, Any]] = {}
    trades: list[dict[str, Any]] = []
    for fill in fills:
        market = str(fill["market"])
        volume, price, fee = (float(str(fill[k])) for k in ("volume", "price", "fee"))
        ts = pd.Timestamp(fill["ts"])
        trip = opened.setdefault(
            market, {"opened_at": ts, "volume": 0.0, "cost": 0.0, "proceeds": 0.0, "fees": 0.0}
        )
        trip["fees"] += fee
        if fill["side"] == "bid":
            trip["volume"] += volume
            trip["cost"] += price * volume + fee
            trip.setdefault("entry_price", price)
            continue
        trip["volume"] -= volume
        trip["proceeds"] += price * volume - fee
        if trip["volume"] > 1e-12:
            continue
        del opened[market]
        pnl = trip["proceeds"] - trip["cost"]
        trades.append(
            {
                "market": market,
                "opened_at": trip["opened_at"].isoformat(),
                "closed_at": ts.isoformat(),
                "minutes": int((ts - trip["opened_at"]).total_seconds() // 60),
                "entry_price": trip.get("entry_price"),
                "exit_price": price,
                "pnl_krw": round(pnl, 2),
                "return": pnl / trip["cost"] if trip["cost"] else None,
                "fees_krw": round(trip["fees"], 2),
                "exit_reason": exit_reason(
                    str(fill["order_identifier"]), by_identifier, proposal_of
                ),
            }
        )
    return trades


def policy_summary(
    trades: Sequence[dict[str, Any]], holds: dict[str, int], initial: float, fees: float
) -> dict[str, Any]:
    """What the policy did: the rules behind the holds, the exits, the shortest ML round trip."""
    ml = [t for t in trades if str(t["exit_reason"]).startswith("policy:")]
    exits: dict[str, int] = {}
    for trade in trades:
        exits[trade["exit_reason"]] = exits.get(trade["exit_reason"], 0) + 1
    return {
        "holds_by_rule": dict(sorted(holds.items(), key=lambda kv: -kv[1])),
        "exits": exits,
        "shortest_ml_round_trip_minutes": min((t["minutes"] for t in ml), default=None),
        "shortest_round_trip_minutes": min((t["minutes"] for t in trades), default=None),
        "fees_pct_of_capital": 100.0 * fees / initial if initial else None,
    }
