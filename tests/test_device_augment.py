"""The device-side augmentation, run on CPU tensors: the same warps as albumentations for the same parameters,
the same parameter ranges, determinism, and a tiny cv through the device path."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import SAMPLE

from competition.config import TrainConfig
from competition.data import Digits, read_train
from competition.device_augment import DeviceBatches, affine_matrices, displace, elastic_fields, random_params, restroke, warp

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return read_train(SAMPLE).images[:40]


def _fixed(n: int, rotate: float, shift: float, scale: float, shear: float) -> dict[str, torch.Tensor]:
    def full(value: float) -> torch.Tensor:
        return torch.full((n,), float(value), dtype=torch.float64)

    pixels = int(shift * 28)
    return {"rotate": full(rotate), "tx": full(pixels), "ty": full(pixels), "sx": full(scale), "sy": full(scale),
            "shx": full(-shear), "shy": full(-shear)}


@pytest.mark.parametrize(("rotate", "shift", "scale", "shear"), [
    (10, 0, 1, 0), (0, 0.08, 1, 0), (0, 0, 1.1, 0), (0, 0, 1, 5), (-8, -0.05, 0.92, -4), (10, 0.08, 1.1, 5)])
def test_the_same_parameters_give_albumentations_image(digits: np.ndarray, rotate: float, shift: float, scale: float,
                                                       shear: float) -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    fixed = A.Affine(rotate=(rotate, rotate), translate_percent=(shift, shift), scale=(scale, scale), shear=(shear, shear),
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)
    expected = np.stack([fixed(image=image)["image"] for image in digits]).astype(int)
    got = warp(torch.from_numpy(digits), affine_matrices(_fixed(len(digits), rotate, shift, scale, shear))).numpy()
    assert got.dtype == np.uint8 and got.shape == digits.shape
    difference = np.abs(got.astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.05  # interpolation rounding only
    assert np.abs(got.astype(int) - digits).mean() > 1  # and the images did change


@pytest.mark.parametrize(("operation", "change"), [("dilation", 1), ("erosion", -1)])
def test_restroke_gives_albumentations_image(digits: np.ndarray, operation: str, change: int) -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    edge = np.zeros((1, 28, 28), np.uint8)
    edge[0, :, :3] = 255  # ink along the border: erosion must not eat it
    images = np.concatenate([digits, edge])
    morph = A.Morphological(scale=(2, 2), operation=operation, p=1.0)
    expected = np.stack([morph(image=image)["image"] for image in images])
    got = restroke(torch.from_numpy(images), torch.full((len(images),), change)).numpy()
    assert np.array_equal(got, expected) and not np.array_equal(got, images)
    assert np.array_equal(restroke(torch.from_numpy(images), torch.zeros(len(images), dtype=torch.int64)).numpy(), images)


def test_displace_gives_opencv_remap_image(digits: np.ndarray) -> None:
    import cv2

    fields = elastic_fields(len(digits), torch.Generator().manual_seed(0), CPU)
    ys, xs = np.mgrid[0:28, 0:28].astype(np.float32)
    expected = np.stack([cv2.remap(image, xs + field[0], ys + field[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0) for image, field in zip(digits, fields.numpy())]).astype(int)
    got = displace(torch.from_numpy(digits), fields).numpy()
    difference = np.abs(got.astype(int) - expected)
    assert got.dtype == np.uint8 and difference.max() <= 2 and difference.mean() < 0.05  # interpolation rounding only
    assert np.abs(got.astype(int) - digits).mean() > 1  # and the images did change
    assert np.array_equal(displace(torch.from_numpy(digits), torch.zeros_like(fields)).numpy(), digits)


def test_elastic_fields_are_smooth_and_as_large_as_albumentations() -> None:
    from albumentations.augmentations.geometric.functional import generate_displacement_fields

    from competition.augment import ELASTIC_ALPHA, ELASTIC_SIGMA

    ours = elastic_fields(500, torch.Generator().manual_seed(0), CPU).numpy()
    rng = np.random.default_rng(0)
    theirs = np.stack([np.stack(generate_displacement_fields((28, 28), ELASTIC_ALPHA, ELASTIC_SIGMA, same_dxdy=False,
                                                             kernel_size=(0, 0), random_generator=rng,
                                                             noise_distribution="uniform")) for _ in range(500)])
    assert ours.shape == theirs.shape == (500, 2, 28, 28)
    assert 0.8 < ours.std() / theirs.std() < 1.25 and ours.std() > 0.5  # displacements of about a pixel or more
    def roughness(fields: np.ndarray) -> float:  # how far neighbours move apart, per pixel of movement (white noise: > 1)
        return float(np.abs(np.diff(fields, axis=-1)).mean() / np.abs(fields).mean())

    assert roughness(ours) < 0.3 and 0.8 < roughness(ours) / roughness(theirs) < 1.25  # as smooth as albumentations'
    assert roughness(2 * np.random.default_rng(1).random((500, 2, 28, 28)) - 1) > 1  # what the measure says of noise


def test_device_batches_bend_the_share_asked_for(digits: np.ndarray) -> None:
    still = TrainConfig(batch_size=40, rotate=0, shift=0, scale=0, shear=0)
    for share, low, high in ((0.0, 0, 0), (1.0, 40, 40), (0.5, 10, 30)):
        ((x, y),) = list(DeviceBatches(digits, np.arange(len(digits)), still.replace(elastic=share), CPU))
        changed = sum(not np.array_equal(image, digits[row]) for image, row in zip(x.numpy(), y.numpy()))
        assert low <= changed <= high, share


def test_device_batches_restroke_the_share_asked_for(digits: np.ndarray) -> None:
    still = TrainConfig(batch_size=40, rotate=0, shift=0, scale=0, shear=0)
    ink = (digits > 127).sum((1, 2))
    for share, low, high in ((0.0, 0, 0), (1.0, 38, 40), (0.5, 10, 30)):
        ((x, y),) = list(DeviceBatches(digits, np.arange(len(digits)), still.replace(stroke=share), CPU))
        changed = ((x.numpy() > 127).sum((1, 2)) != ink[y.numpy()]).sum()
        assert low <= changed <= high, share


def test_zero_ranges_leave_the_images_as_they_are(digits: np.ndarray) -> None:
    config = TrainConfig(rotate=0, shift=0, scale=0, shear=0)
    params = random_params(len(digits), config, torch.Generator().manual_seed(0), CPU)
    assert np.array_equal(warp(torch.from_numpy(digits), affine_matrices(params)).numpy(), digits)


def test_parameters_are_drawn_from_the_configured_ranges() -> None:
    config = TrainConfig(rotate=10, shift=0.08, scale=0.1, shear=5)
    params = random_params(20_000, config, torch.Generator().manual_seed(1), CPU)
    for name, low, high in (("rotate", -10, 10), ("sx", 0.9, 1.1), ("sy", 0.9, 1.1), ("shx", -5, 5), ("shy", -5, 5)):
        values = params[name]
        assert low <= values.min() and values.max() <= high, name
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low), name  # spans it
    for name in ("tx", "ty"):
        assert set(params[name].unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}  # int(u * 28), |u| <= 0.08


@pytest.mark.parametrize("warp_images", [8192, 32, 20])  # all rows at once; two batches; less than two (-> one)
def test_device_batches_cover_each_row_once_per_epoch_and_repeat_under_a_seed(
        digits: np.ndarray, warp_images: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("competition.device_augment.WARP_IMAGES", warp_images)
    labels = np.arange(len(digits)) % 10
    config = TrainConfig(batch_size=16, seed=3)
    first = DeviceBatches(digits, labels, config, CPU)
    epochs = [[(x.clone(), y.clone()) for x, y in first] for _ in range(2)]
    assert [len(x) for x, _ in epochs[0]] == [16, 16, 8] == [len(y) for _, y in epochs[0]]
    assert all(x.dtype == torch.uint8 and x.shape[1:] == (28, 28) for x, _ in epochs[0])
    assert sorted(torch.cat([y for _, y in epochs[0]]).tolist()) == sorted(labels.tolist())
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])  # a new shuffle and new warps each epoch
    second = DeviceBatches(digits, labels, config, CPU)
    again = [[(x, y) for x, y in second] for _ in range(2)]
    for one, other in zip(epochs, again):
        assert all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(one, other))


@pytest.mark.parametrize("warp_images", [8192, 16])
def test_device_batches_keep_each_image_with_its_label(digits: np.ndarray, warp_images: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("competition.device_augment.WARP_IMAGES", warp_images)
    rows = np.arange(len(digits))  # a label naming each image's row
    for x, y in DeviceBatches(digits, rows, TrainConfig(batch_size=16, rotate=0, shift=0, scale=0, shear=0), CPU):
        assert np.array_equal(x.numpy(), digits[y.numpy()])


def test_a_tiny_cv_through_the_device_path(tmp_path: object) -> None:
    from pathlib import Path

    from competition.cv import run_cv

    full = read_train(SAMPLE)
    assert full.labels is not None
    data = Digits(images=full.images[:300], labels=full.labels[:300], source="first 300")
    out = Path(str(tmp_path)) / "run"
    report = run_cv(data=data, out=out, config=TrainConfig(folds=2, epochs=2, batch_size=32, data_on_device="yes"))
    assert report["rows"] == 300 and 0.0 <= report["oof_accuracy"] <= 1.0 and (out / "oof.csv").exists()
    assert report["config"]["data_on_device"] == "yes"
