"""Sketchpad-like canvases rendered from 28x28 digits: test input for the demo (benchmarks/ uses it too).

A digit is upscaled to a height on the canvas, its pen width set with a distance transform, placed
anywhere, and drawn in one of the styles people produce: black on white, white on black, black on a
transparent background (Gradio's layers), or an RGBA export with a white background.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from competition.sketch import thin

STYLES = ("black-on-white", "white-on-black", "black-on-transparent")


def render(digit: np.ndarray, *, side: int = 800, height: float = 0.5, pen: float = 12.0,
           x: float = 0.5, y: float = 0.5, style: str = "black-on-white") -> np.ndarray:
    """digit (28, 28) uint8 -> canvas (side, side, 3 or 4) uint8.

    height: digit height as a fraction of the canvas; pen: stroke width in canvas px;
    x, y: where the digit's box centre lies, as fractions of the free room (0 = left/top edge).
    """
    ys, xs = np.nonzero(digit > 64)
    crop = digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255
    h = max(8, int(height * side))
    w = min(side, max(4, int(h * crop.shape[1] / crop.shape[0])))
    # the digit's centre line at 4x MNIST resolution, then a round pen of width `pen` along it
    fine = np.asarray(Image.fromarray(crop, mode="F").resize((crop.shape[1] * 4, crop.shape[0] * 4), Image.Resampling.BILINEAR))
    line_y, line_x = np.nonzero(thin((fine > 0.5)[None])[0])
    centre = np.zeros((h, w), bool)
    centre[np.clip((line_y + 0.5) * h / fine.shape[0], 0, h - 1).astype(int),
           np.clip((line_x + 0.5) * w / fine.shape[1], 0, w - 1).astype(int)] = True
    ink = ndimage.distance_transform_edt(~centre) <= max(pen / 2, 1.0)
    canvas = np.zeros((side, side), bool)
    top, left = int(y * (side - h)), int(x * (side - w))
    canvas[top:top + h, left:left + w] = ink
    if style == "black-on-white":
        return np.repeat(np.where(canvas, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if style == "white-on-black":
        return np.repeat(np.where(canvas, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    if style == "black-on-transparent":
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[..., 3] = np.where(canvas, 255, 0)
        return rgba
    raise ValueError(f"unknown style {style!r}; known: {STYLES}")


def random_canvas(digit: np.ndarray, rng: np.random.Generator, *, side: int = 800, style: str | None = None) -> np.ndarray:
    """The benchmark's spread: height 15-85% of the canvas, anywhere, pen 2-6% of the canvas (thin to thick)."""
    height = rng.uniform(0.15, 0.85)
    return render(digit, side=side, height=height, pen=rng.uniform(0.02, 0.06) * side * min(1.0, height / 0.4),
                  x=rng.uniform(), y=rng.uniform(), style=style or str(rng.choice(STYLES)))
