"""Whether a model set has shown an edge: its policy's result on its own hold-out window."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def model_evidence(evaluation: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Return (proven, why): proven only when the policy made money after fees out of sample.

    `evaluation` is a model set's `policy_evaluation` (meta.json), written by `lxa train`.
    """
    if not evaluation:
        return False, "the model set carries no out-of-sample policy result (train it again)"
    strategy = evaluation.get("strategy") or {}
    total = strategy.get("total_return")
    if not isinstance(total, int | float) or not math.isfinite(total):
        return False, "the model set's out-of-sample policy result is unreadable"
    if not strategy.get("entries"):
        return False, "its policy made no trade on its hold-out window: no evidence of an edge"
    if total <= 0:
        return False, f"its policy lost {total * 100:.2f}% after fees on its hold-out window"
    return True, f"its policy made {total * 100:+.2f}% after fees on its hold-out window"
