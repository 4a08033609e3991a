"""Average the fold models' softmax (a blend's with its weights): the ensemble behind submit, evaluate, predict and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, find_checkpoints, load_checkpoint
from .errors import UserError
from .infer import pick_device, predict_views, tta_views
from .io import read_json


@dataclass
class Ensemble:
    members: list[Checkpoint]
    source: Path  # the run folder, checkpoint file or blend folder it was loaded from
    weights: np.ndarray | None = None  # (members,) summing to 1, a blend's; None = all members alike

    @classmethod
    def load(cls, models: str | Path) -> Ensemble:
        """A run folder's fold models, one checkpoint, or a blend's runs (each run's folds sharing its weight)."""
        from .blend import BLEND_FILE, read_blend

        models = Path(models)
        if (models / BLEND_FILE).is_file():
            paths: list[Path] = []
            shares: list[float] = []
            for run, weight in read_blend(models):  # each run's folds share its weight
                folds = find_checkpoints(run)
                paths += folds
                shares += [weight / len(folds)] * len(folds)
            members, weights = [load_checkpoint(p) for p in paths], np.array(shares)
        else:
            members, weights = [load_checkpoint(p) for p in find_checkpoints(models)], None
        device = pick_device()
        for member in members:
            member.model.to(device).to(memory_format=torch.channels_last)  # matches infer.to_input's layout
        return cls(members=members, source=models, weights=None if weights is None else weights / weights.sum())

    def combine(self, member_probs: np.ndarray) -> np.ndarray:
        """(N, 10): the members' softmax (models, N, 10) averaged with the ensemble's weights."""
        if self.weights is None:
            return member_probs.mean(0)
        return np.tensordot(self.weights, member_probs, axes=1).astype(np.float32)

    def member_probs(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """(models, N, 10) softmax of each member for uint8 images (N, 28, 28), with test-time augmentation where
        the member's config asks for it (as its OOF score was measured). progress: a bar over the members on stderr."""
        views = tta_views(images) if any(m.config.tta for m in self.members) else [images]  # rotated once for all
        # disable only when asked: otherwise tqdm's own defaults (TQDM_DISABLE=1, say) decide
        members = tqdm(self.members, desc="predict", unit="model", dynamic_ncols=True, **({} if progress else {"disable": True}))
        probs = []
        for member in members:
            probs.append(predict_views(member.model, views if member.config.tta else [images], member.normalize,
                                       bf16=member.config.bf16))
            if not np.isfinite(probs[-1]).all():
                raise UserError(f"{member.path}: predicts NaN or infinite probabilities; retrain this run")
        return np.stack(probs) if probs else np.empty((0, len(images), 10), np.float32)

    def predict_proba(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """(N, 10) the members' softmax, averaged with the ensemble's weights."""
        return self.combine(self.member_probs(images, progress=progress))

    def cv_score(self) -> float | None:
        """OOF accuracy from the run's cv_report.json or the blend's blend.json, else the mean of the members' fold accuracy."""
        for name in ("cv_report.json", "blend.json"):
            report = self.source / name
            if report.is_file():
                return float(read_json(report, what="run or blend report", keys=("oof_accuracy",))["oof_accuracy"])
        accs = [m.metrics["val_acc"] for m in self.members if "val_acc" in m.metrics]
        return float(np.mean(accs)) if accs else None
