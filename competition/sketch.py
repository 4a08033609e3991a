"""Digits redrawn the way a sketchpad draws them: the centre line of each stroke, traced with one round pen.

MNIST's strokes are scanned ink, thick and thin within one digit; a brush on the page draws every stroke at one
width. `redraw` turns a training image into that form, so a recipe can teach the networks what drawings look like
(`TrainConfig.redraw`; docs/training.md).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F
from tqdm.auto import tqdm

UPSCALE = 2  # the centre line is found at 2x MNIST's resolution: 4x costs ten times as much and looks the same
PEN = (1.5, 3.5)  # px at MNIST scale: the range the redrawing pen's width is drawn from, around MNIST's own strokes
CHUNK = 1024  # images thinned in one go (working memory: a few (CHUNK, 58, 58) uint8 arrays)


def thin(masks: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of binary shapes (N, H, W), all at once: the one-pixel-wide, connected centre line of each."""
    img = np.pad(masks.astype(np.uint8), ((0, 0), (1, 1), (1, 1)))
    while True:
        changed = False
        for step in (0, 1):
            # the 8 neighbours P2..P9, clockwise from north
            p = [np.roll(img, shift, (1, 2)) for shift in ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))]
            neighbours = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                cond = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                cond = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (img == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[:, 1:-1, 1:-1].astype(bool)


def redraw(images: np.ndarray, pens: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> the same digits redrawn along their centre lines; pens: (N,) pen widths in px, anti-aliased."""
    fine = F.interpolate(torch.from_numpy(images).float()[:, None], scale_factor=UPSCALE, mode="bilinear",
                         align_corners=False)[:, 0].numpy() > 127.5
    out, (h, w) = np.zeros(images.shape, np.uint8), images.shape[1:]
    for i, line in enumerate(thin(fine)):
        if not line.any():  # a blank image stays blank
            continue
        distance = ndimage.distance_transform_edt(~line)  # (2H, 2W) px at 2x from the nearest centre-line pixel
        ink = np.clip(pens[i] * UPSCALE / 2 + 0.5 - distance, 0, 1)  # a round pen with a one-pixel soft edge
        out[i] = np.round(ink.reshape(h, UPSCALE, w, UPSCALE).mean((1, 3)) * 255)
    return out


def sketches(images: np.ndarray, seed: int) -> np.ndarray:
    """Every image redrawn with a pen width drawn uniformly from PEN (the same for the same seed): uint8 (N, 28, 28)."""
    if not len(images):
        return images.copy()
    pens = np.random.default_rng([seed, 7]).uniform(*PEN, size=len(images))
    starts = tqdm(range(0, len(images), CHUNK), desc="redraw", unit="chunk", leave=False, dynamic_ncols=True)
    return np.concatenate([redraw(images[i:i + CHUNK], pens[i:i + CHUNK]) for i in starts])
