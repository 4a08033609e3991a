"""Batched inference on uint8 images, and the per-batch normalisation shared with training."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

# Test-time augmentation: the image as it is plus these rotations (degrees), softmax averaged. Rotations did as
# well as +-1 px shifts with 3 views instead of 5; each view is one more forward (docs/training.md, TTA).
TTA_ROTATIONS = (6.0, -6.0)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_helps(device: torch.device) -> bool:
    """Whether bfloat16 autocast is faster than float32 here: only where the hardware computes bf16
    (CUDA GPUs that support it, CPUs with AVX512-BF16 or AMX). Elsewhere bf16 is emulated and many times
    slower than fp32 (docs/benchmarks.md, training step)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()


def to_input(images: torch.Tensor, normalize: dict[str, float], device: torch.device) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 1, 28, 28) -> normalised float (N, 1, 28, 28), channels_last, on device."""
    x = images.to(device, non_blocking=True)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = (x.float() / 255.0 - normalize["mean"]) / normalize["std"]
    return x.contiguous(memory_format=torch.channels_last)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """uint8 (N, 28, 28) rotated anticlockwise about the image centre, bilinear, black outside."""
    matrix = cv2.getRotationMatrix2D((13.5, 13.5), degrees, 1.0)
    return np.stack([cv2.warpAffine(image, matrix, (28, 28), flags=cv2.INTER_LINEAR, borderValue=0)
                     for image in images]) if len(images) else images


def tta_views(images: np.ndarray) -> list[np.ndarray]:
    """The images as they are, then rotated by each of TTA_ROTATIONS: [(N, 28, 28) uint8, ...]."""
    return [images] + [rotate(images, degrees) for degrees in TTA_ROTATIONS]


def predict_proba(model: nn.Module, images: np.ndarray, normalize: dict[str, float], *,
                  device: torch.device | None = None, bf16: bool = True, tta: bool = False) -> np.ndarray:
    """Softmax probabilities (N, 10) float32 for uint8 images (N, 28, 28).

    bf16: use bfloat16 autocast where it helps (see bf16_helps). tta: average over tta_views (3x the work).
    """
    return predict_views(model, tta_views(images) if tta else [images], normalize, device=device, bf16=bf16)


def predict_views(model: nn.Module, views: list[np.ndarray], normalize: dict[str, float], *,
                  device: torch.device | None = None, bf16: bool = True) -> np.ndarray:
    """(N, 10) softmax averaged over views of the same N images (made once, shared by an ensemble's members)."""
    return np.mean([_softmax(model, view, normalize, device=device, bf16=bf16) for view in views], axis=0)


@torch.no_grad()
def _softmax(model: nn.Module, images: np.ndarray, normalize: dict[str, float], *,
             device: torch.device | None, bf16: bool, batch_size: int = 256) -> np.ndarray:
    # batch_size 256: the fastest measured on 2 CPU cores (docs/benchmarks.md)
    device = device or next(model.parameters()).device
    bf16 = bf16 and bf16_helps(device)
    model.eval()
    out = np.empty((len(images), 10), dtype=np.float32)
    source = torch.from_numpy(np.ascontiguousarray(images))
    for start in range(0, len(images), batch_size):
        x = to_input(source[start:start + batch_size], normalize, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        out[start:start + batch_size] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return out
