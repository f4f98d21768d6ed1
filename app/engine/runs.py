"""Driving the graph: one run streamed to the bus, recorded, and its order settled; resuming.

The engine owns the graph and hands it in with each call (tests and the replay fork swap it);
a run is a new thread of the checkpointer, named by the engine. What a finished run ordered is
settled here: the run's own order row, then the fills and the position with the stops the
sizing set (`Ledger.record_fills`). A run a crash interrupted is finished from its checkpoint,
or closed as a recorded hold that says why, so nothing at start can stop the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.engine.emergency import ExchangeHealth
from app.engine.ledger import JournaledExchange, Ledger, Protection, decimal_or_none
from app.engine.record import CycleResult, RunRecorder
from app.engine.venue import Outbox, log, now
from graph.context import Context
from graph.state import TradeState

STREAM_MODES = ["updates", "custom", "tasks", "values"]


@dataclass
class GraphRuns:
    """Runs of the compiled graph for one session: drive, record, settle, resume."""

    context: Context
    ledger: Ledger
    outbox: Outbox
    health: ExchangeHealth
    recorder: RunRecorder
    session_id: str

    async def drive(
        self,
        graph: Any,
        exchange: JournaledExchange,
        run_id: str,
        state: TradeState | None,
    ) -> CycleResult:
        """Stream one run (None: resume its checkpoint) to the bus; record and settle it."""
        config = {"configurable": {"thread_id": run_id}}
        started = time.perf_counter()
        final: Mapping[str, Any] | None = None
        publish = self.outbox.publish
        async for mode, chunk in graph.astream(
            state, config, context=self.context, stream_mode=STREAM_MODES
        ):
            if mode == "values":  # the state after each step: the last one is the run's end
                final = chunk
                continue
            if mode == "custom":
                publish({**chunk, "run_id": run_id})
                continue
            if mode == "tasks":  # a task's start carries its input, its end its result
                if "input" in chunk:
                    publish({"type": "node_started", "node": chunk["name"], "run_id": run_id})
                continue
            for node, update in chunk.items():
                for item in (update or {}).get("events", []):
                    publish({**item, "run_id": run_id})
                publish({"type": "node_finished", "node": node, "run_id": run_id})
        if final is None:  # nothing ran (a resumed run with no step left): read the checkpoint
            final = (await graph.aget_state(config)).values
        duration_ms = (time.perf_counter() - started) * 1000
        result = self.recorder.record(run_id, final, duration_ms)
        await self._after_order(exchange, run_id, final)
        return result

    async def resume_unfinished(
        self,
        graph: Any,
        exchange: JournaledExchange,
        lock: asyncio.Lock,
        last_bar_ts: datetime | None,
    ) -> list[CycleResult]:
        """Finish runs that started but never recorded a decision (a crash mid-run).

        A run that cannot be finished (its checkpoint is unreadable, or resuming it fails) is
        closed as a recorded hold with the reason, and the engine goes on.
        """
        results = []
        for run_id in self.ledger.journal.unfinished_runs(self.session_id):
            config = {"configurable": {"thread_id": run_id}}
            values: Mapping[str, Any] = {}
            try:
                snapshot = await graph.aget_state(config)
                values = snapshot.values or {}
                if not values:
                    continue
                if not snapshot.next:
                    # It finished but was not journaled: record it from its last checkpoint.
                    results.append(self.recorder.record(run_id, values, 0.0))
                    continue
                log.info("resuming run %s at %s", run_id, snapshot.next)
                datetime.fromisoformat(values["bar_ts"])  # a checkpoint with no bar is unfinishable
                async with lock:
                    results.append(await self.drive(graph, exchange, run_id, None))
            except Exception as exc:  # a run that cannot be finished must not stop the engine
                log.warning("run %s cannot be finished; closing it as a hold: %s", run_id, exc)
                reason = f"resume_failed: {type(exc).__name__}: {exc}"
                results.append(self.close_as_hold(run_id, values, reason, last_bar_ts))
        return results

    def close_as_hold(
        self,
        run_id: str,
        values: Mapping[str, Any],
        reason: str,
        last_bar_ts: datetime | None,
    ) -> CycleResult:
        """Record an unfinishable run as a hold that says why."""
        decision = {"action": "hold", "market": None, "reason": reason[:500]}
        state = {**values, "decision": decision}
        state.setdefault("bar_ts", (last_bar_ts or now()).isoformat())
        self.outbox.record(run_id, "run_closed", {"reason": decision["reason"]})
        return self.recorder.record(run_id, state, 0.0)

    async def _after_order(
        self, exchange: JournaledExchange, run_id: str, final: Mapping[str, Any]
    ) -> None:
        """Journal the fills and the position of the order the run placed (if it filled)."""
        order_view = final.get("order")
        if order_view and order_view.get("state") == "unknown":  # the exchange did not answer
            await self.health.failed(datetime.fromisoformat(final["bar_ts"]))
        elif order_view and order_view.get("state") not in (None, "not_sent", "rejected"):
            await self.health.ok()
        if order_view and order_view.get("state") != "not_sent":
            # The run's own account of its order (an order adopted after a refused resend is
            # the one that counts) is its final row.
            self.ledger.order_log(run_id, order_view)
        if not order_view or Decimal(order_view.get("executed_volume") or "0") == 0:
            return
        order = await exchange.get_order(order_view["identifier"])
        if order is None:
            return
        protection = Protection(
            decimal_or_none(order_view.get("stop_loss_price")),
            decimal_or_none(order_view.get("take_profit_price")),
        )
        await self.ledger.record_fills(run_id, order, protection, reason="graph")
