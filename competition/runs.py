"""`runs`: one row per finished run and blend under models/, best OOF first, with the submissions made from each."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .blend import BLEND_FILE, read_blend, read_report
from .config import RECIPES, RUN_SETTINGS, TrainConfig
from .errors import UserError
from .io import read_csv, read_json

log = logging.getLogger(__name__)


def _submissions(log_path: Path) -> pd.DataFrame:
    if not log_path.is_file():
        return pd.DataFrame(columns=["run", "public_score"])
    table = read_csv(log_path, what="submissions log", columns=("run",), dtype=str, keep_default_na=False)
    if "public_score" not in table:
        table["public_score"] = ""
    return table


IDENTITY = ("seed", "split_seed", "folds")  # name one run of a recipe rather than change the recipe
SHOWN = ("arch", "epochs", "lr", "dropout", "batch_size")  # hyperparameters with a column of their own


def recipe_of(config: TrainConfig) -> tuple[str, str]:
    """(the named recipe of the run's architecture that differs from it in the fewest hyperparameters, the first
    of equals; "field=value" for each it changes beyond the table's columns), e.g. ("default", "label_smoothing=0")."""
    ours = {k: v for k, v in config.to_dict().items() if k not in RUN_SETTINGS and k not in IDENTITY}
    recipes = {name: recipe.to_dict() for name, recipe in RECIPES.items() if recipe.arch == config.arch}  # never empty
    differ = {name: [k for k, v in ours.items() if recipe[k] != v] for name, recipe in recipes.items()}
    name = min(differ, key=lambda n: len(differ[n]))
    return name, " ".join(f"{k}={ours[k]:g}" if isinstance(ours[k], float) else f"{k}={ours[k]}"
                          for k in differ[name] if k not in SHOWN)


def _run_row(folder: Path) -> dict[str, Any]:
    report, config = read_report(folder)  # refuses a run that lost a fold: not the ensemble its figures describe
    recipe, changes = recipe_of(config)
    return {"name": str(folder), "kind": "run", "arch": config.arch, "recipe": recipe, "changes": changes,
            "epochs": config.epochs, "lr": config.lr,
            "dropout": config.dropout, "batch_size": config.batch_size, "seed": config.seed,
            "folds": config.folds, "rows": report["rows"], "oof_accuracy": float(report["oof_accuracy"]),
            "oof_loss": float(report["oof_loss"]), "train_min": round(float(report["train_seconds"]) / 60, 1),
            "host": report.get("host", ""), "finished": report.get("finished", "")}


def _blend_row(folder: Path) -> dict[str, Any]:
    read_blend(folder)  # a well-formed blend; its figures hold only while every member is the run it was blended from
    report = read_json(folder / BLEND_FILE, what="blend file", keys=("members", "rows", "oof_accuracy", "oof_loss"))
    members = [f"{Path(m['run']).name}×{m['weight']:.2f}" for m in report["members"] if m["weight"] > 0]
    return {"name": str(folder), "kind": "blend", "arch": " + ".join(members), "rows": report["rows"],
            "oof_accuracy": float(report["oof_accuracy"]), "oof_loss": float(report["oof_loss"])}


def list_runs(root: Path = Path("models"), submissions: Path = Path("submissions/log.csv")) -> list[dict[str, Any]]:
    """Every finished run (cv_report.json) and blend (blend.json) under `root`, best OOF accuracy first."""
    rows = []
    for report_path in sorted([*root.glob("*/cv_report.json"), *root.glob("*/*/cv_report.json"),
                               *root.glob("*/" + BLEND_FILE), *root.glob("*/*/" + BLEND_FILE)]):
        folder = report_path.parent
        try:
            rows.append(_blend_row(folder) if report_path.name == BLEND_FILE else _run_row(folder))
        except (UserError, KeyError, TypeError, ValueError) as exc:  # one damaged folder must not hide the others
            log.warning(f"runs: skipped {folder}: {exc}")
    made_from = _submissions(submissions)
    for row in rows:
        made = [score for run, score in zip(made_from["run"], made_from["public_score"]) if Path(run) == Path(row["name"])]
        scores = [score for score in made if score]
        row["submissions"] = len(made)
        row["public_score"] = float(scores[-1]) if scores else None  # the latest one recorded
    return sorted(rows, key=lambda row: -row["oof_accuracy"])


def runs_table(rows: list[dict[str, Any]], root: Path = Path("models")) -> str:
    """The rows as a text table, for the terminal."""
    if not rows:
        return f"no finished runs or blends under {root}/; `make cv` makes one"
    columns = ["name", "kind", "arch", "recipe", "changes", "epochs", "lr", "dropout", "batch_size", "folds", "oof_accuracy", "oof_loss",
               "public_score", "submissions", "train_min", "host", "finished"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["public_score"] = pd.to_numeric(frame["public_score"])  # None (none recorded) prints as a blank, not "None"
    return frame.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.5g}")
