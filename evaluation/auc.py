"""AUCs of a model set on candles: P(buy) and P(sell) against their labels, and the
volatility-only baseline on the same rows (the batch path: regularize, features, labels,
Predictor)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.data import regularize
from ml.evaluate import roc_auc
from ml.features import WARMED_FEATURES, compute_features
from ml.labels import make_labels
from ml.predict import Predictor

VOL_FEATURE = "volatility_60"


def score_bars(candles: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """Features, labels and model scores of every bar, per market (the training path).

    Returns market, ts, close, filled, warmed (every WARMED_FEATURES column defined), label_buy,
    label_sell, p_buy, p_sell and the volatility feature.
    """
    label = predictor.meta.get("label") or {}
    horizon = int(label.get("horizon", 10))
    threshold = float(label.get("threshold", 0.002))
    needed = list(WARMED_FEATURES)  # the four-hour features are missing until LONG_BARS
    pieces = []
    prepared: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]] = {}
    for market, rows in candles.groupby("market", sort=True):
        frame = regularize(rows.reset_index(drop=True))
        features = compute_features(frame)
        labels = make_labels(frame, horizon=horizon, threshold=threshold)
        warmed = features[needed].notna().all(axis=1).to_numpy()
        prepared[str(market)] = (frame, features, labels, warmed)
    # One batch call over every market: a full model set needs each market's bar sequence and
    # the other markets' rows at the same bar (its stack's context inputs).
    scores = predictor.score_frames(
        {
            market: features[warmed].assign(
                ts=frame["ts"].to_numpy()[warmed], segment=frame["segment"].to_numpy()[warmed]
            )
            for market, (frame, features, labels, warmed) in prepared.items()
        }
    )
    for market, (frame, features, labels, warmed) in prepared.items():
        p_buy = np.full(len(frame), np.nan)
        p_sell = np.full(len(frame), np.nan)
        if warmed.any():
            p_buy[warmed] = scores[market][:, 0]
            p_sell[warmed] = scores[market][:, 1]
        pieces.append(
            pd.DataFrame(
                {
                    "market": str(market),
                    "ts": frame["ts"].to_numpy(),
                    "close": frame["close"].to_numpy(),
                    "filled": frame["filled"].to_numpy(),
                    "warmed": warmed,
                    "label_buy": labels["label_buy"].to_numpy(),
                    "label_sell": labels["label_sell"].to_numpy(),
                    "p_buy": p_buy,
                    "p_sell": p_sell,
                    VOL_FEATURE: features[VOL_FEATURE].to_numpy(),
                }
            )
        )
    scored = pd.concat(pieces, ignore_index=True)
    scored["ts"] = pd.to_datetime(scored["ts"], utc=True)
    return scored


def auc_metrics(rows: pd.DataFrame) -> dict[str, float | None]:
    """AUCs of P(buy), the volatility baseline and P(sell) on real, warmed, labelled rows."""
    buy_rows = rows[~rows["filled"] & rows["warmed"] & rows["label_buy"].notna()]
    sell_rows = rows[~rows["filled"] & rows["warmed"] & rows["label_sell"].notna()]
    return {
        "auc_buy": roc_auc(buy_rows["label_buy"], buy_rows["p_buy"]),
        "baseline_auc_vol60": roc_auc(buy_rows["label_buy"], buy_rows[VOL_FEATURE]),
        "auc_sell": roc_auc(sell_rows["label_sell"], sell_rows["p_sell"]),
        "scored_bars": len(buy_rows),
        "buy_label_rate": float(buy_rows["label_buy"].astype("float64").mean())
        if len(buy_rows)
        else None,
    }
