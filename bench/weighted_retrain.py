"""Walk-forward: retraining weighted by scripted reviewers' record against unweighted retraining.

Real Upbit 1m candles from ../shared/data; the reviewers are scripted (no real LLM answers
exist here), so what this measures is the weighting machinery on real prices, not what real
LLMs would bring. Every fifth minute, per market, a buy proposal; two scripted reviewers:

- ``noisy``: agrees exactly when following the proposal pays after fees, except in a random
  30% of cases where it says the opposite (right 70% of the time, seeded);
- ``calm``: right when the market's last-hour volatility is below that market's median,
  wrong otherwise (so weighting favours calm periods).

Each window trains the quick set three times on the same days (unweighted, weighted by each
reviewer with the step rule, right x2, wrong x0.5, hourly periods, no recency) with
`app.training.train_model_set`, whose policy evaluation window is the test days (no model saw
them), and prints the policy's return after fees there and the buy model's AUC on those days.
Verdicts count only once their window closed before the models' cutoff (the trainer enforces
it).

Run from the project root: ``.venv/bin/python bench/weighted_retrain.py [--windows 5]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from app.training import evaluation_start, train_model_set  # noqa: E402
from evaluation.outcomes import CloseBook, forward_return, window_end  # noqa: E402
from exchange.rules import FEE_RATE  # noqa: E402
from ml.data import load_candles  # noqa: E402
from ml.features import FEATURE_NAMES  # noqa: E402
from ml.training.quick_pair import build_dataset  # noqa: E402
from ml.training.scoring import auc  # noqa: E402
from ml.training.weights import JudgedVerdict, TrainingWeights, WeightRule  # noqa: E402
from store.reviewer_ledger import proposal_net_return, verdict_right  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "candles_upbit_1m.parquet"
HORIZON = 10


def scripted_verdicts(
    candles: pd.DataFrame, until: pd.Timestamp, profile: str, seed: int
) -> tuple[JudgedVerdict, ...]:
    """The scripted reviewer's judged verdicts on buy proposals every 5 minutes before `until`."""
    rng = np.random.default_rng(seed)
    book = CloseBook.from_candles(candles)
    verdicts = []
    for market, one in candles.groupby("market", sort=True):
        one = one.set_index("ts").sort_index()
        volatility = np.log(one["close"]).diff().rolling(60).std()
        calm_line = volatility[volatility.index < until].median()
        for ts in one.index[(one.index < until) & (one.index.minute % 5 == 0)]:
            at = ts.to_pydatetime()
            forward = forward_return(book, str(market), at, HORIZON, now=until.to_pydatetime())
            if forward is None or not np.isfinite(volatility.get(ts, np.nan)):
                continue
            net = proposal_net_return("buy", forward, float(FEE_RATE))
            honest = rng.random() >= 0.3 if profile == "noisy" else volatility[ts] < calm_line
            agrees = (net > 0) == honest
            verdict = "buy" if agrees else "hold"
            verdicts.append(
                JudgedVerdict(
                    bar_ts=at,
                    closes_at=window_end(at, HORIZON),
                    right=verdict_right(verdict, "buy", net),
                )
            )
    return tuple(verdicts)


def one_window(
    candles: pd.DataFrame, test_start: pd.Timestamp, test_end: pd.Timestamp, settings: Settings
) -> dict[str, Any]:
    """Train unweighted and weighted sets before `test_start`; their results on the test days."""
    window = candles[candles["ts"] < test_end].reset_index(drop=True)
    span = window["ts"].max() - window["ts"].min()
    fraction = float((test_end - test_start) / span)
    rule = WeightRule(rule="step", right_weight=2.0, wrong_weight=0.5, period_minutes=60)
    dataset = build_dataset(window, horizon=HORIZON, threshold=0.002)
    test_rows = dataset[dataset["ts"] >= test_start]
    x_test = test_rows[list(FEATURE_NAMES)].to_numpy(dtype="float64")
    out: dict[str, Any] = {"test_start": test_start.isoformat(), "test_end": test_end.isoformat()}
    for name in ("unweighted", "noisy", "calm"):
        weights = None
        if name != "unweighted":
            verdicts = scripted_verdicts(window, test_start, name, seed=7)
            weights = TrainingWeights(verdicts, rule, known_at=test_start.to_pydatetime())
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as models:
            trained = train_model_set(
                window, Path(models), settings, quick=True, eval_fraction=fraction, weights=weights
            )
            booster = lgb.Booster(model_file=str(trained.model_dir / "model_buy.txt"))
            test_auc = auc(test_rows["label_buy"].to_numpy(), np.asarray(booster.predict(x_test)))
        evaluation = trained.meta["policy_evaluation"]
        summary = trained.meta.get("training_weights") or {}
        out[name] = {
            "return_after_fees": evaluation["strategy"]["total_return"],
            "entries": evaluation["strategy"]["entries"],
            "auc_buy_test": test_auc,
            "up_weighted": summary.get("up_weighted"),
            "down_weighted": summary.get("down_weighted"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        out["buy_and_hold"] = evaluation["buy_and_hold_return"]
        out["evaluation_start"] = evaluation_start(window, fraction).isoformat()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-days", type=float, default=10.0)
    parser.add_argument("--test-days", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    candles = load_candles([DATA])
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()))  # type: ignore[call-arg]
    first = candles["ts"].min()
    test = pd.Timedelta(days=args.test_days)
    results = []
    for k in range(args.windows):
        test_start = first + pd.Timedelta(days=args.train_days) + k * test
        test_end = test_start + test
        if test_end > candles["ts"].max():
            break
        window = one_window(
            candles[candles["ts"] >= test_start - timedelta(days=args.train_days)],
            test_start,
            test_end,
            settings,
        )
        results.append(window)
        if not args.json:
            cells = "  ".join(
                f"{n} {window[n]['return_after_fees'] * 100:+.2f}% ({window[n]['entries']}) "
                f"auc {window[n]['auc_buy_test']:.4f}"
                for n in ("unweighted", "noisy", "calm")
            )
            hold = window["buy_and_hold"] * 100
            print(f"{window['test_start'][:10]}: {cells}  buy-and-hold {hold:+.2f}%")
    total: dict[str, Any] = {}
    for name in ("unweighted", "noisy", "calm"):
        returns = [w[name]["return_after_fees"] for w in results]
        total[name] = {
            "mean_return": float(np.mean(returns)),
            "mean_auc_buy_test": float(np.mean([w[name]["auc_buy_test"] for w in results])),
            "windows": len(returns),
        }
    for name in ("noisy", "calm"):
        total[name]["return_beats_unweighted"] = sum(
            w[name]["return_after_fees"] > w["unweighted"]["return_after_fees"] for w in results
        )
        total[name]["auc_beats_unweighted"] = sum(
            w[name]["auc_buy_test"] > w["unweighted"]["auc_buy_test"] for w in results
        )
    if args.json:
        print(json.dumps({"windows": results, "total": total}, default=str))
    else:
        print(json.dumps(total))


if __name__ == "__main__":
    main()
