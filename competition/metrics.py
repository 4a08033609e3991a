"""Scores of predicted probabilities against integer labels: the one accuracy and the one log loss."""

from __future__ import annotations

import numpy as np


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose most probable class is the label; probs (N, 10), labels (N,)."""
    return float((probs.argmax(1) == labels).mean())


def log_loss(probs: np.ndarray, labels: np.ndarray, *, smoothing: float = 0.0) -> float:
    """Mean cross-entropy (nats) of predicted probabilities against integer labels, the targets smoothed as
    F.cross_entropy's label_smoothing does: (1 - smoothing) on the label plus smoothing / classes on every class."""
    nll = -np.log(np.clip(probs, 1e-7, 1.0))
    picked = nll[np.arange(len(labels)), labels]
    return float(((1 - smoothing) * picked + smoothing * nll.mean(axis=1)).mean())
