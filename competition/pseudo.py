"""Pseudo-labels: the test rows that a finished run or blend labels with high confidence, added to the training
part of every fold (never to a validation part), each fold's labelled by the source's models of that fold only, so
the out-of-fold score stays honest."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blend import BLEND_FILE, read_blend, read_report
from .config import TrainConfig
from .data import Digits
from .errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabels:
    """Per fold (index k - 1 for fold k): the test rows the source's fold-k models label confidently, with those labels.

    Fold k's come from the source's models of fold k alone, which never saw fold k's validation rows: labels from a
    model that trained on them would carry what it learnt there into the training part, and the OOF score would
    flatter the run."""

    images: list[np.ndarray]  # per fold: (M_k, 28, 28) uint8 test images
    labels: list[np.ndarray]  # per fold: (M_k,) int64, the source's predicted labels

    def digest(self) -> str:
        digest = hashlib.sha1()
        for images, labels in zip(self.images, self.labels):
            digest.update(images.tobytes() + labels.tobytes())
        return digest.hexdigest()[:16]


def most_confident(label_smoothing: float) -> float:
    """About the highest probability a model trained with this label smoothing gives: smoothing e trains the label's
    probability towards 1 - e + e / 10 (10 classes)."""
    return 1 - 0.9 * label_smoothing


def _trained_on(source: Path) -> list[tuple[Path, dict[str, object], TrainConfig]]:
    """(run, its cv report, its configuration) for the runs behind `source`."""
    runs = [run for run, _ in read_blend(source)] if (source / BLEND_FILE).is_file() else [source]
    return [(run, *read_report(run)) for run in runs]  # refuses a run missing a fold: fold k's labels need its models


def pseudo_labels(*, source: Path, train: Digits, test: Digits, config: TrainConfig, digest: str) -> PseudoLabels:
    """For each of config's folds, the rows of `test` that `source`'s models of that fold (trained on `train`, whose
    data digest is `digest`, on config's fold split) label with a probability of at least config.pseudo_threshold."""
    from .ensemble import Ensemble

    if not source.is_dir():
        raise UserError(f"--pseudo-label {source}: no such run or blend folder")
    try:
        sources = _trained_on(source)
    except UserError as exc:
        raise UserError(f"--pseudo-label {source}: {exc}") from exc
    for run, report, theirs in sources:
        trained_on = str(report.get("data_digest") or report["data"])  # the file, for runs from before digests
        if trained_on not in (digest, train.source):
            raise UserError(f"--pseudo-label {source}: {run} was trained on {report['data']}, not on {train.source}; "
                            f"pseudo-labels must come from models of the same training data")
        if (theirs.folds, theirs.fold_seed) != (config.folds, config.fold_seed):
            raise UserError(f"--pseudo-label {source}: {run} was trained on {theirs.folds} folds of split seed "
                            f"{theirs.fold_seed}, this run on {config.folds} folds of split seed {config.fold_seed}; fold k's "
                            f"pseudo-labels come from the source's fold-k models, which must not have seen fold k's "
                            f"validation rows: use the same --folds and --split-seed")
    # a source whose every run was smoothed below the threshold would add almost no rows, after a whole run's wait
    ceiling = max(most_confident(theirs.label_smoothing) for _, _, theirs in sources)
    if ceiling < config.pseudo_threshold:
        smoothing = sorted({theirs.label_smoothing for _, _, theirs in sources})
        raise UserError(f"--pseudo-label {source}: trained with label smoothing {', '.join(f'{e:g}' for e in smoothing)}, "
                        f"so its probabilities stay near {ceiling:.2f} and below the threshold {config.pseudo_threshold:g}: "
                        f"almost no test row would be added; lower --pseudo-threshold or use runs without smoothing")
    ensemble = Ensemble.load(source)
    probs = ensemble.member_probs(test.images, progress=True)  # (models, N, 10)
    weights = ensemble.weights if ensemble.weights is not None else np.ones(len(ensemble.members))
    images, labels = [], []
    for fold in range(1, config.folds + 1):
        mine = np.array([member.fold == fold for member in ensemble.members])
        fold_probs = np.tensordot(weights[mine] / weights[mine].sum(), probs[mine], axes=1)
        keep = fold_probs.max(1) >= config.pseudo_threshold
        images.append(test.images[keep])
        labels.append(fold_probs.argmax(1)[keep].astype(np.int64))
    counts = [len(fold_labels) for fold_labels in labels]
    log.info(f"cv: pseudo-labels: {min(counts):,}–{max(counts):,} of {len(test):,} rows of {test.source} per fold at "
             f"probability >= {config.pseudo_threshold:g} from {source} (fold k's from its fold-k models)")
    return PseudoLabels(images=images, labels=labels)
