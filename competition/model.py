"""Model definitions. Pure nn.Modules: no devices, dtypes or I/O here."""

from __future__ import annotations

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


ARCHS: dict[str, type[nn.Module]] = {"reference": ReferenceCNN}


def build_model(arch: str, *, dropout: float) -> nn.Module:
    return ARCHS[arch](dropout=dropout)
