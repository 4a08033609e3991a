"""Any drawing, scan or photo of digits -> 28x28 uint8 images in MNIST's form.

MNIST digits were scaled so the longer side is 20 px (anti-aliased) and centred by centre of mass
in a 28x28 field, white ink on black. Every input is brought into that form here, so the page,
the CLI and the Python API see the same thing the models were trained on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from .errors import UserError

MAX_PIXELS = 50_000_000  # decompression-bomb guard: larger images are refused before they are decoded
WORK_SIDE = 256  # px: drawings are shrunk to this before any analysis (an 800x800 canvas is 3x too fine)
INK_LEVEL = 0.25  # fraction of full contrast above which a pixel counts as ink
SPECK_FRACTION = 0.02  # components with less ink than this share of the largest are specks
TARGET_STROKE = 2.5  # px at MNIST scale (longer side 20 px): the typical MNIST pen width


@dataclass(frozen=True)
class Digit:
    image: np.ndarray  # (28, 28) uint8, what the models see
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) on the working-resolution ink map, for ordering
    mass: float  # total ink at working resolution: the most prominent digit has the most


def _as_array(image: Any) -> np.ndarray:
    """PIL image, path, or array -> float32 array (H, W) / (H, W, 3) / (H, W, 4) in 0..1."""
    if isinstance(image, str | Path):
        image = open_image(Path(image))
    if isinstance(image, Image.Image):
        if image.mode in ("P", "PA", "LA", "I", "I;16", "I;16B", "F", "1", "CMYK", "YCbCr", "HSV"):
            image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB") \
                if image.mode not in ("I", "I;16", "I;16B", "F") else _wide_to_l(image)
        arr = np.asarray(image)
    else:
        arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or min(arr.shape[:2]) == 0:
        raise UserError(f"unsupported image shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == bool:
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    return arr / 65535.0 if arr.max() > 255 else arr / 255.0 if arr.max() > 1 else arr


def _wide_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float greyscale -> 8-bit, keeping the full range."""
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    return Image.fromarray(np.round((arr - lo) / (hi - lo) * 255).astype(np.uint8) if hi > lo else np.zeros(arr.shape, np.uint8))


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file; every failure is a UserError naming the file."""
    if path.is_dir():
        raise UserError(f"{path}: a folder, not an image file (give the files, e.g. {path}/*.png)")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's own guard, at its default limit
            with Image.open(path) as img:  # reads the header only
                if img.width * img.height > MAX_PIXELS:
                    raise UserError(f"{path}: image too large ({img.width}x{img.height} px; at most {MAX_PIXELS:,} pixels)")
                img.load()  # decode now: truncated files fail here, not later
                return ImageOps.exif_transpose(img) or img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(f"{path}: image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from exc


def ink_map(image: Any) -> np.ndarray:
    """Ink intensity (H, W) float32 in 0..1 for any polarity, colour or transparency.

    Not yet contrast-stretched (segment does that after shrinking). Transparent backgrounds: the
    alpha channel is the ink. Opaque images: the background level is the median of the border, and
    ink is the distance from it, whichever way (dark on light or light on dark). Gradio sketchpad
    values ({"background", "layers", "composite"}): the layers' alpha, whatever the theme's background.
    """
    if isinstance(image, dict):
        layers = [np.asarray(layer) for layer in image.get("layers") or [] if layer is not None]
        alphas = [_as_array(layer)[..., 3] for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
        if alphas and max(a.max() for a in alphas) > 0:
            return np.maximum.reduce(alphas)
        if image.get("composite") is None:
            return np.zeros((28, 28), np.float32)
        return ink_map(image["composite"])
    arr = _as_array(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[..., 3]
        if alpha.min() < 0.5:  # part of the image is transparent: what is opaque is what was drawn
            return alpha
        arr = arr[..., :3]
    gray = arr @ np.array([0.299, 0.587, 0.114], np.float32) if arr.ndim == 3 else arr
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return np.abs(gray - np.median(border)).astype(np.float32)


def _stretch(ink: np.ndarray) -> np.ndarray:
    """Scale so the strongest ink is 1 (thin or faint strokes count as much as bold ones)."""
    top = float(np.percentile(ink, 99.9)) if ink.size > 10_000 else float(ink.max())
    if top < 0.1:  # nothing stands out from the background
        return np.zeros_like(ink)
    return np.clip(ink / top, 0, 1)


def _shrink(ink: np.ndarray) -> np.ndarray:
    """Area-average large maps down to about WORK_SIDE px on the longer side (fast, anti-aliased)."""
    factor = max(ink.shape) // WORK_SIDE
    if factor < 2:
        return ink
    h, w = (ink.shape[0] // factor) * factor, (ink.shape[1] // factor) * factor
    return ink[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean pen width in px: area / half the perimeter, exact for long thin strokes."""
    edge = mask & ~ndimage.binary_erosion(mask)
    return 2.0 * mask.sum() / max(edge.sum(), 1)


def _normalise_stroke(ink: np.ndarray, mask: np.ndarray, longer: int) -> np.ndarray:
    """Thin or thicken the pen so that at MNIST scale it is about TARGET_STROKE px wide."""
    width, target = _stroke_width(mask), TARGET_STROKE * longer / 20.0
    if 0.6 * target <= width <= 1.6 * target:
        return ink  # close enough: keep the original anti-aliased grey levels
    if width < target:
        grown = ndimage.distance_transform_edt(~mask) <= (target - width) / 2
        return np.maximum(ink, grown.astype(np.float32))
    return (ndimage.distance_transform_edt(mask) > (width - target) / 2).astype(np.float32)


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """One digit's ink map -> (28, 28) uint8: longer side 20 px, centred by centre of mass."""
    mask = ink > INK_LEVEL
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros((28, 28), np.uint8)
    crop_ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    crop_mask = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    longer = max(crop_ink.shape)
    crop = _normalise_stroke(crop_ink, crop_mask, longer)
    scale = 20.0 / longer
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, resample))
    small = np.clip(small / max(float(small.max()), 1e-6), 0, 1)
    field = np.zeros((28, 28), np.float32)
    cy, cx = ndimage.center_of_mass(small)
    top = int(np.clip(round(14 - cy), 0, 28 - small.shape[0]))
    left = int(np.clip(round(14 - cx), 0, 28 - small.shape[1]))
    field[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.round(field * 255).astype(np.uint8)


def segment(image: Any) -> list[Digit]:
    """Find the digits in an image, left to right. Specks are dropped; empty input gives []."""
    ink = _stretch(_shrink(ink_map(image)))
    if ink.shape == (28, 28):
        return [Digit(to_mnist(ink), (0, 0, 28, 28), float(ink.sum()))] if (ink > INK_LEVEL).any() else []
    labels, count = ndimage.label(ink > INK_LEVEL, structure=np.ones((3, 3)))
    if count == 0:
        return []
    sizes = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
    slices = ndimage.find_objects(labels)
    keep = [i for i in range(count) if sizes[i] >= SPECK_FRACTION * sizes.max()]
    # Strokes of one digit overlap horizontally (the bar of a 7, the hat of a 5): merge by x-overlap.
    groups: list[list[int]] = []
    for i in sorted(keep, key=lambda i: slices[i][1].start):
        x0, x1 = slices[i][1].start, slices[i][1].stop
        if groups:
            g0 = min(slices[j][1].start for j in groups[-1])
            g1 = max(slices[j][1].stop for j in groups[-1])
            overlap = min(x1, g1) - max(x0, g0)
            if overlap > 0.3 * min(x1 - x0, g1 - g0):
                groups[-1].append(i)
                continue
        groups.append([i])
    digits = []
    for group in groups:
        own = np.isin(labels, [i + 1 for i in group])
        ys, xs = np.nonzero(own)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        digits.append(Digit(to_mnist(np.where(own, ink, 0)), box, float(ink[own].sum())))
    return digits


def preprocess(image: Any) -> np.ndarray:
    """The single most prominent digit as (28, 28) uint8 (zeros for an empty image)."""
    digits = segment(image)
    if not digits:
        return np.zeros((28, 28), np.uint8)
    return max(digits, key=lambda d: d.mass).image
