"""The notebooks run top to bottom against the package: the walkthrough (QUICK mode) and the Kaggle one (its quick check)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import ROOT
from nbclient import NotebookClient


@pytest.mark.slow
def test_walkthrough_notebook_executes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"  # a copy, so the notebook's models/ and submissions/ do not touch the checkout
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", "models", "bench", ".git", "test-artifacts"))
    notebook = nbformat.read(repo / "notebooks" / "walkthrough.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert "OOF accuracy" in outputs and "walkthrough-" in outputs  # the submission went to a temporary folder
    assert len(images) == 4  # the digits, learning curves, confusion matrix and worst mistakes
    assert not (repo / "submissions" / "log.csv").exists() and not (repo / "models").exists()  # nothing in the checkout


@pytest.mark.slow
def test_kaggle_notebook_runs_its_quick_check_and_writes_submission_csv(tmp_path: Path) -> None:
    """Off Kaggle the notebook trains on the bundled sample found from the working directory, as Kaggle's would."""
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    notebook = nbformat.read(ROOT / "notebooks" / "kaggle.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "OOF accuracy" in outputs and "data: data/sample" in outputs
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert list(submission.columns) == ["ImageId", "Label"] and len(submission) == 2000
