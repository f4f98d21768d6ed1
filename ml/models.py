"""The PyTorch models: the LSTM+CNN hybrid signal model and the bar-window autoencoder.

Compact ``nn.Module``s in the minGPT manner: a frozen config dataclass, shape comments, no
training code (that is ``ml.training.torch_loops``); the hybrid's checkpoint carries its
config. Both take float32 tensors laid out (batch, time, channels).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class HybridConfig:
    """Shape of the LSTM+CNN hybrid."""

    n_features: int = 18
    seq_len: int = 60
    conv_channels: int = 32
    kernel_size: int = 5
    lstm_hidden: int = 48
    dropout: float = 0.1

    def to_json(self) -> dict[str, Any]:
        """Return the config as a JSON-friendly dict."""
        return asdict(self)


class HybridSignalNet(nn.Module):
    """A causal 1-D convolution over the recent bars feeding an LSTM; buy and sell logits.

    Input: (B, T, F) standardised feature rows of the last T bars, oldest first, missing
    values already replaced by 0 (the training mean). Output: (B, 2) logits, P(buy) and
    P(sell) after a sigmoid each (two independent labels, not a softmax).
    """

    def __init__(self, config: HybridConfig) -> None:
        """Build the layers from ``config``."""
        super().__init__()
        self.config = config
        c = config
        self.pad = c.kernel_size - 1  # left padding only: bar t never sees bar t + 1
        self.conv1 = nn.Conv1d(c.n_features, c.conv_channels, c.kernel_size)
        self.conv2 = nn.Conv1d(c.conv_channels, c.conv_channels, c.kernel_size)
        self.act = nn.GELU()
        self.lstm = nn.LSTM(c.conv_channels, c.lstm_hidden, batch_first=True)
        self.drop = nn.Dropout(c.dropout)
        # The head also sees the newest bar's raw (standardised) features.
        self.head = nn.Linear(c.lstm_hidden + c.n_features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, 2) logits for (B, T, F) inputs."""
        h = x.transpose(1, 2)  # (B, F, T)
        h = self.act(self.conv1(nn.functional.pad(h, (self.pad, 0))))  # (B, C, T)
        h = self.act(self.conv2(nn.functional.pad(h, (self.pad, 0))))  # (B, C, T)
        h = h.transpose(1, 2)  # (B, T, C)
        _, (last, _) = self.lstm(h)  # last: (1, B, H)
        summary = torch.cat([last[-1], x[:, -1, :]], dim=1)  # (B, H + F)
        return self.head(self.drop(summary))  # (B, 2)


def hybrid_state_bytes(model: HybridSignalNet, extra: dict[str, Any]) -> bytes:
    """Serialise a checkpoint: config, weights and ``extra`` (stats, feature list, metrics)."""
    buffer = io.BytesIO()
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()} | extra, buffer)
    return buffer.getvalue()


def load_hybrid(payload: dict[str, Any]) -> HybridSignalNet:
    """Rebuild a hybrid from a loaded checkpoint dict."""
    model = HybridSignalNet(HybridConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the bar-window autoencoder."""

    window: int = 30
    channels: int = 3  # log return, log range, log volume ratio (see ml.anomaly)
    hidden: int = 32
    bottleneck: int = 8

    def to_json(self) -> dict[str, Any]:
        """Return the config as a JSON-friendly dict."""
        return asdict(self)


class WindowAutoencoder(nn.Module):
    """A small dense autoencoder over a flattened window of normalised bar quantities.

    Input: (B, W * C) already normalised by the training statistics. Output: the
    reconstruction, same shape. The anomaly error is the mean squared difference per window.
    Plain Linear + tanh layers, so ``ml.anomaly`` can run it in numpy without torch.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        """Build the encoder and decoder from ``config``."""
        super().__init__()
        self.config = config
        size = config.window * config.channels
        self.enc1 = nn.Linear(size, config.hidden)
        self.enc2 = nn.Linear(config.hidden, config.bottleneck)
        self.dec1 = nn.Linear(config.bottleneck, config.hidden)
        self.dec2 = nn.Linear(config.hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (B, W * C) reconstruction of (B, W * C) windows."""
        h = torch.tanh(self.enc1(x))  # (B, hidden)
        z = torch.tanh(self.enc2(h))  # (B, bottleneck)
        h = torch.tanh(self.dec1(z))  # (B, hidden)
        return self.dec2(h)  # (B, W * C)
