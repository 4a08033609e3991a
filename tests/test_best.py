"""`best`: a plan of runs read from JSON, refused with one line when malformed, trained, blended and submitted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, SAMPLE

from competition.best import PLAN, RUN_LOG, Plan, default_jobs, read_plan, run_best
from competition.checkpoint import load_checkpoint
from competition.cli import main
from competition.config import RECIPES


@pytest.mark.parametrize("path", [PLAN, *sorted((ROOT / "benchmarks").glob("plan-*.json"))], ids=lambda p: p.name)
def test_the_shipped_and_benchmark_plans_read_and_their_runs_share_one_split(path: Path) -> None:
    plan = read_plan(path)
    configs = list(plan.runs.values())
    assert len(configs) >= 2 and len({(c.folds, c.fold_seed) for c in configs}) == 1
    assert len({c.arch for c in configs}) >= 2  # a blend of architectures, not one network's seeds only
    for name, config in plan.runs.items():
        # a run is its recipe plus the fields it names, nothing else
        entry = next(e for e in json.loads(path.read_text())["runs"] if e["name"] == name)
        recipe = RECIPES[entry.get("recipe", "default")]
        changed = {k for k, v in config.hyperparameters().items() if getattr(recipe, k) != v}
        assert changed <= set(entry) | {"split_seed"}


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(text)
    return path


RUN = '{"name": "a", "recipe": "default"}'


@pytest.mark.parametrize(("text", "message"), [
    ("{runs: []}", "not JSON"),
    ('{"runs": []}', "non-empty list"),
    ('{"runs": [' + RUN + '], "folds": 3}', "unknown keys ['folds']"),
    ('{"split_seed": "7", "runs": [' + RUN + ']}', "split_seed should be an integer"),
    ('{"runs": [{"name": "a", "recipe": "fancy"}]}', "run 1 (a): unknown recipe 'fancy'"),
    ('{"runs": [{"name": "a", "lr_max": 0.1}]}', "unknown or unplannable fields ['lr_max']"),
    ('{"runs": [{"name": "a", "workers": 0}]}', "unknown or unplannable fields ['workers']"),
    ('{"runs": [{"name": "a", "pseudo_label": "models/x"}]}', "'pseudo_label' should be a list of the names of runs"),
    ('{"runs": [{"name": "a", "pseudo_label": ["a"]}]}', "run 1 (a): 'pseudo_label' names ['a'], not runs before it"),
    ('{"runs": [' + RUN + ', {"name": "b", "pseudo_label": ["a", "c"]}]}', "run 2 (b): 'pseudo_label' names ['c']"),
    ('{"runs": [' + RUN + ', {"name": "b", "pseudo_label": ["a"]}]}', "probabilities stay near 0.91, below pseudo_threshold 0.99"),
    ('{"runs": [{"name": "a", "epochs": "3"}]}', "epochs='3' should be of type int"),
    ('{"runs": [{"name": "a", "dropout": 1.5}]}', "invalid dropout=1.5"),
    ('{"runs": [{"name": "a", "stroke": 1.5}]}', "invalid stroke=1.5"),
    ('{"runs": [{"name": "a", "elastic": -0.1}]}', "invalid elastic=-0.1"),
    ('{"runs": [{"name": "a", "redraw": -0.1}]}', "invalid redraw=-0.1"),
    ('{"runs": [{"name": "a", "arch": "vit"}]}', "invalid arch='vit'"),
    ('{"runs": [{"name": "../a"}]}', "'name' should be a folder name"),
    ('{"runs": [{"name": "blend"}]}', "'name' should be a folder name"),
    ('{"runs": [{"name": "blend-a"}]}', "'name' should be a folder name"),
    ('{"runs": [' + RUN + ', ' + RUN + ']}', "run 2 (a): a second run of that name"),
    ('{"runs": [' + RUN + ', {"name": "b", "folds": 3}]}', "different fold counts [3, 5]"),
])
def test_a_malformed_plan_is_one_line_naming_the_file_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              text: str, message: str) -> None:
    plan = _plan(tmp_path, text)
    out = tmp_path / "models"
    assert main(["best", "--plan", str(plan), "--data", str(SAMPLE), "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(f"error: {plan}") and message in error[-1], error
    assert not out.exists()


def test_a_missing_plan_or_test_file_stops_before_any_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["best", "--plan", str(tmp_path / "none.json"), "--data", str(SAMPLE)]) == 1
    assert "none.json: no such plan file" in capsys.readouterr().err
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv.gz").write_bytes((SAMPLE / "train.csv.gz").read_bytes())
    assert main(["best", "--data", str(data), "--out", str(tmp_path / "models")]) == 1
    assert "test" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_plan_of_two_architectures_and_a_pseudo_labelled_run_trains_blends_and_submits_then_resumes(
        sample_head: Path, tmp_path: Path, jobs: int) -> None:
    tiny = '"folds": 2, "epochs": 1, "batch_size": 32'
    text = ('{"split_seed": 3, "runs": [{"name": "ref", "recipe": "reference", ' + tiny + '},'
            ' {"name": "bn", "recipe": "bncnn", "seed": 5, ' + tiny + '},'
            ' {"name": "pl", "pseudo_label": ["ref", "bn"], "pseudo_threshold": 0.1, ' + tiny + '}]}')
    read = read_plan(_plan(tmp_path, text))
    plan = Plan(path=read.path, runs={name: config.replace(workers=0) for name, config in read.runs.items()},
                pseudo_sources=read.pseudo_sources)
    out, submission = tmp_path / "models", tmp_path / "submission.csv"
    report = run_best(data=sample_head, plan=plan, out=out, submission=submission, jobs=jobs)
    assert [Path(m["run"]).name for m in report["members"]] == ["ref", "bn", "pl"]
    # with jobs 2, ref and bn train side by side, each in a process of its own logging to its folder; pl after them
    for name in ("ref", "bn"):
        assert ((out / name / RUN_LOG).exists() and "cv: OOF accuracy" in (out / name / RUN_LOG).read_text()) == (jobs > 1)
    assert not (out / "pl" / RUN_LOG).exists()
    contest = report["cross_validated_errors"]  # the blend weighs as the weighting with fewer cross-validated errors
    assert report["method"].startswith("greedy" if contest["greedy"] < contest["equal"] else "equal")
    assert json.loads((out / "blend" / "blend.json").read_text())["split"]["split seed"] == 3
    for name, arch in (("ref", "reference"), ("bn", "bncnn"), ("pl", "poolres")):
        assert json.loads((out / name / "cv_report.json").read_text())["config"]["arch"] == arch
    # pl trained on the blend of ref and bn: its folds' training parts hold every test row (threshold 0.1: any top class)
    labeller = json.loads((out / "blend-pl" / "blend.json").read_text())
    assert [Path(m["run"]).name for m in labeller["members"]] == ["ref", "bn"]
    assert json.loads((out / "pl" / "cv_report.json").read_text())["config"]["pseudo_label"] == str(out / "blend-pl")
    rows = len(pd.read_csv(sample_head / "train.csv"))
    for k in (1, 2):
        extra = load_checkpoint(out / "pl" / f"fold{k}.pt").extra
        assert extra["train_rows"] == rows - len(extra["oof_index"]) + 40
    frame = pd.read_csv(submission)
    assert frame["ImageId"].tolist() == list(range(1, 41)) and frame["Label"].between(0, 9).all()
    folds = sorted(out.glob("*/fold*.pt"))
    assert len(folds) == 6
    stamps = [path.stat().st_mtime_ns for path in folds]
    run_best(data=sample_head, plan=plan, out=out, submission=submission, jobs=jobs)  # finished folds are kept
    assert [path.stat().st_mtime_ns for path in folds] == stamps


def test_a_run_that_fails_beside_others_stops_best_after_they_finish(tiny_run: Path, sample_head: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, submission = tmp_path / "models", tmp_path / "submission.csv"
    (out / "bn").mkdir(parents=True)
    shutil.copy(tiny_run / "fold1.pt", out / "bn" / "fold1.pt")  # a fold of other settings where bn's first should go
    plan = _plan(tmp_path, '{"runs": [{"name": "nn", "recipe": "knn", "folds": 2}, '
                           '{"name": "bn", "recipe": "bncnn", "folds": 2, "epochs": 1}]}')
    assert main(["best", "--plan", str(plan), "--data", str(sample_head), "--out", str(out), "--submission",
                 str(submission), "--jobs", "2"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: {out / 'bn' / 'fold1.pt'} was trained on other data or settings; pass --force to retrain, or choose another --out"
    assert (out / "nn" / "cv_report.json").exists()  # the run beside it finished
    assert not (out / "blend").exists() and not submission.exists()


def test_jobs_default_to_every_run_without_pseudo_labels_on_a_gpu_and_one_on_a_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    plan = read_plan(_plan(tmp_path, '{"runs": [{"name": "a"}, {"name": "b", "recipe": "knn"}, '
                                     '{"name": "c", "pseudo_label": ["a"], "pseudo_threshold": 0.5}]}'))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_jobs(plan) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_jobs(plan) == 2
    assert main(["best", "--data", str(SAMPLE), "--jobs", "0", "--out", str(tmp_path / "models")]) == 1
    assert capsys.readouterr().err.strip() == "error: --jobs should be at least 1, not 0"
