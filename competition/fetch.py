"""`make data`: fill data/ from a path the user has, else the Kaggle API, else say what to do."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from .data import DATA_DIR, read_test, read_train
from .errors import UserError

log = logging.getLogger(__name__)

KAGGLE_HELP = """no data source. Either:
  make data SRC=path/to/digit-recognizer.zip   (or a folder holding train.csv and test.csv)
or install the Kaggle API and credentials, then run make data again:
  pip install kaggle; put kaggle.json in ~/.kaggle/ (kaggle.com > Settings > API > Create New Token)
  and accept the rules at https://www.kaggle.com/c/digit-recognizer
Until then every command uses the bundled sample in data/sample/."""


def _copy_pair(src: Path, dest: Path) -> None:
    """Validate src's train and test files, then copy them into dest as train.csv(.gz) / test.csv(.gz)."""
    for kind, reader in (("train", read_train), ("test", read_test)):
        digits = reader(src)  # raises UserError naming the problem before anything is written
        file = Path(digits.source.split(":")[0])
        target = dest / f"{kind}.csv"
        tmp = dest / f".{kind}.csv.tmp"
        if ":" in digits.source and file.suffix == ".zip":  # a member of Kaggle's zip
            member = digits.source.split(":", 1)[1]
            with zipfile.ZipFile(file) as zf, zf.open(member) as data, tmp.open("wb") as handle:
                shutil.copyfileobj(data, handle)
            if member.endswith(".gz"):
                target = dest / f"{kind}.csv.gz"
        else:
            shutil.copyfile(file, tmp)
            if file.name.endswith(".gz"):
                target = dest / f"{kind}.csv.gz"
        for stale in (dest / f"{kind}.csv", dest / f"{kind}.csv.gz"):
            if stale != target:  # one file per kind, so the loader cannot pick an older one
                stale.unlink(missing_ok=True)
        os.replace(tmp, target)
        log.info(f"data: {target} <- {digits.source} ({len(digits):,} rows, validated)")


def _kaggle_ready() -> bool:
    has_cli = shutil.which("kaggle") is not None
    has_key = (Path.home() / ".kaggle" / "kaggle.json").exists() or bool(os.environ.get("KAGGLE_KEY"))
    return has_cli and has_key


def fetch_data(*, src: Path | None, dest: Path = DATA_DIR, timeout: float = 300) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if src is not None:
        _copy_pair(src, dest)
        return
    if not _kaggle_ready():
        raise UserError(KAGGLE_HELP)
    log.info("data: downloading with the Kaggle API (kaggle competitions download -c digit-recognizer)")
    try:
        result = subprocess.run(["kaggle", "competitions", "download", "-c", "digit-recognizer", "-p", str(dest)],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"the Kaggle download did not finish in {timeout:.0f} s (offline?); use make data SRC=...") from exc
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise UserError(f"the Kaggle download failed: {reason[-1] if reason else 'no message'}; use make data SRC=...")
    _copy_pair(dest / "digit-recognizer.zip", dest)
