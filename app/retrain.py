"""The retrain: a challenger trained in a separate process, judged, promoted only if better.

`run_retrain` does the work: load the base candles and everything recorded since, train a model
set (`app.training`, quick by default) into ``<models_dir>/.retrain/`` (invisible to the
registry), move it beside the others, and judge it against the serving champion
(`app.models.judge_and_record`). `retrain_in_child` runs it in a spawned process, so trading and
the watchdog never wait for it; whatever happens there (an exception, a kill), the champion
pointer is written only by the rule's last step, atomically, so the champion keeps serving.

`DailyRetrain` runs it once a KST day at LXA_RETRAIN_AT_KST inside the service; the day it last
ran is kept in ``<models_dir>/retrain.json``, so a restart the same day does not run it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from app.settings import Settings

log = logging.getLogger(__name__)
KST = ZoneInfo("Asia/Seoul")
STAGING = ".retrain"
RETRAIN_EVENT = "retrain"
Clock = Callable[[], datetime]
Log = Callable[[str], None]


class RetrainFailed(RuntimeError):
    """The retraining process raised, was killed or sent no result; the champion is unchanged."""


@dataclass(frozen=True)
class RetrainJob:
    """What one retrain needs; picklable, so a spawned process can take it."""

    settings: Settings
    candles: tuple[Path, ...]
    quick: bool = True
    eval_fraction: float = 0.15
    weighted: bool = True  # the reviewers' record and recency (LXA_RETRAIN_*), from the journal


def job_from(
    settings: Settings, candles: Sequence[Path] = (), *, quick: bool = True, weighted: bool = True
) -> RetrainJob:
    """The job for these settings: LXA_RETRAIN_CANDLES (and `candles`), plus the recordings."""
    from app.models import candle_sources

    sources = candle_sources(settings, candles)
    if not sources:
        raise ValueError(
            "nothing to retrain on: set LXA_RETRAIN_CANDLES (the base candle files) or pass "
            "--candles"
        )
    return RetrainJob(settings, tuple(sources), quick=quick, weighted=weighted)


def run_retrain(job: RetrainJob, log: Log | None = None) -> dict[str, Any]:
    """Train a challenger, judge it against the champion, record the verdict; return a summary."""
    from ml.data import load_candles

    say = log or (lambda _: None)
    settings = job.settings
    started = datetime.now(UTC)
    candles = load_candles([str(p) for p in job.candles], markets=settings.markets)
    if candles.empty:
        raise ValueError(f"no candles for {settings.markets} in {[str(p) for p in job.candles]}")
    from app.models import has_journal, judge_and_record, registry_for  # heavy: after reading
    from app.training import train_model_set
    from app.wiring import resolve_model_dir

    champion = resolve_model_dir(settings)
    staging = settings.models_dir / STAGING / f"{os.getpid()}"
    shutil.rmtree(settings.models_dir / STAGING, ignore_errors=True)  # what a crash left
    staging.mkdir(parents=True)
    say(f"training a challenger on {len(candles)} candles to {candles['ts'].max().isoformat()}")
    weights = None
    if job.weighted and has_journal(settings):
        from app.outcomes import weights_for_retrain

        weights = weights_for_retrain(settings, known_at=started, replacing=champion)
    trained = train_model_set(
        candles,
        staging,
        settings,
        quick=job.quick,
        data_files=[str(p) for p in job.candles],
        eval_fraction=job.eval_fraction,
        log=say,
        weights=weights,
    )
    challenger = settings.models_dir / trained.model_dir.name
    os.replace(trained.model_dir, challenger)
    shutil.rmtree(settings.models_dir / STAGING, ignore_errors=True)
    promotion = judge_and_record(
        registry_for(settings), challenger, candles, settings, champion_dir=champion
    )
    say(
        f"{challenger.name}: {'PROMOTED' if promotion.promote else 'candidate'}: {promotion.reason}"
    )
    return {
        "challenger": challenger.name,
        "champion_before": champion.name,
        "promoted": promotion.promote,
        "weighted": weights is not None,
        "reason": promotion.reason,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }


def _child(job: RetrainJob, sender: Connection) -> None:
    """The spawned process: run the job and send ("ok", summary) or ("error", text).

    Its progress goes to the inherited stderr (the terminal of `lxa retrain`, the service's log).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("retrain: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        sender.send(("ok", run_retrain(job, log=log.info)))
    except BaseException as exc:  # everything goes back to the parent as words
        sender.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"))
        raise SystemExit(1) from None
    finally:
        sender.close()


def retrain_in_child(
    job: RetrainJob,
    *,
    timeout_s: float | None = None,
    on_started: Callable[[int], None] | None = None,
    target: Callable[[RetrainJob, Connection], None] = _child,
) -> dict[str, Any]:
    """Run the job in a spawned process; return its summary or raise `RetrainFailed`.

    `on_started` gets the child's pid (a test kills it there). Blocking: the service calls it
    in a thread.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(job, sender), name="lxa-retrain", daemon=True)
    process.start()
    sender.close()
    assert process.pid is not None
    if on_started is not None:
        on_started(process.pid)
    try:
        answer = receiver.recv() if receiver.poll(timeout_s) else None
    except EOFError:  # the child died before it could answer
        answer = None
    finally:
        process.join(timeout=5 if answer is not None else timeout_s)
        if process.is_alive():
            process.kill()
            process.join()
        receiver.close()
    if answer is None:
        raise RetrainFailed(
            f"the retraining process ended with exit code {process.exitcode} and no result; "
            "the champion is unchanged"
        )
    status, value = answer
    if status != "ok":
        raise RetrainFailed(f"the retraining process failed: {value}; the champion is unchanged")
    result: dict[str, Any] = value
    return result


def parse_kst_time(text: str) -> time:
    """Read "HH:MM" (KST) into a time; ValueError names the problem."""
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(f"expected HH:MM (KST), got {text!r}") from None


@dataclass
class DailyRetrain:
    """Run `job` once a KST day, at or after `at`; remember the day in the registry's state."""

    at: time
    state: Any  # ml.champion.ModelRegistry: read_state / write_state
    job: Callable[[], Awaitable[dict[str, Any]]]
    clock: Clock = field(default=lambda: datetime.now(UTC))
    on_done: Callable[[dict[str, Any]], None] | None = None

    def due(self) -> date | None:
        """Today's KST date when the retrain should run now, else None."""
        now = self.clock().astimezone(KST)
        if now.time() < self.at:
            return None
        last = self.state.read_state().get("last_run_kst_date")
        today = now.date()
        return None if last == today.isoformat() else today

    async def tick(self) -> dict[str, Any] | None:
        """Run the retrain if due; return what was recorded, or None when not due.

        The day is written before the job starts: a crash mid-way is not retried in a loop.
        """
        day = self.due()
        if day is None:
            return None
        record: dict[str, Any] = {
            "last_run_kst_date": day.isoformat(),
            "started_at": self.clock().astimezone(UTC).isoformat(),
            "status": "running",
        }
        self.state.write_state(record)
        try:
            result = await self.job()
            record.update(status="done", result=result)
        except Exception as exc:  # a failed retrain is reported; the service goes on
            record.update(status="failed", error=str(exc)[:2000])
        record["finished_at"] = self.clock().astimezone(UTC).isoformat()
        self.state.write_state(record)
        if self.on_done is not None:
            self.on_done(record)
        return record

    async def run_forever(self, every_s: float = 30.0) -> None:
        """Check every `every_s` seconds until cancelled."""
        while True:
            try:
                await self.tick()
            except Exception:  # an unreadable state file: say so, and look again later
                log.exception("daily retrain: the check failed; trying again in %s s", every_s)
            await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def daily_retrain(settings: Settings, outbox: Any) -> AsyncIterator[DailyRetrain | None]:
    """Inside the service: the daily retrain while the block runs (None when not configured).

    Each run is journaled and published as a `retrain` event; a failure also alerts.
    """
    if not settings.retrain_at_kst:
        yield None
        return
    from app.models import registry_for

    children: list[int] = []

    def run_once() -> Awaitable[dict[str, Any]]:
        job = job_from(settings)  # built each day: recordings started since are included
        return asyncio.to_thread(retrain_in_child, job, on_started=children.append)

    def done(record: dict[str, Any]) -> None:
        outbox.record(None, RETRAIN_EVENT, record)
        outbox.publish({"type": RETRAIN_EVENT, **record})
        if record.get("status") == "failed":
            outbox.alert("error", "daily retrain failed", str(record.get("error"))[:500])

    scheduler = DailyRetrain(
        parse_kst_time(settings.retrain_at_kst),
        registry_for(settings),
        run_once,
        on_done=done,
    )
    task = asyncio.create_task(scheduler.run_forever(), name="lxa-daily-retrain")
    try:
        yield scheduler
    finally:
        task.cancel()
        for pid in children:  # a retrain still running ends with the service
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await task
