"""submission.csv from the ensemble, with a timestamped copy and a line in the submissions log."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import is_sample, read_test, read_train
from .ensemble import Ensemble
from .errors import UserError
from .io import atomic_write, git_commit
from .metrics import accuracy, log_loss

log = logging.getLogger(__name__)


KAGGLE_ROWS = 28_000  # rows of the competition's test.csv, and so of every submission it accepts
DEFAULT_OUT = Path("submissions/submission.csv")


def kaggle_problems(frame: pd.DataFrame) -> list[str]:
    """Why Kaggle would refuse this submission ([] when it would accept it)."""
    problems = []
    if list(frame.columns) != ["ImageId", "Label"]:
        problems.append(f"columns {list(frame.columns)}, not ['ImageId', 'Label']")
    if len(frame) != KAGGLE_ROWS:
        problems.append(f"{len(frame):,} rows; Kaggle's test.csv has {KAGGLE_ROWS:,}")
    elif "ImageId" in frame and not np.array_equal(frame["ImageId"].to_numpy(), np.arange(1, KAGGLE_ROWS + 1)):
        problems.append(f"ImageId is not 1..{KAGGLE_ROWS}")
    if "Label" in frame and not (pd.api.types.is_integer_dtype(frame["Label"]) and frame["Label"].between(0, 9).all()):
        problems.append("labels are not integers 0..9")
    return problems


def write_submission(*, models: Path, data: Path, out: Path | None = None) -> pd.DataFrame:
    """Predict every row of the test file; ImageId counts from 1 in the file's row order.

    out: None = submissions/submission.csv for a Kaggle-sized test file, else submissions/submission-N-rows.csv,
    so that a file Kaggle would refuse never sits under the name people upload."""
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / 'submission.csv'}")
    (out or DEFAULT_OUT).parent.mkdir(parents=True, exist_ok=True)  # now, not after the inference: a bad --out fails at once
    test = read_test(data)
    if out is None:
        out = DEFAULT_OUT if len(test) == KAGGLE_ROWS else DEFAULT_OUT.with_name(f"submission-{len(test)}-rows.csv")
    ensemble = Ensemble.load(models)
    log.info(f"submit: {len(test):,} images from {test.source}; {len(ensemble.members)} model(s) from {models}")
    trained_on = {str(m.extra.get("data", "")) for m in ensemble.members}  # "" for a bare state dict
    sample_trained = sorted(source for source in trained_on if is_sample(source))
    if sample_trained and not is_sample(test.source):
        # the trap: `make submit` on a fresh clone trains on the sample; a later submission for the full test file
        # would quietly send those models, which score well below a full-data run
        log.warning(f"submit: warning: {models} was trained on the bundled sample ({', '.join(sample_trained)}), not on "
                    f"the full train file; train on it first (`make cv` once `make data` has filled data/)")
    folds = max((m.config.folds for m in ensemble.members if m.fold is not None), default=0)
    if models.is_dir() and len(ensemble.members) < folds:
        log.warning(f"submit: warning: {models} has {len(ensemble.members)} of its {folds} fold models (an interrupted "
                    f"cv? the same cv command trains the rest)")
    labels = ensemble.predict_proba(test.images, progress=True).argmax(1)
    frame = pd.DataFrame({"ImageId": np.arange(1, len(test) + 1), "Label": labels})
    problems = kaggle_problems(frame)
    if problems:
        log.warning(f"submit: warning: Kaggle would not accept {out}: {'; '.join(problems)}"
                    + (" (the bundled sample's test file makes a smoke test, not an upload)" if is_sample(test.source) else ""))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (out, out.with_name(f"{out.stem}-{stamp}{out.suffix}")):
        atomic_write(path, lambda h: frame.to_csv(h, index=False), mode="w")
    score = ensemble.cv_score()
    log_path = out.parent / "log.csv"
    new = not log_path.exists()
    with log_path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["time", "run", "cv_score", "data", "rows", "file", "commit"])
        writer.writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), str(models), "" if score is None else f"{score:.5f}",
                         test.source, len(test), out.with_name(f"{out.stem}-{stamp}{out.suffix}").name, git_commit()])
    log.info(f"submit: wrote {out} ({len(frame):,} rows; CV score {score if score is None else f'{score:.4f}'}); log {log_path}")
    return frame


def evaluate(*, models: Path, data: Path) -> dict[str, Any]:
    """Accuracy of the ensemble and of each member on a labelled file.

    Scoring models on rows they trained on is allowed (a sanity check, or the notebook's own model on its file) but
    flagged: `seen_in_training` is true and a warning says that the OOF accuracy is the honest score."""
    digits = read_train(data)
    assert digits.labels is not None
    ensemble = Ensemble.load(models)
    seen = sorted({str(m.extra["data"]) for m in ensemble.members if str(m.extra.get("data", "")).split("[")[0]
                   == digits.source.split("[")[0]})
    if seen:
        log.warning(f"evaluate: warning: {models} was trained on {seen[0]}, the rows scored here: this accuracy is "
                    f"optimistic; the run's out-of-fold accuracy (cv_report.json) is the honest score")
    per_model = ensemble.member_probs(digits.images, progress=True)
    mean = ensemble.combine(per_model)
    return {
        "data": digits.source, "n": len(digits), "models": len(ensemble.members), "seen_in_training": bool(seen),
        "accuracy": accuracy(mean, digits.labels), "loss": log_loss(mean, digits.labels),
        "per_model": [{"checkpoint": str(m.path), "fold": m.fold, "accuracy": accuracy(p, digits.labels)}
                      for m, p in zip(ensemble.members, per_model)],
    }
