"""Training configuration: one typed dataclass; recipes and tuned parameters are instances of it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one fold is trained and how its model predicts. Defaults = the run the README reports."""

    arch: str = "reference"  # model name in competition.model.ARCHS ("reference" = the notebook's CNN)
    folds: int = 5  # K of StratifiedKFold
    seed: int = 42  # fold split, weight init, augmentation and shuffling all derive from it
    epochs: int = 15  # upper bound per fold (33.6k images: ~17 s each with bf16, 45-55 s in fp32 on 2 AVX2 cores); 12 made 8 more OOF errors (README)
    patience: int = 5  # epochs without a lower validation loss before a fold stops
    lr: float = 4.48e-3  # peak learning rate of Adam (the schedule's maximum), from `tune` on the full data (AVX2 host's study)
    schedule: str = "onecycle"  # "onecycle" (warm-up then cosine decay to ~0) or "constant"
    batch_size: int = 128  # images per optimiser step
    dropout: float = 0.165  # before the last layer (notebook: 0.5), from `tune`: fewer OOF errors on average than 0.33, 0.08, 0 (README)
    weight_decay: float = 1e-4  # Adam's L2 term: 1e-4 made fewer OOF errors than 0 on 7 of 7 splits (README, GPU sweep)
    label_smoothing: float = 0.0  # cross-entropy target smoothing
    rotate: float = 10.0  # degrees, uniform in [-rotate, rotate]
    shift: float = 0.08  # fraction of the image side, uniform in [-shift, shift] per axis
    scale: float = 0.1  # relative zoom, uniform in [1 - scale, 1 + scale]
    shear: float = 5.0  # degrees, uniform in [-shear, shear]
    elastic: float = 0.0  # probability of an elastic distortion per image; 0.5 did not help at 12 epochs (README)
    clean_epochs: int = 0  # last epochs without augmentation (He et al. 2019); 1 measured 99.46 vs 99.48 % OOF
    aug_group: int = 4  # images per albumentations call, sharing one draw: 92 -> 21 us/image on this CPU
    time_budget: float = 0.0  # seconds of training per fold; 0 = no limit (for equal-cost comparisons)
    bf16: bool = True  # bfloat16 autocast where the hardware has it (AVX512-BF16/AMX CPUs, GPUs): ~2x faster; fp32 elsewhere
    workers: int = 1  # augmentation processes beside the training loop (0 = in the loop)
    tta: bool = False  # predict from 3 views (as is, rotated +-6 deg): OOF 226 -> 214 errors of 42,000, 3x the inference

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def validate(self) -> TrainConfig:
        """Raise UserError naming the first out-of-range field."""
        checks = {
            "folds": self.folds >= 2,
            "epochs": self.epochs >= 1,
            "patience": self.patience >= 1,
            "lr": 0 < self.lr < 1,
            "batch_size": self.batch_size >= 1,
            "dropout": 0 <= self.dropout < 1,
            "weight_decay": self.weight_decay >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "rotate": 0 <= self.rotate <= 180,
            "shift": 0 <= self.shift < 0.5,
            "scale": 0 <= self.scale < 1,
            "shear": 0 <= self.shear < 45,
            "elastic": 0 <= self.elastic <= 1,
            "clean_epochs": 0 <= self.clean_epochs <= self.epochs,
            "aug_group": 1 <= self.aug_group <= 512,
            "time_budget": self.time_budget >= 0,
            "workers": self.workers >= 0,
            "schedule": self.schedule in ("onecycle", "constant"),
        }
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"invalid {name}={getattr(self, name)!r}")
        from .model import ARCHS  # late: config must not pull in torch for validation errors

        if self.arch not in ARCHS:
            raise UserError(f"invalid arch={self.arch!r}; known: {', '.join(ARCHS)}")
        return self

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> TrainConfig:
        """Build from a dict, ignoring keys this version does not know (older/newer checkpoints)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]


# The original notebook's settings, for comparison: Adam 1e-3 without weight decay, batch 64, rotation
# 15 deg only, patience 10, up to 100 epochs, fp32.
SEED_RECIPE = TrainConfig(
    epochs=100, patience=10, lr=1e-3, schedule="constant", batch_size=64, weight_decay=0.0,
    rotate=15.0, shift=0.0, scale=0.0, shear=0.0, bf16=False,
)
RECIPES: dict[str, TrainConfig] = {"default": TrainConfig(), "seed": SEED_RECIPE}

TUNED_FILE = Path("models/tune/best_params.json")  # written by `tune`, read by `cv` when present


def load_tuned(path: Path = TUNED_FILE) -> tuple[dict[str, object], str]:
    """(tuned hyper-parameters (lr, dropout, batch_size, ...), the data they were tuned on); ({}, "") when no study has finished."""
    if not path.exists():
        return {}, ""
    try:
        saved = json.loads(path.read_text())
        params, data = saved["params"], str(saved.get("data", ""))  # files from before "data" was recorded lack it
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a tuned-parameters file ({exc}); delete it or re-run tune") from exc
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(params) - known
    if unknown:
        raise UserError(f"{path}: unknown parameters {sorted(unknown)}")
    return dict(params), data
