"""Training-time augmentation (albumentations) and the batch loader that runs it off the training thread."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import TrainConfig
from .sketch import sketches

if TYPE_CHECKING:
    import albumentations as A


# the elastic warp's displacement field: uniform noise smoothed by a Gaussian of ELASTIC_SIGMA px, times ELASTIC_ALPHA
# px; Simard, Steinkraus and Platt (2003)'s values for 28x28 digits, not tuned here
ELASTIC_ALPHA, ELASTIC_SIGMA = 34.0, 4.0


def build_transforms(config: TrainConfig) -> list[A.BasicTransform]:
    """Small geometric changes a writer's hand makes; never flips (a flipped 2 is not a 2).

    Applied one by one rather than through A.Compose: Compose's per-call checks cost about as much as the
    warp itself on a 28x28 image, and this runs thousands of times a second.
    """
    # albumentations asks PyPI for a newer version on import unless this is set: no hidden network access.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    transforms: list[A.BasicTransform] = [
        A.Affine(rotate=(-config.rotate, config.rotate),
                 translate_percent=(-config.shift, config.shift),
                 scale=(1 - config.scale, 1 + config.scale),
                 shear=(-config.shear, config.shear), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
    ]
    if config.elastic > 0:  # local warps: a random displacement field in [-1, 1] px, smoothed, scaled (Simard et al. 2003)
        transforms.append(A.ElasticTransform(alpha=ELASTIC_ALPHA, sigma=ELASTIC_SIGMA, noise_distribution="uniform",
                                             border_mode=cv2.BORDER_CONSTANT, fill=0, p=config.elastic))
    if config.stroke > 0:  # a pen a pixel wider or narrower: a 2x2 grey dilation or erosion
        transforms.append(A.OneOf([A.Morphological(scale=(2, 2), operation="dilation", p=1.0),
                                   A.Morphological(scale=(2, 2), operation="erosion", p=1.0)], p=config.stroke))
    return transforms


Batch = tuple[int, np.ndarray]  # (augmentation seed, row indices)


class EpochBatches(Sampler[Batch]):
    """Yields one Batch per step; a new shuffle each time it is iterated (= each epoch).

    Seeding each batch from (seed, epoch, batch) makes augmentation reproducible whatever the
    number of worker processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n)
        for start in range(0, self.n, self.batch_size):
            yield int(rng.integers(2**31)), order[start:start + self.batch_size]


class AugmentedBatches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """dataset[(seed, indices)] -> (augmented uint8 images (B, 28, 28), int64 labels (B,))."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> None:
        self.images, self.labels, self.group, self.redraw = images, labels, config.aug_group, config.redraw
        self.sketches = sketches(images, config.seed) if config.redraw > 0 else None
        self.transforms = build_transforms(config)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: Batch) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        seed, index = item
        for i, transform in enumerate(self.transforms):
            transform.set_random_seed(seed + i)
        n, group = len(index), self.group
        # (n, 28, 28) -> (n / group, 28, 28, group): each group of images becomes the channels of one
        # image, so one albumentations call warps them all with one random draw. The rows are freshly
        # shuffled every epoch, so every image still sees independent draws from epoch to epoch.
        stack = np.zeros((-(-n // group) * group, 28, 28), np.uint8)
        stack[:n] = self.images[index]
        if self.sketches is not None:  # drawn only then, so runs without it keep their random stream
            drawn = np.random.default_rng([seed, 1]).random(n) < self.redraw
            stack[:n][drawn] = self.sketches[index[drawn]]
        groups = np.ascontiguousarray(stack.reshape(-1, group, 28, 28).transpose(0, 2, 3, 1))
        for transform in self.transforms:
            for j in range(len(groups)):
                groups[j] = transform(image=groups[j])["image"].reshape(28, 28, group)
        batch = np.ascontiguousarray(groups.transpose(0, 3, 1, 2).reshape(-1, 28, 28)[:n])
        return torch.from_numpy(batch), torch.from_numpy(self.labels[index])


def _quiet_worker(_: int) -> None:
    # The worker only warps 28x28 images: one thread, so it does not fight the training threads.
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(0)


def make_loader(images: np.ndarray, labels: np.ndarray, config: TrainConfig, *, pin_memory: bool = False) -> DataLoader:
    sampler = EpochBatches(len(images), config.batch_size, config.seed)
    return DataLoader(
        AugmentedBatches(images, labels, config), sampler=sampler, batch_size=None,
        num_workers=config.workers, persistent_workers=config.workers > 0,
        prefetch_factor=8 if config.workers > 0 else None,
        worker_init_fn=_quiet_worker if config.workers > 0 else None, pin_memory=pin_memory,
    )
