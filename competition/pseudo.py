"""Pseudo-labels: the test rows that a finished run or blend labels with high confidence, added to the training
part of every fold (never to a validation part, so the out-of-fold score stays honest)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blend import BLEND_FILE, read_blend
from .data import Digits
from .errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabels:
    images: np.ndarray  # (M, 28, 28) uint8 test images
    labels: np.ndarray  # (M,) int64: the source's predicted labels

    def digest(self) -> str:
        return hashlib.sha1(self.images.tobytes() + self.labels.tobytes()).hexdigest()[:16]


def _trained_on(source: Path) -> list[tuple[Path, str, str]]:
    """(run, digest of the data it trained on (the file for runs from before digests), that file) for the runs
    behind `source`."""
    runs = [run for run, _ in read_blend(source)] if (source / BLEND_FILE).is_file() else [source]
    found = []
    for run in runs:
        report = run / "cv_report.json"
        if not report.is_file():
            raise UserError(f"{run}: not a finished cv run (no cv_report.json); pseudo-labels come from a run or a blend")
        saved = json.loads(report.read_text())
        found.append((run, str(saved.get("data_digest") or saved["data"]), str(saved["data"])))
    return found


def pseudo_labels(*, source: Path, train: Digits, test: Digits, threshold: float, digest: str) -> PseudoLabels:
    """The rows of `test` that `source` (trained on `train`, whose data digest is `digest`) labels with a probability
    of at least `threshold`, with those labels."""
    from .ensemble import Ensemble

    if not source.is_dir():
        raise UserError(f"--pseudo-label {source}: no such run or blend folder")
    for run, trained_on, file in _trained_on(source):
        if trained_on not in (digest, train.source):
            raise UserError(f"--pseudo-label {source}: {run} was trained on {file}, not on {train.source}; "
                            f"pseudo-labels must come from models of the same training data")
    probs = Ensemble.load(source).predict_proba(test.images, progress=True)
    keep = probs.max(1) >= threshold
    log.info(f"cv: pseudo-labels: {int(keep.sum()):,} of {len(test):,} rows of {test.source} at probability >= "
             f"{threshold:g} from {source}")
    return PseudoLabels(images=test.images[keep], labels=probs.argmax(1)[keep].astype(np.int64))
