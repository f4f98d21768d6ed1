"""The long-running engine, one concern per module.

- `cycle`: the bar cycle (`Engine`): bars and ticks in, features, one graph run per bar close.
- `ledger`: the one owner of orders, fills and positions in the journal.
- `emergency`: the watchdog's sells, outside the graph, retried until the exchange takes them.
- `protections`: stop-loss and take-profit, enforced on ticks and bar closes.
- `control`: the operator's halt/resume/flatten, the loss limits, what bars entries.
- `record`: a finished run written to the journal.
- `venue`: what the engine needs from the account (`TradingVenue`) and where it reports.
"""

from app.engine.cycle import Engine
from app.engine.ledger import Protection
from app.engine.record import CycleResult
from app.engine.venue import TradingVenue

__all__ = ["CycleResult", "Engine", "Protection", "TradingVenue"]
