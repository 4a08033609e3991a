"""`runs`: one row per finished run and blend under models/, best OOF first, with the submissions made from each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .blend import BLEND_FILE


def _submissions(log_path: Path) -> pd.DataFrame:
    if not log_path.is_file():
        return pd.DataFrame(columns=["run", "public_score"])
    table = pd.read_csv(log_path, dtype=str, keep_default_na=False)
    if "public_score" not in table:
        table["public_score"] = ""
    return table


def _run_row(folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    config = report["config"]
    return {"name": str(folder), "kind": "run", "arch": config.get("arch", "reference"), "epochs": config["epochs"],
            "lr": config["lr"], "dropout": config["dropout"], "batch_size": config["batch_size"], "seed": config["seed"],
            "folds": config["folds"], "rows": report["rows"], "oof_accuracy": report["oof_accuracy"],
            "oof_loss": report["oof_loss"], "wall_min": round(report.get("wall_seconds", 0) / 60, 1),
            "host": report.get("host", ""), "finished": report.get("finished", "")}


def _blend_row(folder: Path, report: dict[str, Any]) -> dict[str, Any]:
    members = [f"{Path(m['run']).name}×{m['weight']:.2f}" for m in report["members"] if m["weight"] > 0]
    return {"name": str(folder), "kind": "blend", "arch": " + ".join(members), "rows": report["rows"],
            "oof_accuracy": report["oof_accuracy"], "oof_loss": report["oof_loss"]}


def list_runs(root: Path = Path("models"), submissions: Path = Path("submissions/log.csv")) -> list[dict[str, Any]]:
    """Every finished run (cv_report.json) and blend (blend.json) under `root`, best OOF accuracy first."""
    rows = []
    for report_path in sorted([*root.glob("*/cv_report.json"), *root.glob("*/*/cv_report.json"),
                               *root.glob("*/" + BLEND_FILE), *root.glob("*/*/" + BLEND_FILE)]):
        report = json.loads(report_path.read_text())
        folder = report_path.parent
        rows.append(_blend_row(folder, report) if report_path.name == BLEND_FILE else _run_row(folder, report))
    log = _submissions(submissions)
    for row in rows:
        made = [score for run, score in zip(log["run"], log["public_score"]) if Path(run) == Path(row["name"])]
        scores = [score for score in made if score]
        row["submissions"] = len(made)
        row["public_score"] = float(scores[-1]) if scores else None  # the latest one recorded
    return sorted(rows, key=lambda row: -row["oof_accuracy"])


def runs_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table, for the terminal."""
    if not rows:
        return "no finished runs or blends under models/; `make cv` makes one"
    columns = ["name", "kind", "arch", "epochs", "lr", "dropout", "batch_size", "folds", "oof_accuracy", "oof_loss",
               "public_score", "submissions", "wall_min", "host", "finished"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    return frame.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.5g}")
