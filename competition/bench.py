"""`make bench`: the README's figures, measured as a user runs them (CLI subprocesses, wall clock).

python -m competition.bench --data ../shared/data/digit-recognizer --out bench/
  1. `cv` with the default recipe on the given train file (K folds): OOF accuracy, wall time,
     images/s per fold, peak memory (largest process RSS);
  2. one fold with `--recipe seed` for the wall time of one default fold (equal-cost comparison);
  3. `submit` on a 28,000-row test file (Kaggle's size) with the K-fold ensemble.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import load_checkpoint
from .data import read_test


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a CLI command; (wall seconds, peak RSS in GB of the largest process it started)."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: command failed: {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1e6  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train and test files")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    py = [sys.executable, "-m", "competition"]
    run = args.out / "default"
    report: dict[str, object] = {"cpus": os.cpu_count()}

    wall, rss = timed(py + ["cv", "--data", str(args.data), "--out", str(run), "--folds", str(args.folds), "--force", "--no-tuned"])
    cv = json.loads((run / "cv_report.json").read_text())
    report["cv_default"] = {"wall_seconds": wall, "peak_rss_gb": rss, "oof_accuracy": cv["oof_accuracy"],
                            "fold_acc_mean": cv["fold_acc_mean"], "fold_acc_std": cv["fold_acc_std"],
                            "folds": [{k: f[k] for k in ("fold", "val_acc", "epochs", "seconds", "images_per_s")} for f in cv["folds"]]}
    fold_seconds = float(np.mean([f["seconds"] for f in cv["folds"]]))

    seed_run = args.out / "seed"
    timed(py + ["cv", "--data", str(args.data), "--out", str(seed_run), "--folds", str(args.folds), "--recipe", "seed",
                "--time-budget", f"{fold_seconds:.0f}", "--force", "--fold", "1"])
    seed = load_checkpoint(seed_run / "fold1.pt").metrics
    report["seed_fold1_equal_time"] = {"budget_seconds": fold_seconds, **seed}
    report["default_fold1"] = cv["folds"][0]

    test = read_test(args.data)
    rows = np.resize(np.arange(len(test)), 28_000)  # Kaggle's test.csv has 28,000 rows
    big = args.out / "test28k.csv"
    frame = pd.DataFrame(test.images.reshape(len(test), -1)[rows], columns=[f"pixel{i}" for i in range(784)])
    frame.to_csv(big, index=False)
    wall, rss = timed(py + ["submit", "--models", str(run), "--data", str(big), "--out", str(args.out / "submission.csv")])
    report["submit_28k"] = {"wall_seconds": wall, "peak_rss_gb": rss, "models": args.folds}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
