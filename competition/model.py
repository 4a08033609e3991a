"""Model definitions. Pure nn.Modules: no devices, dtypes or I/O here."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Inputs are x / 255 normalised with these, as the original notebook's Normalize((0.5,), (0.5,)) did.
NORMALIZE = {"mean": 0.5, "std": 0.5}


class ReferenceCNN(nn.Module):
    """The original notebook's CNN. Attribute names are its state_dict keys (conv1..fc2).

    Input (N, 1, 28, 28) normalised with mean 0.5 / std 0.5; output (N, 10) logits.
    """

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128 * 7 * 7, 128)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        # ReLU after the pool: relu(max(a, b)) == max(relu(a), relu(b)) exactly (same outputs and
        # gradients as the notebook's conv -> relu -> pool), but on a quarter of the values, and with
        # channels_last no layout copies in the pool's backward (docs/training.md).
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 32, 14, 14)
        x = F.relu(self.conv2(x))  # (N, 64, 14, 14)
        x = F.relu(F.max_pool2d(self.conv3(x), 2))  # (N, 128, 7, 7)
        # reshape, not view: a channels_last tensor is not view-compatible; same weights either way
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    """Conv (no bias: BN has one) -> BatchNorm -> ReLU."""
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BatchNormCNN(nn.Module):
    """The batch-normalised CNN of the strongest Kaggle MNIST notebooks: stacked 3x3 convs, a strided 5x5 conv
    instead of pooling, BN after every conv, dropout after each stage.

    Input (N, 1, 28, 28) normalised; output (N, 10) logits. Costs more per image than the reference CNN
    (docs/training.md, architectures).
    """

    def __init__(self, dropout: float = 0.4) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn(1, 32, 3), _conv_bn(32, 32, 3), _conv_bn(32, 32, 5, stride=2),
                                    nn.Dropout(dropout))  # (N, 32, 14, 14)
        self.stage2 = nn.Sequential(_conv_bn(32, 64, 3), _conv_bn(64, 64, 3), _conv_bn(64, 64, 5, stride=2),
                                    nn.Dropout(dropout))  # (N, 64, 7, 7)
        self.stage3 = nn.Sequential(_conv_bn(64, 128, 4, padding=0), nn.Flatten(), nn.Dropout(dropout))  # (N, 128*4*4)
        self.head = nn.Linear(128 * 4 * 4, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stage3(self.stage2(self.stage1(x))))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 strided) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small residual network: different enough from the plain CNNs (identity paths, global average pooling) to make
    different mistakes, at a cost close to the reference CNN's (docs/training.md, architectures).

    Input (N, 1, 28, 28) normalised; output (N, 10) logits.
    """

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16, 3)  # (N, 16, 28, 28)
        self.blocks = nn.Sequential(ResidualBlock(16, 16), ResidualBlock(16, 32, stride=2), ResidualBlock(32, 32),
                                    ResidualBlock(32, 64, stride=2), ResidualBlock(64, 64))  # (N, 64, 7, 7)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x)).mean(dim=(2, 3))  # global average pooling: (N, 64)
        return self.head(self.dropout(x))


class PooledResNet(nn.Module):
    """`resnet` made cheap enough for `make cv`: a wider stem, then max-pooling, so that no residual block runs at
    28x28 (thin full-resolution layers are what make `resnet` slow on a CPU: memory traffic, not arithmetic), and
    three blocks instead of five (docs/training.md, architectures). `width`: channels of the stem and at 14x14, twice that at 7x7.

    Input (N, 1, 28, 28) normalised; output (N, 10) logits.
    """

    def __init__(self, dropout: float = 0.2, width: int = 32) -> None:
        super().__init__()
        self.stem = _conv_bn(1, width, 3)  # (N, width, 28, 28), pooled to (N, width, 14, 14)
        self.blocks = nn.Sequential(ResidualBlock(width, width), ResidualBlock(width, 2 * width, stride=2),
                                    ResidualBlock(2 * width, 2 * width))  # (N, 2 * width, 7, 7)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(F.max_pool2d(self.stem(x), 2)).mean(dim=(2, 3))  # global average pooling: (N, 2 * width)
        return self.head(self.dropout(x))


class WidePooledResNet(PooledResNet):
    """`poolres` with 1.5x the channels (48 at 28x28 and 14x14, 96 at 7x7): more capacity for a slower step
    (docs/training.md, architectures)."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__(dropout, width=48)


def deskew(x: Tensor) -> Tensor:
    """(B, 1, H, W) -> the ink above each image's darkest pixel, sheared so that the digit's principal axis stands
    upright (by its second moments) and centred on its centre of mass; the same for any affine scaling of the pixels."""
    ink = x - x.amin(dim=(2, 3), keepdim=True)
    h, w = x.shape[-2:]
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
    mass = ink.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    r, c = (ink * rows).sum(dim=(2, 3), keepdim=True) / mass, (ink * cols).sum(dim=(2, 3), keepdim=True) / mass
    spread = (ink * (rows - r) ** 2).sum(dim=(2, 3)) / mass.view(-1, 1)  # (B, 1) row variance, px^2
    slant = (ink * (rows - r) * (cols - c)).sum(dim=(2, 3)) / mass.view(-1, 1) / spread.clamp_min(1e-6)  # columns per row
    # affine_grid maps each output pixel to where it samples the input, in coordinates scaled to [-1, 1] per axis:
    # input column = output column + slant * output row + the centre of mass's offset from the image centre
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = 1, 1
    theta[:, 0, 1] = slant[:, 0] * h / w
    theta[:, 0, 2] = (c.view(-1) - (w - 1) / 2) / (w / 2)
    theta[:, 1, 2] = (r.view(-1) - (h - 1) / 2) / (h / 2)
    grid = F.affine_grid(theta, list(ink.shape), align_corners=False)
    return F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def nearest(queries: Tensor, points: Tensor, k: int, *, themselves: bool = False) -> tuple[Tensor, Tensor]:
    """Distances and indices (Q, k) of each query's k nearest points (P, D), a block of queries at a time (a block's
    distances to every point, 1024 x P floats, are what memory holds); `themselves`: the queries are the points, each
    left out of its own neighbours (leave-one-out)."""
    distances, indices = [], []
    for start in range(0, len(queries), 1024):
        d = torch.cdist(queries[start:start + 1024], points)
        if themselves:
            d[torch.arange(len(d)), torch.arange(start, start + len(d))] = float("inf")
        distance, index = d.topk(k, largest=False)
        distances.append(distance)
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


def votes(distance: Tensor, labels: Tensor) -> Tensor:
    """(Q, k) distances to the neighbours and their labels -> (Q, 10) probabilities: votes weighted by 1 / distance."""
    weights = torch.zeros(len(distance), 10, device=distance.device)
    weights.scatter_add_(1, labels, 1 / distance.clamp_min(1e-6))
    return weights / weights.sum(1, keepdim=True)


class NearestNeighbours(nn.Module):
    """k nearest neighbours among the training digits, deskewed and projected onto their first principal components,
    their votes weighted by 1 / distance. Nothing to learn by gradient: `memorize` keeps the projection and the
    projected training digits (buffers, so a checkpoint holds them), and chooses k and the number of components by
    leave-one-out on those digits alone, each read by its neighbours among the others. Far weaker alone than the
    networks, it errs elsewhere: it gets right some of the digits that every network gets wrong (docs/training.md,
    nearest neighbours)."""

    COMPONENTS = (40, 60, 80, 100)  # the numbers of principal components leave-one-out chooses among
    KS = tuple(range(1, 13))  # the numbers of voting neighbours it chooses among

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()  # dropout: accepted as every architecture's is, unused
        # checkpoints from before the choice have no k: theirs was 6, with 40 components
        self.register_buffer("k", torch.tensor(6))  # () voting neighbours
        self.register_buffer("mean", torch.zeros(28 * 28))  # (784,) of the deskewed training digits
        self.register_buffer("basis", torch.zeros(40, 28 * 28))  # (components, 784) principal axes
        self.register_buffer("points", torch.zeros(0, 40))  # (N, components) the training digits, projected
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))  # (N,)

    def features(self, x: Tensor) -> Tensor:
        return (deskew(x.float()).flatten(1) - self.mean) @ self.basis.T

    @torch.no_grad()
    def memorize(self, x: Tensor, labels: Tensor) -> None:
        """Keep the training digits x (N, 1, 28, 28) with their labels (N,); choose k and the components."""
        with torch.autocast(x.device.type, enabled=False):  # distances in fp32, as in forward
            flat = deskew(x.float()).flatten(1)
            self.mean = flat.mean(0)
            centred, labels = flat - self.mean, labels.long()
            axes = torch.linalg.svd(centred, full_matrices=False)[2]  # (min(N, 784), 784) principal axes
            ks = [k for k in self.KS if k < len(labels)] or [1]
            best: tuple[float, int, int] | None = None  # (leave-one-out accuracy, components, k)
            for components in sorted({min(c, len(axes)) for c in self.COMPONENTS}):
                projected = centred @ axes[:components].T
                distance, index = nearest(projected, projected, max(ks), themselves=len(labels) > 1)
                for k in ks:
                    accuracy = float((votes(distance[:, :k], labels[index[:, :k]]).argmax(1) == labels).float().mean())
                    if best is None or accuracy > best[0]:  # ties keep the fewer components, then the fewer neighbours
                        best = (accuracy, components, k)
            assert best is not None
            _, components, k = best
            self.basis = axes[:components].contiguous()
            self.points, self.labels, self.k = centred @ self.basis.T, labels, torch.tensor(k, device=x.device)

    def forward(self, x: Tensor) -> Tensor:
        # distances in fp32 even under autocast: bf16's 8-bit mantissa is too coarse to rank near neighbours
        with torch.autocast(x.device.type, enabled=False):
            distance, index = nearest(self.features(x), self.points, min(int(self.k), len(self.points)))
            return torch.log(votes(distance, self.labels[index]) + 1e-4)  # log-probabilities: softmax gives them back

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("basis", "points", "labels"):  # sized by the components chosen and the digits kept: take theirs
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        state_dict.setdefault(prefix + "k", torch.tensor(6))  # a checkpoint from before the choice
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


ARCHS: dict[str, type[nn.Module]] = {"reference": ReferenceCNN, "bncnn": BatchNormCNN, "resnet": SmallResNet,
                                     "poolres": PooledResNet, "poolres-wide": WidePooledResNet, "knn": NearestNeighbours}


def build_model(arch: str, *, dropout: float) -> nn.Module:
    return ARCHS[arch](dropout=dropout)
