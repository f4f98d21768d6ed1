"""Load a model set and turn feature rows into buy and sell probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.registry import MODEL_BUY_FILE, MODEL_SELL_FILE, read_meta


@dataclass(frozen=True)
class Prediction:
    """Probabilities that the price rises (buy) or falls (sell) past the label threshold."""

    p_buy: float
    p_sell: float


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

    @classmethod
    def load(cls, model_dir: Path) -> Predictor:
        """Load the model set in ``model_dir``."""
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
        rows = np.empty((len(markets), len(self.feature_names)), dtype="float64")
        for i, market in enumerate(markets):
            row = features[market]
            for j, name in enumerate(self.feature_names):
                try:
                    value = row[name]
                except KeyError:
                    raise ValueError(f"feature row for {market} lacks feature {name!r}") from None
                rows[i, j] = np.nan if value is None else value
        p_buy = np.asarray(self._model_buy.predict(rows, num_threads=1), dtype="float64")
        p_sell = np.asarray(self._model_sell.predict(rows, num_threads=1), dtype="float64")
        return {
            market: Prediction(p_buy=float(p_buy[i]), p_sell=float(p_sell[i]))
            for i, market in enumerate(markets)
        }
