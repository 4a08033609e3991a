"""Drawing -> MNIST form: centring, scaling, polarity, transparency, specks, empty and several digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from canvas import STYLES, render
from conftest import SAMPLE
from PIL import Image
from scipy import ndimage

from competition.data import read_train
from competition.errors import UserError
from competition.preprocess import ink_map, open_image, preprocess, segment


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = read_train(SAMPLE)
    assert data.labels is not None
    return data.images[:200], data.labels[:200]


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _mnist_form(img: np.ndarray) -> None:
    assert img.shape == (28, 28) and img.dtype == np.uint8
    ys, xs = np.nonzero(img > 30)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (19, 20, 21)  # longer side 20 px
    cy, cx = ndimage.center_of_mass(img.astype(float))
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0  # centred by centre of mass
    assert img.max() == 255


def test_plain_mnist_image_passes_through_unchanged_in_meaning(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    sims = [_similarity(preprocess(img), img) for img in images[:50]]
    assert np.median(sims) > 0.95


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("height", "pen", "x", "y"), [(0.15, 6, 0.0, 0.0), (0.5, 20, 0.5, 0.5), (0.85, 40, 1.0, 1.0), (0.3, 4, 0.9, 0.1)])
def test_canvas_in_any_style_size_place_and_pen_becomes_mnist_form(
        digits: tuple[np.ndarray, np.ndarray], style: str, height: float, pen: float, x: float, y: float) -> None:
    images, _ = digits
    canvas = render(images[3], height=height, pen=pen, x=x, y=y, style=style)
    seen = preprocess(canvas)
    _mnist_form(seen)
    assert _similarity(seen, images[3]) > 0.6  # the same digit shape as the MNIST original


def test_polarity_and_colour_do_not_matter(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    dark = render(images[5], style="black-on-white")
    light = render(images[5], style="white-on-black")
    blue = dark.copy()
    blue[(dark == 0).all(axis=2)] = (31, 79, 209)  # a blue pen on white
    transparent = render(images[5], style="black-on-transparent")
    white_pen_transparent = transparent.copy()
    white_pen_transparent[..., :3] = 255  # white strokes on a transparent layer: alpha is still the ink
    reference = preprocess(dark)
    for other in (light, blue, transparent, white_pen_transparent):
        assert _similarity(preprocess(other), reference) > 0.97


def test_gradio_sketchpad_value_in_light_and_dark_theme(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    layer = render(images[7], style="black-on-transparent")  # the strokes, as Gradio's layer hands them
    expected = preprocess(layer)
    for background in ((255, 255, 255, 255), (0x33, 0x33, 0x33, 255)):
        bg = np.zeros_like(layer)
        bg[:] = background
        alpha = layer[..., 3:4].astype(float) / 255
        composite = (layer * alpha + bg * (1 - alpha)).astype(np.uint8)
        value = {"background": bg, "layers": [layer], "composite": composite}
        assert _similarity(preprocess(value), expected) > 0.99
    empty = {"background": np.full((800, 800, 4), 255, np.uint8), "layers": [np.zeros((800, 800, 4), np.uint8)],
             "composite": np.full((800, 800, 4), 255, np.uint8)}
    assert segment(empty) == []


def test_specks_are_dropped(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    clean = render(images[9], height=0.5, pen=16)
    noisy = clean.copy()
    rng = np.random.default_rng(0)
    for _ in range(15):
        y, x = rng.integers(0, 796, 2)
        noisy[y:y + 4, x:x + 4] = 0
    assert len(segment(noisy)) == 1
    assert _similarity(preprocess(noisy), preprocess(clean)) > 0.97


@pytest.mark.parametrize("canvas", [np.full((800, 800, 3), 255, np.uint8), np.zeros((800, 800, 3), np.uint8),
                                    np.zeros((800, 800, 4), np.uint8), np.full((28, 28), 0, np.uint8)])
def test_empty_canvas_has_no_digit(canvas: np.ndarray) -> None:
    assert segment(canvas) == []
    assert preprocess(canvas).max() == 0


def test_several_digits_are_read_left_to_right(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    picks = [int(np.flatnonzero(labels == d)[0]) for d in (2, 0, 2, 5)]
    canvas = np.full((400, 1600, 3), 255, np.uint8)
    for slot, row in enumerate(picks):
        canvas[:, slot * 400:(slot + 1) * 400] = render(images[row], side=400, height=0.6, pen=14, style="black-on-white")
    found = segment(canvas)
    assert len(found) == 4
    assert [d.box[0] for d in found] == sorted(d.box[0] for d in found)
    for digit, row in zip(found, picks):
        assert _similarity(digit.image, images[row]) > 0.5


def test_files_of_every_kind_open_or_fail_clearly(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    canvas = render(images[1], style="black-on-white")
    Image.fromarray(canvas).save(tmp_path / "rgb.png")
    Image.fromarray(canvas).convert("P").save(tmp_path / "palette.png")
    Image.fromarray((255 - canvas[..., 0]).astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    Image.fromarray(canvas).save(tmp_path / "photo.jpg", quality=80)
    reference = preprocess(open_image(tmp_path / "rgb.png"))
    for name in ("palette.png", "sixteen.png", "photo.jpg"):
        assert _similarity(preprocess(open_image(tmp_path / name)), reference) > 0.95, name
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "cut.png").write_bytes((tmp_path / "rgb.png").read_bytes()[:300])
    for name, message in (("empty.png", "empty file"), ("text.png", "not a readable image"), ("cut.png", "not a readable image"),
                          ("missing.png", "no such file"), (".", "a folder, not an image file")):
        with pytest.raises(UserError, match=message):
            open_image(tmp_path / name)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    Image.new("1", (8_000, 8_000)).save(tmp_path / "bomb.png")  # 64 Mpx, a few KB on disk
    with pytest.raises(UserError, match="too large"):
        open_image(tmp_path / "bomb.png")


def test_ink_map_of_rgba_with_opaque_alpha_uses_the_colours() -> None:
    rgba = np.full((100, 100, 4), 255, np.uint8)
    rgba[40:60, 45:55, :3] = 0
    ink = ink_map(rgba)
    assert ink[50, 50] == pytest.approx(1.0) and ink[5, 5] == 0
