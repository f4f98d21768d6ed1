"""The journal: decisions, LLM calls, orders, fills, positions and events in SQLite or Postgres.

Callers hold one `Journal`; its methods live in one module per table group:

- `runs`: a run's decision with its LLM calls and events, one run, a session's unfinished runs.
- `events`: the event sequence (appended one by one, read by id, type or market).
- `history`: past decisions listed, paged and counted, hold reasons, the equity and price lines.
- `orders`: orders and their fills (once per trade uuid), listed, paged and their fees summed.
- `positions`: open positions, and the returns of the ones closed most recently.
- `intents`: the live order manager's intents, journaled before an order is sent.
- `control`: the operator's trading state (halt, resume, flatten) and the loss limits.
- `prompts`: every saved prompt version.
- `trades`: round trips read from the fills (entry, exit, P&L, why each closed), read-only.
- `cache`: the LLM response cache.
- `news`: news items as first seen (stored once) and their scores per coin, point in time.
- `outcomes`: what each decision was worth once its window closed (`app/outcomes.py`).

Beneath them: `database` (URL normalisation, the engine, migrations; `JournalUnavailable` when
the database cannot be opened), `base` (what the groups
share: row checks, upserts, filters) and `driver` (SQLite's driver for the per-bar writes).
The rows the write methods take are typed in `store.rows`.
"""

from store.journal.cache import JournalResponseCache
from store.journal.control import TRADING_CONTROL_WRITERS, TRADING_STATES
from store.journal.database import (
    MIGRATIONS_DIR,
    JournalUnavailable,
    alembic_config,
    json_default,
    normalise_url,
    upgrade,
)
from store.journal.intents import INTENT_STATES
from store.journal.journal import Journal

__all__ = [
    "INTENT_STATES",
    "MIGRATIONS_DIR",
    "TRADING_CONTROL_WRITERS",
    "TRADING_STATES",
    "Journal",
    "JournalResponseCache",
    "JournalUnavailable",
    "alembic_config",
    "json_default",
    "normalise_url",
    "upgrade",
]
