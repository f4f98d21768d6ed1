"""Load a model set and turn feature rows into buy and sell probabilities."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from ml.expected import VOLATILITY_FEATURE, ExpectedReturn
from ml.features import WARMED_FEATURES
from ml.registry import FULL_KIND, MODEL_BUY_FILE, MODEL_SELL_FILE, read_meta
from ml.stack import (
    CONTEXT_SOURCES,
    LinearStacker,
    add_context,
    calibrate,
    context_rows,
    logit,
)

_MINUTES_PER_DAY = 1440
BASE_PROBABILITY = "probability"
BASE_LOG_ABS_RETURN = "log_abs_return"
BASE_OUTPUTS = (BASE_PROBABILITY, BASE_LOG_ABS_RETURN)
"""What a full set's LightGBM base model predicts: a probability of its label, or the log of
the expected absolute forward return (a volatility forecast)."""


def base_score(values: npt.ArrayLike, output: str) -> npt.NDArray[np.float64]:
    """Return the stack's ``lgb_logit`` input from a base LightGBM model's predictions.

    A probability becomes its logit; a log absolute return is already an unbounded score and
    is passed on as it is (the stack is monotone increasing in it either way).
    """
    if output == BASE_PROBABILITY:
        return logit(np.asarray(values, dtype="float64"))
    if output == BASE_LOG_ABS_RETURN:
        return np.asarray(values, dtype="float64")
    raise ValueError(f"unknown base model output {output!r} (expected one of {BASE_OUTPUTS})")


def feature_matrix(
    features: Mapping[str, Mapping[str, float | None]], feature_names: Sequence[str]
) -> npt.NDArray[np.float64]:
    """Stack each market's feature row in `feature_names` order; None becomes NaN (missing)."""
    try:  # one pass in C (numpy reads None as NaN for float64); a missing name, below
        return np.array(
            [[row[name] for name in feature_names] for row in features.values()],
            dtype="float64",
        ).reshape(len(features), len(feature_names))
    except KeyError:
        pass
    rows = np.empty((len(features), len(feature_names)), dtype="float64")
    for i, (market, row) in enumerate(features.items()):
        for j, name in enumerate(feature_names):
            try:
                value = row[name]
            except KeyError:
                raise ValueError(f"feature row for {market} lacks feature {name!r}") from None
            rows[i, j] = np.nan if value is None else value
    return rows


Stacker = LinearStacker | lgb.Booster  # the logistic stacker; LightGBM in older sets


@dataclass(frozen=True)
class Prediction:
    """Probabilities that the price rises (buy) or falls (sell) past the label threshold.

    `expected_return`: the simple return expected over the label horizon, before costs, from
    the set's calibration (`ml.expected`); None when the set has none or the bar's volatility
    is unknown.
    """

    p_buy: float
    p_sell: float
    expected_return: float | None = None


class Predictor:
    """Score feature rows with a saved buy/sell LightGBM pair."""

    def __init__(
        self,
        model_id: str,
        feature_names: tuple[str, ...],
        meta: dict[str, Any],
        model_buy: lgb.Booster,
        model_sell: lgb.Booster,
    ) -> None:
        """Hold the two boosters and the feature order they expect."""
        self.model_id = model_id
        self.feature_names = feature_names
        self.meta = meta
        self._model_buy = model_buy
        self._model_sell = model_sell
        calibration = meta.get("expected_return")
        self.expected: ExpectedReturn | None = (
            ExpectedReturn.from_json(calibration) if calibration else None
        )
        self._volatility_at = (
            feature_names.index(VOLATILITY_FEATURE) if VOLATILITY_FEATURE in feature_names else None
        )

    def with_expected(self, expected: ExpectedReturn | None) -> None:
        """Use `expected` as the set's expected-return calibration (training fits it last)."""
        self.expected = expected

    def _predictions(
        self, markets: Sequence[str], rows: np.ndarray, p_buy: np.ndarray, p_sell: np.ndarray
    ) -> dict[str, Prediction]:
        """Package one bar's probabilities with their expected returns."""
        if self.expected is not None and self._volatility_at is not None:
            expected = self.expected.predict(p_buy, p_sell, rows[:, self._volatility_at])
        else:
            expected = np.full(len(markets), np.nan)
        return {
            market: Prediction(
                p_buy=float(p_buy[i]),
                p_sell=float(p_sell[i]),
                expected_return=float(expected[i]) if math.isfinite(expected[i]) else None,
            )
            for i, market in enumerate(markets)
        }

    def expected_returns(self, scores: np.ndarray, volatility: np.ndarray) -> np.ndarray:
        """Expected returns of batch scores ((n, 2) P(buy), P(sell)); NaN without a calibration."""
        if self.expected is None:
            return np.full(len(scores), np.nan)
        return self.expected.predict(scores[:, 0], scores[:, 1], volatility)

    @classmethod
    def load(cls, model_dir: Path) -> Predictor:
        """Load the model set in ``model_dir``: a quick pair, or a full set (FullPredictor)."""
        if read_meta(Path(model_dir)).get("kind") == FULL_KIND:
            return FullPredictor.load_full(Path(model_dir))
        return cls.load_pair(model_dir)

    @classmethod
    def load_pair(cls, model_dir: Path) -> Predictor:
        """Load only the LightGBM buy/sell pair of the model set in ``model_dir``."""
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        feature_names = tuple(str(name) for name in meta["feature_names"])
        boosters = []
        for file_name in (MODEL_BUY_FILE, MODEL_SELL_FILE):
            path = model_dir / file_name
            if not path.is_file():
                raise FileNotFoundError(f"model set {model_dir} lacks {file_name}")
            booster = lgb.Booster(model_file=str(path))
            if tuple(booster.feature_name()) != feature_names:
                raise ValueError(f"{path} features differ from meta.json feature_names")
            boosters.append(booster)
        return cls(str(meta["model_id"]), feature_names, meta, boosters[0], boosters[1])

    def predict(self, features: Mapping[str, Mapping[str, float | None]]) -> dict[str, Prediction]:
        """Return a Prediction per market; None or NaN values count as missing."""
        markets = list(features)
        if not markets:
            return {}
        rows = feature_matrix(features, self.feature_names)
        p_buy = np.asarray(self._model_buy.predict(rows, num_threads=1), dtype="float64")
        p_sell = np.asarray(self._model_sell.predict(rows, num_threads=1), dtype="float64")
        return self._predictions(markets, rows, p_buy, p_sell)

    def score_frames(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
        """Score whole per-market feature frames (batch path); (n, 2) P(buy), P(sell) each.

        Rows whose model features are all missing get NaN.
        """
        out: dict[str, np.ndarray] = {}
        for market, frame in frames.items():
            matrix = _matrix(frame, self.feature_names)
            result = np.full((len(matrix), 2), np.nan)
            rows = ~np.isnan(matrix).all(axis=1)
            if rows.any():
                result[rows, 0] = self._model_buy.predict(matrix[rows])
                result[rows, 1] = self._model_sell.predict(matrix[rows])
            out[market] = result
        return out


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """Return the named columns as float64 (a missing column is an error naming it)."""
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"feature frame lacks {missing}")
    return frame[list(names)].to_numpy(dtype="float64", na_value=np.nan)


def minute_of_day(tod_sin: float, tod_cos: float) -> int | None:
    """Recover the bar's UTC minute of day from its tod_sin / tod_cos features."""
    if not (math.isfinite(tod_sin) and math.isfinite(tod_cos)):
        return None
    angle = math.atan2(tod_sin, tod_cos)
    return round(angle / (2.0 * math.pi / _MINUTES_PER_DAY)) % _MINUTES_PER_DAY


_BATCH = 2048


def _padded(batch: np.ndarray) -> np.ndarray:
    """Pad a short last batch with zero sequences up to ``_BATCH``.

    The float32 kernels round a row differently in batches of different sizes (by up to
    ~5e-9 in a probability): always the same batch shape keeps a bar's score the same
    whether the data ends right after it or runs on (the look-ahead check compares exactly).
    """
    if len(batch) == _BATCH:
        return batch
    pad = np.zeros((_BATCH - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, pad])


class FullPredictor(Predictor):
    """Score with the full set: LightGBM pair + LSTM+CNN hybrid -> stack -> per-coin calibration.

    ``predict`` is called once per bar close with every market's newest feature row; the
    hybrid needs the last ``seq_len`` rows, so each market's standardised rows are kept here.
    A row one minute after the previous one (read off tod_sin/tod_cos) extends the sequence,
    the same minute replaces the newest row, anything else starts it again. Until a market has
    ``seq_len`` consecutive rows its hybrid input is missing and the stack (trained with such
    rows too) scores it without.
    """

    def __init__(
        self,
        model_id: str,
        feature_names: tuple[str, ...],
        meta: dict[str, Any],
        model_buy: lgb.Booster,
        model_sell: lgb.Booster,
        *,
        hybrid: Any,
        stackers: dict[str, Stacker],
        model_dir: Path,
    ) -> None:
        """Hold every model and the per-market sequences."""
        super().__init__(model_id, feature_names, meta, model_buy, model_sell)
        hybrid_meta = meta["hybrid"]
        self._hybrid = hybrid
        self._seq_names = tuple(str(n) for n in hybrid_meta["feature_names"])
        # A row enters a sequence when its warmed features are defined; the four-hour and the
        # live-only ones may still be missing (standardised to 0, as in training).
        self._seq_required = np.array([n in WARMED_FEATURES for n in self._seq_names])
        self._seq_mean = np.asarray(hybrid_meta["feature_mean"], dtype="float64")
        self._seq_std = np.asarray(hybrid_meta["feature_std"], dtype="float64")
        self.seq_len = int(hybrid_meta["seq_len"])
        self._stackers = stackers
        self._stack_inputs = tuple(str(n) for n in meta["stack"]["inputs"])
        self._needs_context = any(
            n.startswith("ctx_") or n == "rel_volatility_60" for n in self._stack_inputs
        )
        self._calibration: dict[str, dict[str, list[float]]] = meta["stack"]["calibration"]
        # Sets saved before the option existed have probability outputs on both sides.
        outputs = meta["stack"].get("base_outputs", {})
        self._base_outputs = {
            side: str(outputs.get(side, BASE_PROBABILITY)) for side in ("buy", "sell")
        }
        self._sequences: dict[str, deque[np.ndarray]] = {}
        self._last_minute: dict[str, int] = {}
        self.model_dir = model_dir

    @property
    def anomaly_path(self) -> Path:
        """Return the autoencoder's exported weights (.npz, read by ``ml.anomaly``)."""
        return self.model_dir / str(self.meta["anomaly"]["file"])

    @classmethod
    def load_full(cls, model_dir: Path) -> FullPredictor:
        """Load a full model set (torch is imported here, not at module import)."""
        import torch

        from ml.models import load_hybrid

        quick = Predictor.load_pair(model_dir)
        meta = quick.meta
        for key in ("hybrid", "stack", "anomaly"):
            if key not in meta:
                raise ValueError(f"full model set {model_dir} lacks meta {key!r}")
        hybrid_path = model_dir / str(meta["hybrid"]["file"])
        if not hybrid_path.is_file():
            raise FileNotFoundError(f"model set {model_dir} lacks {hybrid_path.name}")
        payload = torch.load(hybrid_path, map_location="cpu", weights_only=True)
        hybrid = load_hybrid(payload)
        stackers: dict[str, Stacker] = {}
        if meta["stack"].get("kind") == "logistic":
            for side, weights in meta["stack"]["models"].items():
                stackers[str(side)] = LinearStacker.from_json(weights)
        else:  # sets saved before 2026-11-25: a LightGBM stacker per side, in its own file
            for side, name in meta["stack"]["files"].items():
                path = model_dir / str(name)
                if not path.is_file():
                    raise FileNotFoundError(f"model set {model_dir} lacks {name}")
                stackers[str(side)] = lgb.Booster(model_file=str(path))
        return cls(
            quick.model_id,
            quick.feature_names,
            meta,
            quick._model_buy,
            quick._model_sell,
            hybrid=hybrid,
            stackers=stackers,
            model_dir=Path(model_dir),
        )

    def reset(self) -> None:
        """Forget every market's sequence."""
        self._sequences.clear()
        self._last_minute.clear()

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        scaled = (values - self._seq_mean) / self._seq_std
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype("float32")

    def _hybrid_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Return (B, 2) probabilities for (B, T, F) float32 sequences."""
        import torch

        with torch.no_grad():
            logits = self._hybrid(torch.from_numpy(np.ascontiguousarray(batch)))
            return np.asarray(torch.sigmoid(logits).numpy(), dtype="float64")

    def _observe(self, market: str, row: Mapping[str, float | None]) -> None:
        """Extend, replace or restart the market's sequence with this row."""
        sin, cos = row.get("tod_sin"), row.get("tod_cos")
        minute = None if sin is None or cos is None else minute_of_day(float(sin), float(cos))
        values = np.array(
            [np.nan if row.get(n) is None else float(row[n]) for n in self._seq_names]  # type: ignore[arg-type]
        )
        standardised = self._standardise(values)
        sequence = self._sequences.setdefault(market, deque(maxlen=self.seq_len))
        last = self._last_minute.get(market)
        if minute is None or np.isnan(values[self._seq_required]).any():
            sequence.clear()
            self._last_minute.pop(market, None)
            return
        if last is not None and minute == last and sequence:
            sequence[-1] = standardised
        else:
            if last is None or (last + 1) % _MINUTES_PER_DAY != minute:
                sequence.clear()
            sequence.append(standardised)
        self._last_minute[market] = minute

    def _stack(
        self,
        markets: Sequence[str],
        frame: Mapping[str, Any],
        base: np.ndarray,
        nn: np.ndarray,
    ) -> np.ndarray:
        """Return calibrated (n, 2) probabilities from base (n, 2) and hybrid (n, 2) ones."""
        out = np.empty((len(base), 2))
        for k, side in enumerate(("buy", "sell")):
            columns = {
                "lgb_logit": base_score(base[:, k], self._base_outputs[side]),
                "nn_logit": logit(nn[:, k]),
            }
            inputs = np.column_stack(
                [
                    columns[name] if name in columns else np.asarray(frame[name], dtype="float64")
                    for name in self._stack_inputs
                ]
            )
            raw = np.asarray(self._stackers[side].predict(inputs, num_threads=1))
            out[:, k] = calibrate(raw, markets, self._calibration[side])
        return out

    def predict(self, features: Mapping[str, Mapping[str, float | None]]) -> dict[str, Prediction]:
        """Return calibrated P(buy), P(sell) per market for this bar's feature rows."""
        markets = list(features)
        if not markets:
            return {}
        rows = feature_matrix(features, self.feature_names)
        for market in markets:
            self._observe(market, features[market])
        base = np.column_stack(
            [
                self._model_buy.predict(rows, num_threads=1),
                self._model_sell.predict(rows, num_threads=1),
            ]
        )
        nn = np.full((len(markets), 2), np.nan)
        ready = [
            i for i, m in enumerate(markets) if len(self._sequences.get(m, ())) == self.seq_len
        ]
        if ready:
            batch = np.stack([np.stack(self._sequences[markets[i]]) for i in ready])
            nn[ready] = self._hybrid_probabilities(batch)
        # Plain arrays, not a DataFrame: this is the live path, once per bar.
        frame: dict[str, Any] = {name: rows[:, j] for j, name in enumerate(self.feature_names)}
        if self._needs_context:  # only the older tree stackers read cross-market context
            context = context_rows(
                {m: {n: float(frame[n][i]) for n in CONTEXT_SOURCES} for i, m in enumerate(markets)}
            )
            for name in context[markets[0]]:
                frame[name] = np.array([context[m][name] for m in markets])
        probabilities = self._stack(markets, frame, base, nn)
        return self._predictions(markets, rows, probabilities[:, 0], probabilities[:, 1])

    def score_frames(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
        """Score whole per-market frames (ts, segment and the features), batch path.

        Same numbers as calling ``predict`` bar by bar over the same bars with every market's
        row (up to float32 rounding in the hybrid): context is taken over the markets given.
        """
        pieces: list[pd.DataFrame] = []
        for market, frame in frames.items():
            for column in ("ts", "segment"):
                if column not in frame.columns:
                    raise ValueError(f"feature frame of {market} lacks {column!r}")
            matrix = _matrix(frame, self.feature_names)
            seq_values = _matrix(frame, self._seq_names)
            warmed = ~np.isnan(seq_values[:, self._seq_required]).any(axis=1)
            scored = ~np.isnan(matrix).all(axis=1)
            nn = np.full((len(frame), 2), np.nan)
            segment = frame["segment"].to_numpy()
            n, length = len(frame), self.seq_len
            if n >= length:
                counts = np.convolve(
                    warmed.astype("int64"), np.ones(length, dtype="int64"), "valid"
                )
                ends = np.arange(length - 1, n)
                ok = (counts == length) & (segment[ends] == segment[ends - length + 1])
                ends = ends[ok]
                standardised = self._standardise(seq_values)
                for start in range(0, len(ends), _BATCH):
                    chunk = ends[start : start + _BATCH]
                    batch = standardised[chunk[:, None] + np.arange(-length + 1, 1)[None, :]]
                    nn[chunk] = self._hybrid_probabilities(_padded(batch))[: len(chunk)]
            piece = pd.DataFrame(matrix, columns=list(self.feature_names))
            piece["ts"] = pd.to_datetime(frame["ts"].to_numpy(), utc=True)
            piece["market"] = market
            piece["position"] = np.arange(n)
            piece["nn_buy"] = nn[:, 0]
            piece["nn_sell"] = nn[:, 1]
            pieces.append(piece[scored])
        out = {market: np.full((len(frame), 2), np.nan) for market, frame in frames.items()}
        if not pieces:
            return out
        rows = pd.concat(pieces, ignore_index=True)
        if self._needs_context:
            rows = add_context(rows)
        matrix = rows[list(self.feature_names)].to_numpy(dtype="float64")
        base = np.column_stack([self._model_buy.predict(matrix), self._model_sell.predict(matrix)])
        nn = rows[["nn_buy", "nn_sell"]].to_numpy(dtype="float64")
        markets = rows["market"].astype(str).tolist()
        probabilities = self._stack(markets, rows, base, nn)
        positions = rows["position"].to_numpy()
        for market in frames:
            mine = (rows["market"] == market).to_numpy()
            out[market][positions[mine]] = probabilities[mine]
        return out
