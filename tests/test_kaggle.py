"""`kaggle-submit` with a stand-in `kaggle` command on PATH: the command lines it runs, the score it records,
and the one-line refusals when the command, the credentials, the network or the file is not right."""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.cli import main

STAND_IN = """#!{python}
import json, os, sys
calls = os.environ["KAGGLE_CALLS"]
with open(calls, "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\\n")
mode = os.environ.get("KAGGLE_MODE", "ok")
if mode == "offline":
    print("Failed to establish a new connection: [Errno -3] Temporary failure in name resolution", file=sys.stderr)
    sys.exit(1)
if sys.argv[1:3] == ["competitions", "submissions"]:
    described = [json.loads(line) for line in open(calls)]
    message = next(c[c.index("-m") + 1] for c in described if c[1] == "submit")
    print("fileName,date,description,status,publicScore,privateScore")
    print(f'submission.csv,2026-11-29 12:00:00,"{{message}}",SubmissionStatus.COMPLETE,0.99514,')
else:
    print("Successfully submitted to Digit Recognizer")
"""


@pytest.fixture
def kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `kaggle` first on PATH, credentials in the environment; returns the file its calls go to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KAGGLE_CALLS", str(calls))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.chdir(tmp_path)
    return calls


def _submission(folder: Path, rows: int = 28_000, *, logged: bool = True) -> Path:
    """submission.csv, its timestamped copy and its line in log.csv, as `submit` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"ImageId": np.arange(1, rows + 1), "Label": np.arange(rows) % 10})
    frame.to_csv(folder / "submission.csv", index=False)
    if logged:
        frame.to_csv(folder / "submission-20261129-120000.csv", index=False)
        with (folder / "log.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["time", "run", "cv_score", "data", "rows", "file", "commit"])
            writer.writerow(["2026-11-29T12:00:00", "models/default", "0.99520", "data/test.csv", rows,
                             "submission-20261129-120000.csv", "abc1234"])
    return folder / "submission.csv"


def test_upload_waits_for_the_public_score_and_records_it_beside_the_cv_score(kaggle: Path, tmp_path: Path) -> None:
    file = _submission(tmp_path / "submissions")
    assert main(["kaggle-submit", "--wait", "5"]) == 0
    calls = [json.loads(line) for line in kaggle.read_text().splitlines()]
    assert calls[0] == ["competitions", "submit", "-c", "digit-recognizer", "-f", str(Path("submissions/submission.csv")),
                        "-m", "models/default: CV 0.99520, commit abc1234"]
    assert calls[1] == ["competitions", "submissions", "-c", "digit-recognizer", "--csv"]
    log = pd.read_csv(file.parent / "log.csv", dtype=str)
    assert log.loc[0, "public_score"] == "0.99514" and log.loc[0, "cv_score"] == "0.99520"


def test_a_message_of_ones_own_is_sent_as_given(kaggle: Path, tmp_path: Path) -> None:
    _submission(tmp_path / "submissions")
    assert main(["kaggle-submit", "submissions/submission.csv", "-m", "blend of 3 seeds", "--wait", "5"]) == 0
    assert json.loads(kaggle.read_text().splitlines()[0])[-1] == "blend of 3 seeds"


@pytest.mark.parametrize(("setup", "message"), [
    ("no command", "the kaggle command is not installed: pip install kaggle"),
    ("no credentials", "no Kaggle API credentials: pip install kaggle, then put your API token in ~/.kaggle/kaggle.json"),
    ("offline", "kaggle competitions submit failed: Failed to establish a new connection"),
    ("sample file", "Kaggle would not accept it: 2,000 rows; Kaggle's test.csv has 28,000"),
    ("no file", "no such submission file"),
])
def test_what_is_missing_is_one_line_and_nothing_is_recorded(kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str], setup: str, message: str) -> None:
    file = _submission(tmp_path / "submissions", rows=2000 if setup == "sample file" else 28_000)
    if setup == "no command":
        monkeypatch.setenv("PATH", "/nonexistent")
    elif setup == "no credentials":
        monkeypatch.delenv("KAGGLE_KEY")
    elif setup == "offline":
        monkeypatch.setenv("KAGGLE_MODE", "offline")
    elif setup == "no file":
        file.unlink()
    before = (file.parent / "log.csv").read_text()
    assert main(["kaggle-submit", "--wait", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert (file.parent / "log.csv").read_text() == before
