"""A new champion taken up between bars, without a restart.

At the start of each bar close (under the engine's lock, so never inside a run) the engine asks
`ModelSwitch.poll` which set is champion now. Reading the pointer costs a file stat per bar;
only when it names another set is the set loaded, in a thread (ticks, the watchdog and the stops
go on meanwhile), and that same bar runs with it: no bar is skipped and no run sees two models.
A set that fails to load is reported once and the current one keeps trading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.venue import log
from graph.context import SignalModel, TradingPolicy

ChampionDir = Callable[[], Path | None]


@dataclass(frozen=True)
class LoadedModel:
    """What a bar needs of a model set: its predictor, the policy it implies, its status."""

    predictor: SignalModel
    policy: TradingPolicy
    status: dict[str, Any]


Loader = Callable[[Path], LoadedModel]


@dataclass
class ModelSwitch:
    """Watches the champion pointer and loads the set it names when it changes."""

    current_id: str
    champion_dir: ChampionDir  # the champion's directory now (None: keep the current one)
    load: Loader
    _seen: tuple[int, int, int] | None = field(init=False, default=None)
    _failed: str | None = field(init=False, default=None)
    pointer: Path | None = None  # the pointer file: unchanged mtime and size skip the read

    def _unchanged(self) -> bool:
        if self.pointer is None:
            return False
        try:
            stat = self.pointer.stat()
        except FileNotFoundError:
            return self._seen is None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return True
        self._seen = key
        return False

    async def poll(self) -> LoadedModel | None:
        """The new champion, loaded, when the pointer names another set; else None."""
        if self._unchanged():
            return None
        try:
            found = self.champion_dir()
        except Exception as exc:  # a damaged pointer: keep trading with what is loaded
            log.warning("model switch: cannot read the champion pointer: %s", exc)
            return None
        if found is None or found.name in (self.current_id, self._failed):
            return None
        try:
            loaded = await asyncio.to_thread(self.load, found)
        except Exception as exc:
            self._failed = found.name
            log.error(
                "model switch: %s failed to load, keeping %s: %s", found, self.current_id, exc
            )
            return None
        self.current_id = loaded.predictor.model_id
        self._failed = None
        return loaded
