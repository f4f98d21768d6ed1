"""Tests for ml.labels: forward-return labels stay inside their segment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.labels import make_labels


def _regular(closes: list[float], segments: list[int]) -> pd.DataFrame:
    """Build a regularized-looking frame from closes and segment ids."""
    return pd.DataFrame({"close": closes, "segment": segments})


def test_labels_mark_rises_and_falls_past_the_threshold() -> None:
    frame = _regular([100.0, 100.0, 101.0, 99.0, 100.1], [0] * 5)

    labels = make_labels(frame, horizon=2, threshold=0.005)

    assert labels["forward_return"].iloc[:3].tolist() == pytest.approx([0.01, -0.01, -0.00891089])
    assert labels["label_buy"].iloc[:3].tolist() == [1, 0, 0]
    assert labels["label_sell"].iloc[:3].tolist() == [0, 1, 1]
    assert str(labels["label_buy"].dtype) == "Int8"


def test_labels_are_missing_where_the_horizon_passes_the_segment_end() -> None:
    closes = [100.0, 110.0, 120.0, 130.0, 50.0, 60.0, 70.0]
    frame = _regular(closes, [0, 0, 0, 0, 1, 1, 1])

    labels = make_labels(frame, horizon=2, threshold=0.0)

    known = labels["forward_return"].notna().tolist()
    assert known == [True, True, False, False, True, False, False]
    assert labels["label_buy"].isna().tolist() == [not k for k in known]
    assert labels["label_sell"].isna().tolist() == [not k for k in known]
    # Bar 3 would reach into segment 1 (a 60% fall) if segments were ignored.
    assert np.isnan(labels["forward_return"].iloc[3])


def test_labels_require_a_segment_column() -> None:
    with pytest.raises(ValueError, match="segment"):
        make_labels(pd.DataFrame({"close": [1.0, 2.0]}))
