"""Full set, stage 3: the LSTM+CNN hybrid, fit on sequences ending in the base window."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ml.models import HybridSignalNet, hybrid_state_bytes
from ml.sequences import MarketTable, sequence_ends, sequence_features
from ml.training.torch_loops import (
    HybridTrainConfig,
    SequenceData,
    feature_stats,
    predict_hybrid,
    train_hybrid,
)
from ml.training.weights import TrainingWeights
from ml.training.windows import FullWindows


@dataclass(frozen=True)
class BaseHybrid:
    """The fitted hybrid with the inputs it reads and the standardisation it was fit with."""

    model: HybridSignalNet
    train_config: HybridTrainConfig  # as trained: the run's seed, the features' count
    data: SequenceData  # every table's standardised sequence inputs
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    ends: list[np.ndarray]  # per table: every row a full sequence ends at, labelled or not
    metrics: dict[str, Any]

    def predict(self, table_index: int, ends: np.ndarray) -> np.ndarray:
        """Return (len(ends), 2) P(buy), P(sell) of sequences ending at rows of one table."""
        return predict_hybrid(self.model, self.data, ends + self.data.offsets[table_index])

    def meta(self) -> dict[str, Any]:
        """Return what a predictor needs besides the weights (meta.json and the checkpoint)."""
        return {
            "feature_names": list(self.feature_names),
            "feature_mean": [float(v) for v in self.mean],
            "feature_std": [float(v) for v in self.std],
            "seq_len": self.train_config.model.seq_len,
            "config": self.model.config.to_json(),
        }

    def checkpoint(self) -> bytes:
        """Return the saved checkpoint: weights, config, meta and training metrics."""
        return hybrid_state_bytes(self.model, {"meta": self.meta(), "metrics": self.metrics})


def fit_base_hybrid(
    tables: Sequence[MarketTable],
    windows: FullWindows,
    config: HybridTrainConfig,
    *,
    seed: int,
    log: Callable[[str], None],
    weights: TrainingWeights | None = None,
) -> BaseHybrid:
    """Train on sequences ending in the base window; validate on those in the stack window.

    ``weights``: each training sequence weighted by its last bar's reviewers' record and age.
    """
    base_rows = windows.rows("base")
    # Recorded bars add trade_intensity and spread_bps to what the hybrid reads.
    names = sequence_features(tables, base_rows)
    train_config = replace(config, seed=seed, model=replace(config.model, n_features=len(names)))
    seq_len = train_config.model.seq_len
    mean, std = feature_stats(tables, base_rows, names)
    data = SequenceData.build(tables, mean, std, names)
    all_ends = [sequence_ends(t, seq_len, labelled=False) for t in tables]
    labelled = [e[~np.isnan(t.label_buy[e])] for t, e in zip(tables, all_ends, strict=True)]
    masks = windows.masks
    train_ends = data.ends([e[m["base"][e]] for e, m in zip(labelled, masks, strict=True)])
    valid_ends = data.ends([e[m["stack"][e]] for e, m in zip(labelled, masks, strict=True)])
    sample_weight = None
    if weights is not None:
        bar_ts = np.concatenate([t.ts for t in tables])  # the same rows as data's, in order
        sample_weight, _ = weights.weights(bar_ts[train_ends])
    model, metrics = train_hybrid(
        data, train_ends, valid_ends, train_config, log=log, sample_weight=sample_weight
    )
    return BaseHybrid(
        model=model,
        train_config=train_config,
        data=data,
        feature_names=names,
        mean=mean,
        std=std,
        ends=all_ends,
        metrics=metrics,
    )
