"""`kaggle-submit`: upload a submission with the Kaggle CLI, wait for its public score, record it beside the CV score."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd

from .errors import UserError
from .io import atomic_write, read_csv

log = logging.getLogger(__name__)

COMPETITION = "digit-recognizer"
SETUP = ("pip install kaggle, then put your API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > API > "
         "Create New Token) or set KAGGLE_USERNAME and KAGGLE_KEY")


def _kaggle(*args: str, timeout: float) -> str:
    """Run the `kaggle` CLI; its stdout, or a UserError with its last line of output."""
    command = shutil.which("kaggle")
    if command is None:
        raise UserError(f"the kaggle command is not installed: {SETUP}")
    try:
        done = subprocess.run([command, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"kaggle {args[0]} {args[1]} did not answer in {timeout:.0f} s (offline?)") from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"kaggle {args[0]} {args[1]} failed: {said[-1] if said else f'exit code {done.returncode}'}")
    return done.stdout


def _has_credentials() -> bool:
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (config / "kaggle.json").is_file() or bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def logged_row(file: Path) -> tuple[pd.DataFrame, int] | None:
    """(submissions/log.csv beside `file`, the row whose timestamped copy has the same content as `file`)."""
    log_path = file.parent / "log.csv"
    if not log_path.is_file():
        return None
    table = read_csv(log_path, what="submissions log", columns=("file", "run", "cv_score"), dtype=str,
                     keep_default_na=False)
    target = _digest(file)
    for index in reversed(range(len(table))):
        copy = file.parent / table.loc[index, "file"]
        if copy.is_file() and _digest(copy) == target:
            return table, index
    return None


def default_message(file: Path) -> str:
    """The run and CV score of `file`, from the submissions log."""
    found = logged_row(file)
    if found is None:
        return f"{file.name} (not in the submissions log)"
    table, row = found
    entry = table.loc[row]
    commit = f", commit {entry['commit']}" if entry.get("commit") else ""
    return f"{entry['run']}: CV {entry['cv_score']}{commit}"


def record_score(file: Path, score: str) -> bool:
    """Write the public score into the log row of `file`; False when the file is not in the log."""
    found = logged_row(file)
    if found is None:
        return False
    table, row = found
    if "public_score" not in table:
        table["public_score"] = ""
    table.loc[row, "public_score"] = score
    atomic_write(file.parent / "log.csv", lambda h: table.to_csv(h, index=False), mode="w")
    return True


def public_score(message: str) -> tuple[str, str] | None:
    """(status, public score) of our latest submission with this description, as `kaggle competitions submissions` lists it."""
    text = _kaggle("competitions", "submissions", "-c", COMPETITION, "--csv", timeout=60)
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row.get("description") == message]
    if not rows:
        return None
    return rows[0].get("status", ""), rows[0].get("publicScore", "")


def kaggle_submit(*, file: Path, message: str | None, wait: float, poll: float = 10.0) -> str | None:
    """Upload `file`; wait up to `wait` seconds for its public score, then record it. Returns the score, if any."""
    from .submit import kaggle_problems

    if not file.is_file():
        raise UserError(f"{file}: no such submission file; `submit` writes one")
    problems = kaggle_problems(read_csv(file, what="submission CSV", columns=()))
    if problems:
        raise UserError(f"{file}: Kaggle would not accept it: {'; '.join(problems)}")
    if shutil.which("kaggle") is None:
        raise UserError(f"the kaggle command is not installed: {SETUP}")
    if not _has_credentials():
        raise UserError(f"no Kaggle API credentials: {SETUP}")
    message = message or default_message(file)
    log.info(f"kaggle: uploading {file} to {COMPETITION}: {message!r}")
    _kaggle("competitions", "submit", "-c", COMPETITION, "-f", str(file), "-m", message, timeout=600)
    deadline = time.monotonic() + wait
    while True:
        found = public_score(message)
        status, score = found or ("pending", "")
        if score and "complete" in status.lower():
            break
        if "error" in status.lower():
            raise UserError(f"Kaggle could not score {file}: status {status}")
        if time.monotonic() >= deadline:
            log.info(f"kaggle: no public score after {wait:.0f} s (status {status}); `kaggle competitions submissions "
                     f"-c {COMPETITION}` shows it later")
            return None
        time.sleep(poll)
    recorded = record_score(file, score)
    log.info(f"kaggle: public score {score}" + (f"; recorded in {file.parent / 'log.csv'}" if recorded else
                                               f"; {file} is not in {file.parent / 'log.csv'}, so nothing was recorded"))
    return score
