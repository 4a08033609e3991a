"""Batched inference on uint8 images, and the per-batch normalisation shared with training."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import torch
from torch import nn

# Test-time augmentation: the image as it is plus these rotations (degrees), softmax averaged. Rotations did as
# well as +-1 px shifts with 3 views instead of 5; each view is one more forward (docs/training.md, TTA).
TTA_ROTATIONS = (6.0, -6.0)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, allowed: bool = True) -> torch.dtype | None:
    """The reduced precision to compute in on `device`, None for float32.

    bfloat16 where the hardware computes it (CUDA GPUs from compute capability 8.0, CPUs with AVX512-BF16 or AMX);
    float16 on older CUDA GPUs with fast half precision (P100, V100, T4: training then scales the loss); float32
    elsewhere, where reduced precision would be emulated and many times slower (docs/benchmarks.md, training step),
    and whenever `allowed` is False (`--no-bf16`).
    """
    if not allowed:
        return None
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16 if major >= 6 else None
    if device.type == "cpu" and torch.cpu._is_avx512_bf16_supported():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast, loss scaling"}.get(dtype, "fp32")  # type: ignore[arg-type]


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

    bf16: allow reduced precision where the hardware computes it (see autocast_dtype). tta: average over tta_views
    (3x the work).
    """
    return predict_views(model, tta_views(images) if tta else [images], normalize, device=device, bf16=bf16)


def predict_views(model: nn.Module, views: list[np.ndarray], normalize: dict[str, float], *,
                  device: torch.device | None = None, bf16: bool = True) -> np.ndarray:
    """(N, 10) softmax averaged over views of the same N images (made once, shared by an ensemble's members)."""
    return np.mean([_softmax(model, view, normalize, device=device, bf16=bf16) for view in views], axis=0)


@torch.no_grad()
def _softmax(model: nn.Module, images: np.ndarray, normalize: dict[str, float], *,
             device: torch.device | None, bf16: bool) -> np.ndarray:
    device = device or next(itertools.chain(model.parameters(), model.buffers())).device  # nearest neighbours: buffers only
    batch_size = 8192 if device.type == "cuda" else 256  # 256: the fastest measured on 2 CPU cores (docs/benchmarks.md)
    dtype = autocast_dtype(device, bf16)
    model.eval()
    out = np.empty((len(images), 10), dtype=np.float32)
    source = torch.from_numpy(np.ascontiguousarray(images))
    for start in range(0, len(images), batch_size):
        x = to_input(source[start:start + batch_size], normalize, device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        out[start:start + batch_size] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return out
