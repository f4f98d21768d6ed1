"""The PyTorch training loops: the LSTM+CNN hybrid and the autoencoder (models in ``ml.models``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ml.anomaly import CHANNELS, AnomalyModel, fit_score_map
from ml.features import FEATURE_NAMES
from ml.models import AutoencoderConfig, HybridConfig, HybridSignalNet, WindowAutoencoder
from ml.sequences import SEQUENCE_FEATURES, MarketTable, gather_sequences
from ml.training.scoring import auc


def _columns(names: Sequence[str]) -> list[int]:
    """Return the FEATURE_NAMES columns of the sequence features ``names``."""
    return [FEATURE_NAMES.index(n) for n in names]


def set_seed(seed: int) -> None:
    """Seed torch and numpy (torch's CPU kernels are deterministic for these layers)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def standardise(matrix: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Return float32 (x - mean) / std with missing values at 0 (the training mean)."""
    scaled = (matrix - mean) / std
    return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype("float32")


@dataclass
class HybridTrainConfig:
    """How the hybrid is trained."""

    epochs: int = 4
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    samples_per_epoch: int = 80_000
    threads: int = 2
    seed: int = 7
    model: HybridConfig = field(default_factory=HybridConfig)


@dataclass
class SequenceData:
    """All markets' standardised sequence inputs, concatenated, with per-table offsets."""

    matrix: np.ndarray  # (rows, F) float32
    offsets: list[int]
    labels: np.ndarray  # (rows, 2) float32 (NaN where unknown)

    @classmethod
    def build(
        cls,
        tables: Sequence[MarketTable],
        mean: np.ndarray,
        std: np.ndarray,
        names: Sequence[str] = SEQUENCE_FEATURES,
    ) -> SequenceData:
        """Standardise every table's sequence features (``names``) and stack them."""
        columns = _columns(names)
        offsets: list[int] = []
        start = 0
        for table in tables:
            offsets.append(start)
            start += len(table)
        matrix = np.concatenate([standardise(t.features[:, columns], mean, std) for t in tables])
        labels = np.concatenate(
            [np.column_stack([t.label_buy, t.label_sell]) for t in tables]
        ).astype("float32")
        return cls(matrix=matrix, offsets=offsets, labels=labels)

    def ends(self, per_table: Sequence[np.ndarray]) -> np.ndarray:
        """Turn per-table end rows into global rows."""
        return np.concatenate(
            [np.asarray(e, dtype="int64") + o for e, o in zip(per_table, self.offsets, strict=True)]
        )


def feature_stats(
    tables: Sequence[MarketTable],
    rows: Sequence[np.ndarray],
    names: Sequence[str] = SEQUENCE_FEATURES,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the mean and standard deviation of the sequence features over the given rows."""
    columns = _columns(names)
    stacked = np.concatenate([t.features[r][:, columns] for t, r in zip(tables, rows, strict=True)])
    mean = np.nanmean(stacked, axis=0)
    std = np.nanstd(stacked, axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def predict_hybrid(
    model: HybridSignalNet, data: SequenceData, ends: np.ndarray, batch_size: int = 2048
) -> np.ndarray:
    """Return (len(ends), 2) probabilities P(buy), P(sell)."""
    model.eval()
    seq_len = model.config.seq_len
    out = np.empty((len(ends), 2))
    with torch.no_grad():
        for start in range(0, len(ends), batch_size):
            batch = ends[start : start + batch_size]
            x = torch.from_numpy(gather_sequences(data.matrix, batch, seq_len))
            out[start : start + len(batch)] = torch.sigmoid(model(x)).numpy()
    return out


def train_hybrid(
    data: SequenceData,
    train_ends: np.ndarray,
    valid_ends: np.ndarray | None,
    config: HybridTrainConfig,
    log: Any = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[HybridSignalNet, dict[str, Any]]:
    """Train the LSTM+CNN hybrid on sequences ending at ``train_ends``; return it and metrics.

    ``sample_weight``: one weight per entry of ``train_ends`` (``ml.training.weights``): each
    sequence's loss counts in proportion to it (a weighted mean over the batch).
    """
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = HybridSignalNet(config.model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seq_len = config.model.seq_len
    history: list[dict[str, float | None]] = []
    per_epoch = min(config.samples_per_epoch, len(train_ends))
    steps = max(1, per_epoch // config.batch_size) * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=steps
    )
    weight_of = None
    if sample_weight is not None:
        if len(sample_weight) != len(train_ends):
            raise ValueError("sample_weight needs one weight per training sequence")
        weight_of = np.zeros(len(data.matrix), dtype="float32")
        weight_of[train_ends] = sample_weight
        per_sample = torch.nn.BCEWithLogitsLoss(reduction="none")
    for epoch in range(config.epochs):
        model.train()
        chosen = rng.choice(train_ends, size=per_epoch, replace=False)
        total = 0.0
        batches = 0
        for start in range(0, per_epoch - config.batch_size + 1, config.batch_size):
            batch = chosen[start : start + config.batch_size]
            x = torch.from_numpy(gather_sequences(data.matrix, batch, seq_len))  # (B, T, F)
            y = torch.from_numpy(data.labels[batch])  # (B, 2)
            if weight_of is None:
                loss = loss_fn(model(x), y)
            else:
                w = torch.from_numpy(weight_of[batch])  # (B,)
                loss = (per_sample(model(x), y).mean(dim=1) * w).sum() / w.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item()
            batches += 1
        record: dict[str, float | None] = {
            "epoch": epoch + 1,
            "train_loss": total / max(batches, 1),
        }
        if valid_ends is not None and len(valid_ends):
            probs = predict_hybrid(model, data, valid_ends)
            labels = data.labels[valid_ends]
            record["auc_buy_valid"] = auc(labels[:, 0], probs[:, 0])
            record["auc_sell_valid"] = auc(labels[:, 1], probs[:, 1])
        history.append(record)
        if log is not None:
            log(f"hybrid epoch {epoch + 1}/{config.epochs}: {record}")
    metrics = {
        "history": history,
        "train_sequences": len(train_ends),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    model.eval()
    return model, metrics


def train_autoencoder(
    windows: np.ndarray,
    config: AutoencoderConfig,
    *,
    epochs: int = 6,
    batch_size: int = 512,
    learning_rate: float = 2e-3,
    seed: int = 7,
    threads: int = 2,
) -> tuple[WindowAutoencoder, AnomalyModel, dict[str, Any]]:
    """Train the autoencoder on raw windows, calibrate its score map on their errors."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    set_seed(seed)
    mean = windows.reshape(-1, len(CHANNELS)).mean(axis=0)
    std = windows.reshape(-1, len(CHANNELS)).std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    x_all = ((windows - mean) / std).reshape(len(windows), -1).astype("float32")
    model = WindowAutoencoder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-5)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    for _ in range(epochs):
        order = rng.permutation(len(x_all))
        total = 0.0
        batches = 0
        model.train()
        for start in range(0, len(order), batch_size):
            x = torch.from_numpy(x_all[order[start : start + batch_size]])
            loss = torch.mean((model(x) - x) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        losses.append(total / max(batches, 1))
    model.eval()
    weights = {key: value.detach().double().numpy() for key, value in model.state_dict().items()}
    provisional = AnomalyModel(
        window=config.window,
        weights=weights,
        channel_mean=mean,
        channel_std=std,
        score_map=fit_score_map(np.linspace(0.0, 1.0, 1000) + 1e-6),
    )
    errors = provisional.errors(windows)
    exported = AnomalyModel(
        window=config.window,
        weights=weights,
        channel_mean=mean,
        channel_std=std,
        score_map=fit_score_map(errors),
    )
    metrics = {
        "train_windows": len(windows),
        "epoch_losses": [round(v, 5) for v in losses],
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return model, exported, metrics
