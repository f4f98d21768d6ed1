"""What a graph run is given besides its state: services and the trading policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from exchange.types import Exchange
from graph.review import Reviewer, Sizer
from policy.params import PolicyParams


class Probabilities(Protocol):
    """One market's model output."""

    @property
    def p_buy(self) -> float: ...

    @property
    def p_sell(self) -> float: ...

    @property
    def expected_return(self) -> float | None: ...


class SignalModel(Protocol):
    """The ML prediction interface `ml_signal` calls (inference only)."""

    @property
    def model_id(self) -> str: ...

    def predict(
        self, features: Mapping[str, Mapping[str, float | None]]
    ) -> Mapping[str, Probabilities]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class TradingPolicy:
    """Deterministic limits that apply whatever the reviewers say.

    `rules` are the entry and exit rules `ml_signal` applies (policy.rules); the rest limit
    what the sizer may propose.
    """

    rules: PolicyParams = field(default_factory=PolicyParams)
    risk_level: Literal["low", "medium", "high"] = "medium"
    min_investment_ratio: float = 0.05
    max_investment_ratio: float = 1.0
    stop_loss_cap_pct: float = 3.0
    # Signal tiers for the sizing principles: how far an entry's expected net return clears
    # the entry margin (bps), and the minute volatility above which any signal is volatile.
    medium_signal_bps: float = 10.0
    strong_signal_bps: float = 25.0
    high_volatility_60m: float = 0.0025
    stop_loss_floor_pct: float = 0.2
    take_profit_floor_pct: float = 0.2
    take_profit_cap_pct: float = 20.0
    fee_rate: Decimal = Decimal("0.0005")
    min_order_krw: Decimal = Decimal(5000)


@dataclass(frozen=True, kw_only=True, slots=True)
class Context:
    """Run-scoped dependencies handed to every node as `Runtime[Context]` (frozen once built).

    `exchange` is where the trade node places its order; in the service it is the journaled,
    guarded exchange, so the node never calls back into the engine to write anything.
    """

    signal_model: SignalModel
    exchange: Exchange
    groq: Reviewer
    ollama: Reviewer
    sizer: Sizer
    policy: TradingPolicy = TradingPolicy()
    place_orders: bool = True  # False for forks and replays: they never place an order
