"""What the reviewer and sizer protocols share with the sizing node: the streak count."""

from __future__ import annotations

import pytest

from graph.review import streak


@pytest.mark.parametrize(
    ("results", "losing", "count"),
    [
        ([], True, 0),
        ([-0.01, -0.02], True, 2),
        ([-0.01, 0.02, -0.01], True, 1),
        ([-0.01, 0.0], True, 0),
        ([0.01, 0.02, -0.01], False, 0),
        ([-0.01, 0.01, 0.02], False, 2),
    ],
)
def test_streak_counts_the_latest_run_and_a_flat_result_breaks_it(
    results: list[float], losing: bool, count: int
) -> None:
    assert streak(results, losing=losing) == count
