"""The expected-return calibration: no signal gives zero, a real signal survives, trend is out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.expected import CalibrationError, ExpectedReturn, fit_expected_return

HORIZON = 10


def synthetic(n: int, signal: float, trend: float, seed: int = 3) -> tuple[np.ndarray, ...]:
    """Synthetic rows (labelled as such): scores, volatility and forward returns."""
    rng = np.random.default_rng(seed)
    p_buy = rng.uniform(0.1, 0.5, n)
    p_sell = rng.uniform(0.1, 0.5, n)
    vol = rng.uniform(0.0005, 0.003, n)
    scale = vol * math.sqrt(HORIZON)
    z = rng.standard_normal(n) + signal * (p_buy - p_sell) / 0.4 + trend
    return p_buy, p_sell, vol, z * scale


def test_scores_that_predict_nothing_give_an_expected_return_near_zero() -> None:
    p_buy, p_sell, vol, ret = synthetic(40_000, signal=0.0, trend=0.0)

    fitted = fit_expected_return(p_buy, p_sell, vol, ret, horizon=HORIZON)

    assert max(abs(v) for v in fitted.z) < 0.02  # a z of 0.02 at 0.3%/min is 0.2 bps
    assert fitted.details["tau"] < 0.02


def test_a_real_signal_gives_a_non_decreasing_expected_return_that_scales_with_volatility() -> None:
    p_buy, p_sell, vol, ret = synthetic(40_000, signal=0.5, trend=0.0)

    fitted = fit_expected_return(p_buy, p_sell, vol, ret, horizon=HORIZON)
    low = fitted.one(0.1, 0.5, 0.001)
    high = fitted.one(0.5, 0.1, 0.001)
    high_vol = fitted.one(0.5, 0.1, 0.002)

    assert list(fitted.z) == sorted(fitted.z)
    assert low is not None and high is not None and high_vol is not None
    assert low < 0 < high
    assert high_vol == pytest.approx(2 * high)


def test_the_windows_trend_is_taken_out() -> None:
    p_buy, p_sell, vol, ret = synthetic(40_000, signal=0.0, trend=-0.3)

    fitted = fit_expected_return(p_buy, p_sell, vol, ret, horizon=HORIZON)

    assert fitted.details["trend_z_removed"] == pytest.approx(-0.3, abs=0.02)
    assert max(abs(v) for v in fitted.z) < 0.02


def test_unknown_volatility_gives_none_and_the_calibration_round_trips() -> None:
    p_buy, p_sell, vol, ret = synthetic(5_000, signal=0.5, trend=0.0)
    fitted = fit_expected_return(p_buy, p_sell, vol, ret, horizon=HORIZON)

    again = ExpectedReturn.from_json(fitted.to_json())

    assert again.one(0.4, 0.1, None) is None
    assert again.one(0.4, 0.1, 0.001) == fitted.one(0.4, 0.1, 0.001)


def test_too_few_rows_is_a_clear_error() -> None:
    p_buy, p_sell, vol, ret = synthetic(100, signal=0.0, trend=0.0)

    with pytest.raises(CalibrationError, match="at least 2000"):
        fit_expected_return(p_buy, p_sell, vol, ret, horizon=HORIZON)
