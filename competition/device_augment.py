"""Augmentation on the training device: the fold's images stay there, and each batch is shuffled and warped in a few
batched tensor ops, with no per-image Python and no host-to-device copy per batch. For GPUs, where the CPU worker
of `augment.py` cannot keep up.

The warps are albumentations' `Affine` family with the same parameter distributions (rotation, per-axis shift in
whole pixels, per-axis scale, per-axis shear, about the image centre, black fill) built as the same matrices, then
applied with `grid_sample` (bilinear) instead of OpenCV; a test checks both give the same image for the same
parameters; the stroke change (`restroke`) gives albumentations' image exactly; the redraw swaps in the same sketches
as the CPU path (`sketch.sketches`, made once per fold); the elastic warp draws its displacement fields as
albumentations' `ElasticTransform` does (uniform noise, Gaussian-smoothed, scaled) and `displace` samples them as its
OpenCV remap does. Unlike the CPU path, every image gets its own draw (no
grouping: a batched warp costs the same either way).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from .augment import ELASTIC_ALPHA, ELASTIC_SIGMA
from .config import TrainConfig
from .sketch import sketches

SIDE = 28
# Images warped in one go, rounded down to whole batches; the warp's working memory is dominated by its float64
# sample coordinates, (WARP_IMAGES, 3, 784).
WARP_IMAGES = 8192


def random_params(n: int, config: TrainConfig, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """(n,) tensors per parameter, drawn as albumentations' Affine draws them for the config's ranges."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=device, dtype=torch.float64)

    return {
        "rotate": uniform(-config.rotate, config.rotate),  # degrees
        "tx": torch.trunc(uniform(-config.shift, config.shift) * SIDE),  # whole pixels, as int() truncates
        "ty": torch.trunc(uniform(-config.shift, config.shift) * SIDE),
        "sx": uniform(1 - config.scale, 1 + config.scale),
        "sy": uniform(1 - config.scale, 1 + config.scale),
        "shx": -uniform(-config.shear, config.shear),  # degrees; albumentations negates its draw
        "shy": -uniform(-config.shear, config.shear),
    }


def affine_matrices(params: dict[str, torch.Tensor], side: int = SIDE) -> torch.Tensor:
    """(n, 3, 3) float64 source-to-destination pixel maps: albumentations' centre shift, scale, rotation, shear,
    translation and shift back, composed in its order."""
    n, device = len(params["rotate"]), params["rotate"].device
    eye = torch.eye(3, dtype=torch.float64, device=device).expand(n, 3, 3)

    def matrix(entries: dict[tuple[int, int], torch.Tensor | float]) -> torch.Tensor:
        m = eye.clone()
        for (row, col), value in entries.items():
            m[:, row, col] = value
        return m

    centre = side / 2 - 0.5
    angle = torch.deg2rad(params["rotate"])
    cos, sin = torch.cos(angle), torch.sin(angle)
    to_corner = matrix({(0, 2): -centre, (1, 2): -centre})
    scale = matrix({(0, 0): params["sx"], (1, 1): params["sy"]})
    rotate = matrix({(0, 0): cos, (0, 1): sin, (1, 0): -sin, (1, 1): cos})
    shear = matrix({(0, 1): torch.tan(torch.deg2rad(params["shx"])), (1, 0): torch.tan(torch.deg2rad(params["shy"]))})
    translate = matrix({(0, 2): params["tx"], (1, 2): params["ty"]})
    back = matrix({(0, 2): centre, (1, 2): centre})
    return back @ translate @ shear @ rotate @ scale @ to_corner


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W) warped by source-to-destination maps (n, 3, 3): bilinear, black outside; uint8 (n, H, W)."""
    n, height, width = images.shape
    inverse = torch.linalg.inv(matrices)  # destination pixel -> source pixel, what grid_sample samples
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=images.device),
                            torch.arange(width, dtype=torch.float64, device=images.device), indexing="ij")
    points = torch.stack([xs.ravel(), ys.ravel(), torch.ones_like(xs.ravel())])  # (3, H*W) pixel centres
    source = inverse @ points  # (n, 3, H*W)
    # pixel centre i lies at (2i + 1) / size - 1 in grid_sample's coordinates (align_corners=False)
    grid = torch.stack([(2 * source[:, 0] + 1) / width - 1, (2 * source[:, 1] + 1) / height - 1], dim=-1)
    out = F.grid_sample(images.unsqueeze(1).float(), grid.view(n, height, width, 2).float(), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)


def restroke(images: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W) with each image's pen a pixel wider (change +1), narrower (-1) or as it is (0); change: (n,).

    What albumentations' Morphological(scale=(2, 2)) does: OpenCV's 2x2 elliptical element is the pixel, its upper
    and its left neighbour; outside the image counts as background for dilation and as ink for erosion (OpenCV's
    default borders), so erosion does not eat strokes that touch the edge."""

    def neighbours(fill: int) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(images, (1, 0, 1, 0), value=fill)  # a row on top, a column on the left
        return padded[:, :-1, 1:], padded[:, 1:, :-1]  # each pixel's upper and left neighbour

    up, left = neighbours(0)
    grown = torch.maximum(images, torch.maximum(up, left))
    up, left = neighbours(255)
    shrunk = torch.minimum(images, torch.minimum(up, left))
    change = change.view(-1, 1, 1)
    return torch.where(change > 0, grown, torch.where(change < 0, shrunk, images))


def elastic_fields(n: int, generator: torch.Generator, device: torch.device, side: int = SIDE) -> torch.Tensor:
    """(n, 2, side, side) float32 displacements in px (x, then y): uniform noise in [-1, 1] smoothed by a Gaussian of
    ELASTIC_SIGMA px (OpenCV's kernel size for it, edges replicated), times ELASTIC_ALPHA."""
    noise = 2 * torch.rand(n * 2, 1, side, side, generator=generator, device=device) - 1
    radius = round(ELASTIC_SIGMA * 4)  # OpenCV's automatic size for float images: 2 * round(4 sigma) + 1 taps
    taps = torch.exp(-torch.arange(-radius, radius + 1, device=device, dtype=torch.float32) ** 2 / (2 * ELASTIC_SIGMA**2))
    taps = taps / taps.sum()
    smooth = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
    return ELASTIC_ALPHA * smooth.view(n, 2, side, side)


def displace(images: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W), each pixel sampled from itself plus its displacement (n, 2, H, W) px: bilinear, black
    outside; uint8 (n, H, W)."""
    n, height, width = images.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=images.device),
                            torch.arange(width, dtype=torch.float32, device=images.device), indexing="ij")
    # pixel centre i lies at (2i + 1) / size - 1 in grid_sample's coordinates (align_corners=False)
    grid = torch.stack([(2 * (xs + fields[:, 0]) + 1) / width - 1, (2 * (ys + fields[:, 1]) + 1) / height - 1], dim=-1)
    out = F.grid_sample(images.unsqueeze(1).float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)


class DeviceBatches:
    """Iterable over one epoch of (augmented uint8 images (B, 28, 28), int64 labels (B,)), both on `device`.

    A new shuffle and new warps each time it is iterated (= each epoch), all drawn from one generator seeded with
    config.seed, so a run is reproducible on the same device. The warps are made WARP_IMAGES at a time, not per
    batch: a batch then costs two slices instead of the few dozen small kernel launches of drawing and warping it.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: TrainConfig, device: torch.device) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
        self.sketches = torch.from_numpy(sketches(images, config.seed)).to(device) if config.redraw > 0 else None
        self.config, self.device = config, device
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.config.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.config.batch_size
        chunk = size * max(1, WARP_IMAGES // size)  # whole batches, so batch boundaries do not depend on it
        order = torch.randperm(len(self.images), generator=self.generator, device=self.device)
        for start in range(0, len(order), chunk):
            index = order[start:start + chunk]
            params = random_params(len(index), self.config, self.generator, self.device)
            images = self.images[index]
            if self.sketches is not None:  # drawn only then, so runs without it keep their random stream
                drawn = torch.rand(len(index), generator=self.generator, device=self.device) < self.config.redraw
                images = torch.where(drawn.view(-1, 1, 1), self.sketches[index], images)
            images, labels = warp(images, affine_matrices(params)), self.labels[index]
            if self.config.elastic > 0:  # drawn only then, so runs without it keep their random stream
                fields = elastic_fields(len(index), self.generator, self.device)
                warped = torch.rand(len(index), generator=self.generator, device=self.device) < self.config.elastic
                images = torch.where(warped.view(-1, 1, 1), displace(images, fields), images)
            if self.config.stroke > 0:  # drawn only then, so runs without it keep their random stream
                draw = torch.rand(len(index), generator=self.generator, device=self.device)
                change = torch.where(draw < self.config.stroke / 2, 1, torch.where(draw < self.config.stroke, -1, 0))
                images = restroke(images, change)  # half wider, half narrower
            for first in range(0, len(index), size):
                yield images[first:first + size], labels[first:first + size]
