"""Blends of finished runs: member weights learned on the out-of-fold predictions, a blend file, its OOF report.

Two weightings compete: equal weights, and greedy ensemble selection with replacement (Caruana et al. 2004): start
from the best run, then repeatedly add (again, if it helps) the run whose addition most lowers the blend's OOF
errors, with the OOF log loss breaking ties so that selection keeps moving on plateaus; stop when nothing improves;
a run's weight is how often it was picked. Selection's own score flatters it: it picks on the very rows it is scored
on, and on runs of similar strength the differences it chases are a few rows wide. So each weighting is
cross-validated on the OOF rows (weights learned on four fifths, errors counted on the fifth left out) and the one
with fewer such errors is used, equal weights on a tie, since they learn nothing from the rows
(docs/training.md#blends-seeds-and-the-runs-table).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import plots
from .config import REFERENCE_RECIPE, TrainConfig
from .errors import UserError
from .io import atomic_write, read_csv, read_json
from .metrics import accuracy, log_loss

log = logging.getLogger(__name__)

BLEND_FILE = "blend.json"
PROB_COLUMNS = tuple(f"p{d}" for d in range(10))  # oof.csv's class probabilities
FORMAT = "competition-blend/1"


@dataclass
class RunOOF:
    """A finished run's out-of-fold predictions and what identifies its fold split."""

    path: Path
    probs: np.ndarray  # (N, 10) float32, each row predicted by the fold model that never saw it
    labels: np.ndarray  # (N,) int64
    split: dict[str, object]  # data, rows, folds, split seed: equal for runs whose OOF rows line up
    oof_loss: float  # the run's cv_report.json figure: a blend records it, so a member retrained since is noticed


REPORT_FILE = "cv_report.json"
REBUILD = "the same cv command rebuilds it from the fold checkpoints"


def read_report(run: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A finished run's cv_report.json and its configuration; a one-line UserError when it is missing or damaged, or
    when a fold checkpoint is missing (the report's figures, and a blend's weights, came from all of them)."""
    path = run / REPORT_FILE
    if not path.is_file():
        raise UserError(f"{run}: not a finished cv run (no {REPORT_FILE}): missing folds? the same cv command trains them")
    report = read_json(path, what=f"cv report ({REBUILD})", keys=("config", "data", "rows", "oof_accuracy", "oof_loss"))
    if not isinstance(report["config"], dict):
        raise UserError(f"{path}: not a cv report ({REBUILD}): its config is not an object")
    figures = ("rows", "oof_accuracy", "oof_loss")
    if not all(isinstance(report[k], int | float) and not isinstance(report[k], bool) for k in figures):
        raise UserError(f"{path}: not a cv report ({REBUILD}): {', '.join(figures)} should be numbers")
    try:
        config = TrainConfig.from_dict(report["config"], base=REFERENCE_RECIPE)
    except UserError as exc:
        raise UserError(f"{path}: not a cv report ({REBUILD}): {exc}") from exc
    missing = [f"fold{k}.pt" for k in range(1, config.folds + 1) if not (run / f"fold{k}.pt").is_file()]
    if missing:
        raise UserError(f"{run}: {', '.join(missing)} missing ({config.folds - len(missing)} of its {config.folds} fold "
                        f"models left) and its OOF predictions came from all {config.folds}; the same cv command trains them again")
    return report, config


def load_run(run: Path) -> RunOOF:
    """A run folder's OOF predictions (oof.csv) and split (cv_report.json); a one-line UserError when it is not finished."""
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    if (run / BLEND_FILE).is_file():
        raise UserError(f"{run}: a blend; blend its runs instead")
    report, config = read_report(run)
    oof_path = run / "oof.csv"
    table = read_csv(oof_path, what=f"run's OOF table ({REBUILD})", columns=("label", *PROB_COLUMNS))
    try:
        probs, labels = table[list(PROB_COLUMNS)].to_numpy(np.float32), table["label"].to_numpy(np.int64)
    except (ValueError, TypeError) as exc:  # a cell that is not a number
        raise UserError(f"{oof_path}: not a run's OOF table ({REBUILD}): {exc}") from exc
    if len(table) != report["rows"] or not np.isfinite(probs).all():
        raise UserError(f"{oof_path}: {len(table)} rows where the run has {report['rows']}, or probabilities that are "
                        f"not numbers; {REBUILD}")
    split = {"data": report.get("data_digest") or report["data"], "rows": report["rows"], "folds": config.folds,
             "split seed": config.fold_seed}
    return RunOOF(path=run, probs=probs, labels=labels, split=split, oof_loss=float(report["oof_loss"]))


def check_same_split(runs: list[RunOOF]) -> None:
    """Refuse runs whose OOF rows do not line up with the first run's, naming the run and what differs."""
    first = runs[0]
    for run in runs[1:]:
        for key, value in run.split.items():
            if value != first.split[key]:
                raise UserError(f"{run.path}: its {key} ({value}) differs from {first.path}'s ({first.split[key]}): "
                                f"their out-of-fold rows do not line up; blend runs of one data file, K and split seed "
                                f"(cv --split-seed S)")
        if not np.array_equal(run.labels, first.labels):
            raise UserError(f"{run.path}: its labels differ from {first.path}'s: trained on other data")


def _score(probs: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """(errors, log loss): what selection minimises, in that order."""
    return int((probs.argmax(1) != labels).sum()), log_loss(probs, labels)


def select(probs: list[np.ndarray], labels: np.ndarray, *, max_picks: int = 50) -> np.ndarray:
    """Greedy ensemble selection with replacement: how often each member was picked, (members,) int."""
    counts = np.zeros(len(probs), int)
    scores = [_score(p, labels) for p in probs]
    best = int(min(range(len(probs)), key=lambda i: scores[i]))
    counts[best], total, current = 1, probs[best].astype(np.float64), scores[best]
    for picks in range(1, max_picks):
        trials = [_score((total + p) / (picks + 1), labels) for p in probs]
        choice = int(min(range(len(probs)), key=lambda i: trials[i]))
        if trials[choice] >= current:
            break
        counts[choice] += 1
        total, current = total + probs[choice], trials[choice]
    return counts


def mix(probs: list[np.ndarray], weights: Iterable[float]) -> np.ndarray:
    """The members' probabilities (each (N, 10)) weighted and summed: a blend's (N, 10)."""
    return np.asarray(sum(w * p for w, p in zip(weights, probs)))


WEIGHT_PARTS = 5  # parts of the OOF rows a weighting is cross-validated over


def cross_validated_errors(probs: list[np.ndarray], labels: np.ndarray, *, max_picks: int) -> int:
    """OOF errors of greedy selection's weights, each part of the rows predicted with weights selected on the others."""
    from sklearn.model_selection import KFold

    wrong = 0
    for learn, held in KFold(WEIGHT_PARTS, shuffle=True, random_state=0).split(labels):
        weights = select([p[learn] for p in probs], labels[learn], max_picks=max_picks)
        wrong += int((mix([p[held] for p in probs], weights).argmax(1) != labels[held]).sum())
    return wrong


@dataclass
class Weighting:
    """The weights a blend uses and the contest that chose them."""

    method: str  # "equal" or "greedy"
    weights: np.ndarray  # (members,) float, summing to 1
    picks: np.ndarray  # (members,) int: how often greedy selection picked each run on all rows
    cross_validated_errors: dict[str, int]  # method -> its OOF errors with weights learned on the other parts


def choose_weights(probs: list[np.ndarray], labels: np.ndarray, *, max_picks: int = 50) -> Weighting:
    """Equal weights or greedy selection, whichever makes fewer cross-validated OOF errors (equal on a tie)."""
    scores = {"equal": int((mix(probs, np.ones(len(probs))).argmax(1) != labels).sum()),  # learns nothing: no parts
              "greedy": cross_validated_errors(probs, labels, max_picks=max_picks)}
    picks = select(probs, labels, max_picks=max_picks)
    method = "greedy" if scores["greedy"] < scores["equal"] else "equal"
    counts = picks if method == "greedy" else np.ones(len(probs), int)
    return Weighting(method=method, weights=counts / counts.sum(), picks=picks, cross_validated_errors=scores)


METHODS = {"equal": "equal weights: fewer or as few cross-validated OOF errors as greedy selection's",
           "greedy": "greedy ensemble selection with replacement on OOF errors, log loss breaking ties: fewer "
                     "cross-validated OOF errors than equal weights"}


def blend_runs(*, runs: list[Path], out: Path, max_picks: int = 50) -> dict[str, Any]:
    """Learn weights for `runs` on their OOF predictions; write OUT/blend.json and OUT/oof.csv; return the report."""
    if len(runs) < 2:
        raise UserError("a blend needs at least two runs")
    twice = [run for k, run in enumerate(runs) if run.resolve() in {r.resolve() for r in runs[:k]}]
    if twice:
        raise UserError(f"{twice[0]}: named twice; selection with replacement already weighs a run up where that helps")
    loaded = [load_run(run) for run in runs]
    check_same_split(loaded)
    if out.exists() and not (out / BLEND_FILE).is_file():
        raise UserError(f"{out}: exists and is not a blend; choose another --out")
    labels = loaded[0].labels
    weighting = choose_weights([run.probs for run in loaded], labels, max_picks=max_picks)
    weights = weighting.weights
    probs = mix([run.probs for run in loaded], weights)
    preds = probs.argmax(1)
    scores = [_score(run.probs, labels) for run in loaded]  # (errors, log loss) per member
    best = loaded[scores.index(min(scores))]
    best_wrong, wrong = best.probs.argmax(1) != labels, preds != labels
    report: dict[str, Any] = {
        "format": FORMAT, "rows": len(labels), "split": loaded[0].split,
        "members": [{"run": str(run.path), "weight": float(w), "picks": int(c), "oof_accuracy": accuracy(run.probs, labels),
                     "oof_loss": loss, "oof_errors": errors, "report_oof_loss": run.oof_loss}
                    for run, w, c, (errors, loss) in zip(loaded, weights, weighting.picks, scores)],
        "oof_accuracy": accuracy(probs, labels), "oof_loss": log_loss(probs, labels),
        "oof_errors": int(wrong.sum()),
        # what blending changed: the best member's errors the blend gets right, and its own new ones
        "against_best_member": {"run": str(best.path), "fixed": int((best_wrong & ~wrong).sum()),
                                "new_errors": int((wrong & ~best_wrong).sum())},
        "method": METHODS[weighting.method],
        "cross_validated_errors": weighting.cross_validated_errors,
    }
    table = pd.DataFrame(probs, columns=list(PROB_COLUMNS))
    table.insert(0, "pred", preds)
    table.insert(0, "label", labels)
    table.insert(0, "row", np.arange(len(labels)))
    atomic_write(out / "oof.csv", lambda h: table.to_csv(h, index=False, float_format="%.5f"), mode="w")
    atomic_write(out / BLEND_FILE, lambda h: json.dump(report, h, indent=2), mode="w")
    plots.confusion(labels, preds, out / "confusion.png")
    for member in report["members"]:
        log.info(f"blend: {member['run']}: OOF {member['oof_accuracy']:.4f} ({member['oof_errors']} errors), "
                 f"loss {member['oof_loss']:.4f}; weight {member['weight']:.2f}")
    change = report["against_best_member"]
    log.info(f"blend: {weighting.method} weights, chosen by cross-validation: {weighting.cross_validated_errors['equal']} "
             f"OOF errors with equal weights, {weighting.cross_validated_errors['greedy']} with greedy selection's "
             f"(each part of the rows weighed by picks made on the others)")
    log.info(f"blend: OOF {report['oof_accuracy']:.4f} ({report['oof_errors']} errors), loss {report['oof_loss']:.4f}; "
             f"against {best.path} ({min(scores)[0]} errors): {change['fixed']} fixed, {change['new_errors']} new; "
             f"wrote {out / BLEND_FILE} and {out / 'confusion.png'}")
    return report


def read_blend(path: Path) -> list[tuple[Path, float]]:
    """(run folder, weight) of each member with a weight above 0 of the blend in `path`; a one-line UserError for such a
    member that is gone, lost folds or was trained again since the blend learned its weights."""
    blend = path / BLEND_FILE
    report = read_json(blend, what="blend file", keys=("members",))
    try:
        members = [(Path(m["run"]), float(m["weight"]), float(m["report_oof_loss"]) if "report_oof_loss" in m else None)
                   for m in report["members"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{blend}: not a blend file ({exc})") from exc
    weights = [m["weight"] for m in report["members"]]
    if not all(isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w <= 1 for w in weights) or not sum(weights):
        raise UserError(f"{blend}: not a blend file (weights {weights}: each should be a number from 0 to 1, "
                        f"at least one above 0)")
    members = [member for member in members if member[1] > 0]  # a member weighed 0 may change or go
    for run, _, recorded in members:
        if not run.is_dir() or not any(run.glob("fold*.pt")):
            raise UserError(f"{blend}: member run {run} is gone (no fold*.pt); blend again without it")
        try:
            run_report, _ = read_report(run)
        except UserError as exc:
            raise UserError(f"{blend}: member {exc}") from exc
        if recorded is not None and run_report["oof_loss"] != recorded:  # None: a blend file from before it was recorded
            raise UserError(f"{blend}: member run {run} was trained again since this blend (OOF loss "
                            f"{run_report['oof_loss']:.5f}, was {recorded:.5f}): its weights were learned on other "
                            f"predictions; blend again")
    return [(run, weight) for run, weight, _ in members]
