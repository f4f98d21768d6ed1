"""What training reports about scores: ROC AUC, and decision thresholds read off quantiles."""

from __future__ import annotations

import numpy as np

from ml.evaluate import roc_auc

# Decision thresholds are read off an out-of-sample window (never off data reported later):
# enter only on the top 2% of P(buy), exit on the top 5% of P(sell).
ENTRY_QUANTILE = 0.98
EXIT_QUANTILE = 0.95


def auc(labels: np.ndarray, scores: np.ndarray, *, digits: int | None = None) -> float | None:
    """Return the ROC AUC over rows where both are known, rounded to ``digits`` if given.

    None when it is undefined (no rows, or one label class only).
    """
    value = roc_auc(labels, scores)
    if value is None or digits is None:
        return value
    return round(value, digits)


def thresholds_source(window: str) -> str:
    """Return the meta note saying where the decision thresholds were read."""
    return f"{window} quantiles {ENTRY_QUANTILE} (buy) and {EXIT_QUANTILE} (sell)"


def decision_threshold(side: str, probabilities: np.ndarray) -> tuple[str, float]:
    """Return the meta key and value of ``side``'s threshold: a high quantile of its scores."""
    if side == "buy":
        return "entry_probability_min", round(float(np.quantile(probabilities, ENTRY_QUANTILE)), 4)
    return "exit_probability_min", round(float(np.quantile(probabilities, EXIT_QUANTILE)), 4)
