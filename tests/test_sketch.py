"""Digits redrawn as sketchpad strokes (competition.sketch), and the augmentation that swaps them in."""

from __future__ import annotations

import numpy as np
import torch
from conftest import SAMPLE

from competition.augment import make_loader
from competition.config import TrainConfig
from competition.data import read_train
from competition.device_augment import DeviceBatches
from competition.sketch import redraw, sketches, thin

STILL = TrainConfig(batch_size=60, workers=0, aug_group=1, rotate=0, shift=0, scale=0, shear=0)


def test_thinning_leaves_a_connected_line_one_pixel_wide() -> None:
    bar = np.zeros((1, 30, 30), bool)
    bar[0, 5:25, 10:17] = True  # a vertical bar 7 px wide
    (line,) = thin(bar)
    rows = line.any(1).nonzero()[0]
    assert (line.sum(1)[rows] == 1).all()  # one pixel per row
    assert rows.max() - rows.min() + 1 == len(rows) >= 10  # unbroken, most of the bar's length
    assert line[bar[0]].sum() == line.sum()  # inside the shape


def test_redraw_traces_the_centre_line_with_the_pen_asked_for() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[:2, 4:24, 11:18] = 255  # a thick "1", drawn twice
    thin_pen, thick_pen, blank = redraw(images, np.array([1.5, 3.5, 2.0]))
    assert blank.max() == 0  # nothing to trace stays nothing
    for image, pen in ((thin_pen, 1.5), (thick_pen, 3.5)):
        width = image[8:20].sum(1) / 255  # ink per row along the stroke, in px
        assert abs(width.mean() - pen) < 0.5, (pen, width)
    assert thin_pen.dtype == np.uint8 and thin_pen.shape == (28, 28)


def test_sketches_are_the_same_for_a_seed_and_keep_the_digits_where_they_were() -> None:
    digits = read_train(SAMPLE).images[:60]
    drawn = sketches(digits, 42)
    assert np.array_equal(drawn, sketches(digits, 42)) and not np.array_equal(drawn, sketches(digits, 43))
    for image, sketch in zip(digits, drawn):
        ys, xs = np.nonzero(image > 127)
        sy, sx = np.nonzero(sketch > 127)
        assert len(sy) > 0.3 * len(ys)  # still a digit's worth of ink
        # within the digit's box, give or take the pen: the same digit, in place
        assert ys.min() - 2 <= sy.min() and sy.max() <= ys.max() + 2 and xs.min() - 2 <= sx.min() and sx.max() <= xs.max() + 2


def test_redraw_swaps_in_the_share_of_sketches_asked_for_on_both_paths() -> None:
    digits = read_train(SAMPLE).images[:60]
    drawn = {bytes(image) for image in sketches(digits, STILL.seed)}
    labels = np.zeros(60, np.int64)
    for share, low, high in ((0.0, 0, 0), (1.0, 60, 60), (0.5, 15, 45)):
        config = STILL.replace(redraw=share)
        ((worker, _),) = list(make_loader(digits, labels, config))
        ((device, _),) = list(DeviceBatches(digits, labels, config, torch.device("cpu")))
        for batch in (worker, device):
            swapped = sum(bytes(image) in drawn for image in batch.numpy())
            assert low <= swapped <= high, share
