"""The `Journal`: every table group over one database, opened and migrated in one call."""

from __future__ import annotations

from store.journal.cache import ResponseCacheTable
from store.journal.control import TradingControls
from store.journal.database import create_engine, normalise_url, upgrade
from store.journal.events import Events
from store.journal.history import RunHistory
from store.journal.intents import OrderIntents
from store.journal.news import NewsJournal
from store.journal.orders import OrdersAndFills
from store.journal.outcomes import Outcomes
from store.journal.positions import Positions
from store.journal.prompts import PromptVersions
from store.journal.runs import Runs
from store.journal.trades import Trades

__all__ = ["Journal"]


class Journal(
    Runs,
    Events,
    RunHistory,
    OrdersAndFills,
    Positions,
    OrderIntents,
    TradingControls,
    PromptVersions,
    ResponseCacheTable,
    Trades,
    NewsJournal,
    Outcomes,
):
    """Record and query what the trader decided and did (sync, over a SQLAlchemy Engine).

    Each base is one table group in its own module (`store.journal`'s docstring lists them);
    they share the engine and nothing else, so a method is found by the table it touches.
    """

    @classmethod
    def open(cls, url: str) -> Journal:
        """Connect to `url`, run `alembic upgrade head`, and return the journal.

        Accepts `sqlite:///path.db` (parent folders are created; WAL is enabled),
        `sqlite://` (in memory) and `postgresql://` / `postgresql+psycopg://` URLs.
        """
        engine = create_engine(normalise_url(url))
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.close_claims()
        self.engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
