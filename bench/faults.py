"""Crash loop: kill -9 the live order and fill path at random points, restart, count the damage.

A driver process (``--drive``) opens the live services exactly as ``lxa run --live`` does
(``open_services``: the start-up reconciliation, the risk guard, the order manager journaling
each intent first, the ledger writing fills with their position) against the fake Upbit
(``tests/exchange/fake_upbit.py``, JWT checked, running in this process's thread), then buys
and sells KRW-BTC in a loop through the engine's journaled exchange. This process kills it with
SIGKILL after a random time (seeded), at whatever point of the order and fill path it is in,
and starts it again (each driver is forked from a zygote that imported the service once, so a
restart costs the start-up, not three seconds of imports); a start that refuses to trade
(reconciliation differences) or never gets ready counts as a failed restart. Every fourth
start, the fake answers the next order with a delay past the client's timeout (a timeout
after acceptance), or 500s.

At the end one more start reconciles, and the journal is compared with the fake exchange:

* ``orders_accepted``: orders the exchange holds;
* ``lost``: accepted orders with no intent in the journal;
* ``duplicated``: client identifiers the exchange accepted more than once (by order rows);
* ``fills_missing``: the exchange's trades with no fill in the journal (by trade uuid);
* ``position_mismatches``: markets where the journal's position, or what its fills add up
  to, differs from the exchange's balance;
* ``restarts_failed``: starts that refused to trade or never got ready;
* ``orders_adopted_at_start``, ``fills_settled_at_start``: what the restarts' reconciliations
  found and repaired (proof the kills landed inside the path).

Synthetic prices: the fake's orderbook is fixed; this measures bookkeeping, not trading.
Run from the project root: ``.venv/bin/python bench/faults.py [--kills 25] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BTC = "KRW-BTC"
PRICE = Decimal(50_000_000)
READY = "driver-ready"
REFUSED_EXIT = 3
FINAL = "final"
DONE = "driver-done"


def _settings(rest_url: str, data_dir: Path, journal_url: str | None) -> Any:
    from app.settings import Settings
    from app.wiring import BUNDLED_MODELS
    from ml.registry import latest_model_dir

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "exchange")]
    from fake_upbit import ACCESS_KEY, SECRET_KEY

    extra = {"database_url": journal_url} if journal_url else {}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        markets=[BTC],
        live=True,
        upbit_access_key=ACCESS_KEY,
        upbit_secret_key=SECRET_KEY,
        upbit_rest_url=rest_url,
        upbit_timeout_s=1.0,
        order_lane=False,
        watchdog_enabled=False,
        **extra,
    )


async def drive(rest_url: str, data_dir: Path, journal_url: str | None, tag: str) -> None:
    """The child: open the live services, then buy and sell through the ledger until killed."""
    from app.engine import Protection
    from app.wiring import LiveTradingRefused, open_services
    from exchange.types import ExchangeError, OrderRequest, OrderType, Side

    settings = _settings(rest_url, data_dir, journal_url)
    try:
        services = open_services(settings, session_id=tag, account_path=data_dir / "unused.json")
        async with services as s:
            print(READY, flush=True)
            if tag == FINAL:  # the last start only reconciles, then stops cleanly
                print(DONE, flush=True)
                return
            engine = s.engine
            k = 0
            while True:
                k += 1
                engine.venue.on_tick(BTC, s.exchange.now(), float(PRICE))
                try:
                    buy = await engine.exchange.place_order(
                        OrderRequest(
                            BTC, Side.BID, OrderType.PRICE, f"{tag}-{k}-b", price=Decimal(10_000)
                        ),
                        purpose="entry",
                    )
                    await engine.ledger.record_fills(
                        None, buy, Protection(None, None), reason="loop"
                    )
                    held = (await s.exchange.get_account()).positions.get(BTC)
                    if held is not None and held.volume > 0:
                        sell = await engine.exchange.place_order(
                            OrderRequest(
                                BTC, Side.ASK, OrderType.MARKET, f"{tag}-{k}-s", volume=held.volume
                            ),
                            purpose="exit",
                        )
                        await engine.ledger.record_fills(None, sell, None, reason="loop")
                except ExchangeError as exc:  # an injected fault: the next bar would go on
                    print(f"fault: {exc}", flush=True)
                    await engine.ledger.settle_unknown(engine.exchange)
    except LiveTradingRefused as exc:
        print(f"refused: {exc}", flush=True)
        sys.exit(REFUSED_EXIT)


class Zygote:
    """A process that imports the service once and forks a driver per start (`--zygote`).

    Each driver is still its own process, killed with SIGKILL wherever it is; only the three
    seconds of imports a fresh interpreter would spend are shared. Children are reaped by the
    zygote at once (SIGCHLD ignored), so a dead driver's pid disappears.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "zygote-ready":
            raise RuntimeError("the crash loop's zygote did not start")

    def spawn(
        self, rest_url: str, data_dir: Path, journal_url: str | None, tag: str, log: Path
    ) -> int:
        """Fork a driver; return its pid."""
        assert self.process.stdin is not None and self.process.stdout is not None
        words = [rest_url, str(data_dir), tag, str(log), journal_url or "-"]
        self.process.stdin.write("\t".join(words) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        """Stop the zygote."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


def serve_zygote() -> None:
    """The zygote (`--zygote`): import once, then fork a driver per line read on stdin."""
    import app.wiring  # noqa: F401 - the imports every driver shares
    from app.engine import Protection  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped at once
    print("zygote-ready", flush=True)
    for line in sys.stdin:
        rest_url, data_dir, tag, log, journal_url = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:  # the driver
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = sys.stdout
            code = 0
            try:
                asyncio.run(
                    drive(
                        rest_url, Path(data_dir), None if journal_url == "-" else journal_url, tag
                    )
                )
            except SystemExit as exc:
                code = int(exc.code or 0)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            os._exit(code)
        print(pid, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_ready(pid: int, log: Path, timeout_s: float) -> tuple[bool, str]:
    """Watch the driver's output until it is ready, exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = log.read_text(errors="replace") if log.exists() else ""
        if READY in seen:
            return True, seen
        if not _alive(pid):
            return False, log.read_text(errors="replace") if log.exists() else ""
        time.sleep(0.05)
    return False, log.read_text(errors="replace") if log.exists() else ""


def _kill(pid: int) -> None:
    """SIGKILL the driver and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.01)


def crash_loop(
    kills: int = 25,
    *,
    seed: int = 7,
    journal_url: str | None = None,
    fault_every: int = 4,
    ready_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Run the crash loop and return the damage count (see the module's docstring)."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "exchange")]
    from fake_upbit import FakeUpbit

    rng = random.Random(seed)
    failed: list[str] = []
    started = time.perf_counter()
    zygote = Zygote()
    with tempfile.TemporaryDirectory() as tmp, FakeUpbit(krw=Decimal(10_000_000)) as fake:
        fake.penalty_s = 0.0
        fake.set_price(BTC, PRICE)
        data_dir = Path(tmp) / "data"
        for k in range(kills + 1):
            if k and fault_every and k % fault_every == 0:
                if rng.random() < 0.5:
                    fake.delay_reply("POST", "/v1/orders", seconds=1.5)  # past the 1 s timeout
                else:
                    fake.fail_next(3, status=500, method="POST", path="/v1/orders")
            log = Path(tmp) / f"driver-{k}.log"
            tag = FINAL if k == kills else f"c{k}"
            pid = zygote.spawn(fake.base_url, data_dir, journal_url, tag, log)
            ready, output = _wait_ready(pid, log, ready_timeout_s)
            if not ready:
                failed.append(f"start {k}: {output.strip()[-500:]}")
                _kill(pid)
                fake.clear_faults()
                continue
            if k == kills:  # the last start reconciles and stops by itself
                deadline = time.monotonic() + 60
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if DONE not in log.read_text(errors="replace"):
                    failed.append(f"final start: {log.read_text(errors='replace')[-500:]}")
                _kill(pid)
                break
            time.sleep(rng.uniform(0.1, 1.5))
            _kill(pid)
            fake.clear_faults()
        zygote.close()
        result = _compare(fake, data_dir, journal_url)
    result.update(
        kills=kills,
        restarts_failed=len(failed),
        failures=failed,
        seconds=round(time.perf_counter() - started, 1),
        seed=seed,
    )
    return result


def _compare(fake: Any, data_dir: Path, journal_url: str | None) -> dict[str, Any]:
    from store.journal import Journal

    url = journal_url or f"sqlite:///{data_dir / 'journal.db'}"
    with Journal.open(url) as journal:
        intent_rows = {row["identifier"]: row for row in journal.list_order_intents()}
        intents = set(intent_rows)
        fills = journal.list_fills()
        position = journal.positions().get(BTC)
        from_fills = journal.holdings_from_fills().get(BTC)
        starts = [e["payload"] for e in journal.events_of_type(["reconciliation"], limit=10_000)]
    orders = list(fake.orders.values())
    identifiers = [o.identifier for o in orders if o.identifier]
    trade_uuids = {t["uuid"] for o in orders for t in o.trades}
    journaled_uuids = {f["trade_uuid"] for f in fills if f["trade_uuid"]}
    held = fake.balances.get("BTC", {}).get("balance", Decimal(0)) + fake.balances.get(
        "BTC", {}
    ).get("locked", Decimal(0))
    journal_volume = Decimal(str(position["volume"])) if position else Decimal(0)
    fills_volume = from_fills.volume if from_fills else Decimal(0)
    missing = [
        f"{o.identifier}: {o.state} on the exchange, journal intent "
        + str({k: intent_rows.get(o.identifier, {}).get(k) for k in ("state", "executed_volume")})
        for o in orders
        if any(t["uuid"] not in journaled_uuids for t in o.trades)
    ]
    return {
        "missing": missing,
        "orders_accepted": len(orders),
        "lost": sum(1 for i in identifiers if i not in intents),
        "duplicated": len(identifiers) - len(set(identifiers)),
        "fills_missing": len(trade_uuids - journaled_uuids),
        "position_mismatches": int(journal_volume != held) + int(fills_volume != held),
        "fills_journaled": len(fills),
        # what the restarts found and repaired: proof the kills landed mid-path
        "starts_reconciled": len(starts),
        "fills_settled_at_start": sum(p["fills_recorded"] for p in starts),
        "orders_adopted_at_start": sum(len(p["adopted"]) for p in starts),
        "exchange_btc": str(held),
        "journal_btc": str(journal_volume),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--drive", nargs=3, metavar=("URL", "DATA_DIR", "TAG"), help=argparse.SUPPRESS
    )
    parser.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--journal-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.zygote:
        serve_zygote()
        return
    if args.drive:
        url, data_dir, tag = args.drive
        asyncio.run(drive(url, Path(data_dir), args.journal_url, tag))
        return
    result = crash_loop(args.kills, seed=args.seed, journal_url=args.journal_url)
    if args.json:
        print(json.dumps(result))
        return
    print("crash loop against the fake Upbit (synthetic prices), kill -9 at random points")
    for key in (
        "kills",
        "orders_accepted",
        "lost",
        "duplicated",
        "fills_missing",
        "position_mismatches",
        "restarts_failed",
        "fills_journaled",
        "starts_reconciled",
        "orders_adopted_at_start",
        "fills_settled_at_start",
        "exchange_btc",
        "journal_btc",
        "seconds",
    ):
        print(f"  {key:20} {result[key]}")
    for line in result["missing"]:
        print("  missing fill:", line)
    for line in result["failures"]:
        print("  failed start:", line)


if __name__ == "__main__":
    main()
