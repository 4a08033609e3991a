"""Folds, augmentation, and a tiny end-to-end run through the CLI and Make."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PIXELS, ROOT, SAMPLE, TINY_CV, run_cli, write_csv

from competition.augment import make_loader
from competition.config import RUN_SETTINGS, TrainConfig, resolve
from competition.cv import data_digest, fingerprint
from competition.data import SAMPLE_DIR, Digits, default_data_dir, fold_indices, read_train
from competition.errors import UserError
from competition.model import build_model
from competition.train import fit


def test_folds_are_stratified_disjoint_covering_and_reproducible() -> None:
    labels = np.repeat(np.arange(10), 50)
    folds = fold_indices(labels, folds=5, seed=7)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(500))  # every row validated exactly once
    for train, val in folds:
        assert not set(train) & set(val)
        assert np.bincount(labels[val]).tolist() == [10] * 10
    again = fold_indices(labels, folds=5, seed=7)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    other = fold_indices(labels, folds=5, seed=8)
    assert not all((a[1] == b[1]).all() for a, b in zip(folds, other))
    with pytest.raises(UserError, match="at least 5 rows of every digit"):
        fold_indices(np.array([0, 0, 1, 1, 1, 1, 1]), folds=5, seed=0)


def _batches(config: TrainConfig, images: np.ndarray, labels: np.ndarray) -> list[torch.Tensor]:
    return [x for x, _ in make_loader(images, labels, config)]


def test_augmentation_is_reproducible_whatever_the_workers() -> None:
    rng = np.random.default_rng(0)
    images = np.zeros((40, 28, 28), np.uint8)
    images[:, 8:20, 10:18] = rng.integers(100, 256, (40, 12, 8))
    labels = np.arange(40) % 10
    inline = _batches(TrainConfig(batch_size=16, workers=0), images, labels)
    worker = _batches(TrainConfig(batch_size=16, workers=1), images, labels)
    assert [len(b) for b in inline] == [16, 16, 8] and inline[0].dtype == torch.uint8
    for a, b in zip(inline, worker):
        torch.testing.assert_close(a, b)
    flat = torch.cat(inline).reshape(40, -1)
    assert not torch.equal(flat.sort(0).values, torch.from_numpy(images).reshape(40, -1).sort(0).values)


def test_a_group_of_images_shares_one_warp_and_groups_differ() -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a "1": any rotation, shift or shear shows
    images, labels = np.repeat(digit[None], 10, axis=0), np.zeros(10, np.int64)
    for group, distinct in ((4, 3), (1, 10)):  # 10 rows in groups of 4 = 3 draws (the last group padded)
        (batch,) = _batches(TrainConfig(batch_size=10, workers=0, aug_group=group), images, labels)
        assert batch.shape == (10, 28, 28)
        assert len({bytes(img) for img in batch.numpy()}) == distinct


def test_augmentation_off_leaves_images_as_they_are() -> None:
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    config = TrainConfig(batch_size=8, workers=0, rotate=0, shift=0, scale=0, shear=0)
    (batch,) = _batches(config, images, np.zeros(8, np.int64))
    assert sorted(map(bytes, batch.numpy())) == sorted(map(bytes, images))


def test_stroke_augmentation_thickens_about_half_and_thins_the_rest() -> None:
    images = read_train(SAMPLE).images[:800]
    still = TrainConfig(batch_size=800, workers=0, aug_group=1, rotate=0, shift=0, scale=0, shear=0)
    ink = (images > 127).sum((1, 2))
    (plain,) = _batches(still, images, np.zeros(800, np.int64))
    (changed,) = _batches(still.replace(stroke=1.0), images, np.zeros(800, np.int64))
    assert np.array_equal(np.sort((plain.numpy() > 127).sum((1, 2))), np.sort(ink))  # stroke 0: no change
    after = np.sort((changed.numpy() > 127).sum((1, 2)))
    thicker = (after > np.sort(ink)).mean()
    assert 0.35 < thicker < 0.65 and np.median(after) != np.median(ink)
    (half,) = _batches(still.replace(stroke=0.5), images, np.zeros(800, np.int64))
    kept = len({bytes(img) for img in half.numpy()} & {bytes(img) for img in images})
    assert 300 < kept < 500  # about half the images untouched


def test_elastic_augmentation_bends_the_share_asked_for_and_keeps_the_ink() -> None:
    images = read_train(SAMPLE).images[:400]
    still = TrainConfig(batch_size=400, workers=0, aug_group=1, rotate=0, shift=0, scale=0, shear=0)
    (plain,) = _batches(still, images, np.zeros(400, np.int64))
    assert sorted(map(bytes, plain.numpy())) == sorted(map(bytes, images))  # elastic 0: no change
    (bent,) = _batches(still.replace(elastic=1.0), images, np.zeros(400, np.int64))
    assert not {bytes(img) for img in bent.numpy()} & {bytes(img) for img in images}  # every image bent
    ink, after = images.astype(float).sum((1, 2)), bent.numpy().astype(float).sum((1, 2))
    assert 0.8 < np.median(after) / np.median(ink) < 1.2  # bent, not blotted out or smeared over the image
    (half,) = _batches(still.replace(elastic=0.5), images, np.zeros(400, np.int64))
    kept = len({bytes(img) for img in half.numpy()} & {bytes(img) for img in images})
    assert 140 < kept < 260  # about half the images untouched


def test_a_hyperparameter_added_later_keeps_older_runs_fingerprints() -> None:
    import hashlib

    data = Digits(images=np.zeros((10, 28, 28), np.uint8), labels=np.arange(10) % 10, source="zeros")
    # what the version before `stroke`, `redraw` and `elastic` hashed: the same fields less those
    later = ("stroke", "redraw", "elastic")
    older = {k: v for k, v in TrainConfig().to_dict().items() if k not in RUN_SETTINGS and k not in later}
    digest = hashlib.sha1(data_digest(data).encode())
    digest.update(json.dumps(older, sort_keys=True).encode())
    assert fingerprint(data, TrainConfig(stroke=0.0, redraw=0.0, elastic=0.0)) == digest.hexdigest()[:16]
    for name in later:
        assert fingerprint(data, TrainConfig().replace(**{name: 0.5})) != fingerprint(data, TrainConfig()), name


def test_epoch_hook_stops_training_and_best_weights_come_back() -> None:
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), np.arange(64) % 10
    config = TrainConfig(epochs=4, batch_size=32, workers=1)
    seen: list[int] = []

    def stop_after_two(epoch: int, val_loss: float, val_acc: float) -> bool:
        seen.append(epoch)
        return epoch == 2  # what a pruned Optuna trial returns

    result = fit(build_model("reference", dropout=0.5), (images, labels), (images[:16], labels[:16]), config,
                 device=torch.device("cpu"), on_epoch=stop_after_two)
    assert seen == [1, 2] and len(result.history) == 2 and result.best_epoch in (1, 2)
    assert result.val_probs.shape == (16, 10)


@pytest.mark.parametrize(("smoothing", "best"), [(0.0, 1), (0.3, 2)])
def test_early_stopping_keeps_the_epoch_with_the_lowest_loss_that_training_minimises(
        monkeypatch: pytest.MonkeyPatch, smoothing: float, best: int) -> None:
    # Epoch 1 predicts the label with certainty (lowest plain log loss); epoch 2 predicts 0.73 / 0.03, which
    # is what cross-entropy with label smoothing 0.3 trains towards (lowest smoothed loss).
    labels = np.arange(20) % 10
    certain, smoothed = np.full((20, 10), 1e-4 / 9), np.full((20, 10), 0.03)
    certain[np.arange(20), labels], smoothed[np.arange(20), labels] = 1 - 1e-4, 0.73
    views = iter([certain, smoothed])  # the two epochs' validations; the restored model's OOF call gets `certain`
    monkeypatch.setattr("competition.train.predict_proba", lambda *args, **kwargs: next(views, certain))
    images = np.zeros((20, 28, 28), np.uint8)
    config = TrainConfig(epochs=2, batch_size=20, workers=0, label_smoothing=smoothing)
    result = fit(build_model("reference", dropout=0.5), (images, labels), (images, labels), config, device=torch.device("cpu"))
    assert result.best_epoch == best
    assert [h["watched_loss"] == h["val_loss"] for h in result.history] == [smoothing == 0] * 2


@pytest.mark.parametrize(("schedule", "stops_after"), [("constant", 2), ("onecycle", 5)])
def test_early_stopping_waits_for_the_one_cycle_schedule_to_cool(monkeypatch: pytest.MonkeyPatch, schedule: str,
                                                                  stops_after: int) -> None:
    # Every validation is worse than the one before, so patience 1 stops at the first epoch that counts after the
    # first. One-cycle over 8 epochs of 2 steps: the rate rises to its peak in epoch 2 and falls to half of it in
    # epoch 5; the epochs before (warm-up, then the high rates) do not count.
    labels = np.arange(20) % 10
    calls = iter(range(100))

    def worse_each_time(*args: object, **kwargs: object) -> np.ndarray:
        right = 0.9 - 0.05 * next(calls)
        probs = np.full((20, 10), (1 - right) / 9)
        probs[np.arange(20), labels] = right
        return probs

    monkeypatch.setattr("competition.train.predict_proba", worse_each_time)
    images = np.zeros((20, 28, 28), np.uint8)
    config = TrainConfig(epochs=8, batch_size=10, workers=0, patience=1, schedule=schedule)
    result = fit(build_model("reference", dropout=0.5), (images, labels), (images, labels), config, device=torch.device("cpu"))
    assert len(result.history) == stops_after and result.best_epoch == 1
    rates = [h["lr"] for h in result.history]
    if schedule == "onecycle":  # the stop came in the first epoch that ended falling and at most half the peak
        assert rates[1] > rates[0] and rates[-1] <= config.lr / 2 < rates[-2]


def cli_config(*argv: str) -> TrainConfig:
    from competition.cli import build_parser, config_flags

    args = build_parser().parse_args(["cv", *argv])
    return resolve(recipe=args.recipe, params=args.params, flags=config_flags(args))[0]


def test_tta_makes_the_oof_predictions_and_is_a_cv_flag() -> None:
    from competition.infer import predict_proba
    from competition.model import NORMALIZE

    assert cli_config("--tta").tta is True
    assert cli_config().tta is False
    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), np.arange(64) % 10
    model = build_model("reference", dropout=0.5)
    result = fit(model, (images, labels), (images[:16], labels[:16]), TrainConfig(epochs=1, batch_size=32, tta=True),
                 device=torch.device("cpu"))
    np.testing.assert_allclose(result.val_probs, predict_proba(model, images[:16], NORMALIZE, tta=True),
                               rtol=1e-5, atol=1e-7)


def test_every_cv_flag_reaches_the_config_and_the_seed_recipe_is_the_notebooks() -> None:
    from competition.cli import CONFIG_FLAGS

    values = {int: "3", float: "0.25", str: "models/some-run"}
    for name, kind in CONFIG_FLAGS.items():
        assert getattr(cli_config(f"--{name.replace('_', '-')}", values[kind]), name) == kind(values[kind]), name
    assert cli_config("--no-bf16").bf16 is False and cli_config().bf16 is True
    seed = cli_config("--recipe", "seed")
    # The notebook: Adam(lr=1e-3) without weight decay, batch 64, RandomRotation(15), patience 10, 100 epochs.
    assert (seed.lr, seed.weight_decay, seed.batch_size, seed.rotate, seed.shift, seed.patience, seed.epochs) == (
        1e-3, 0.0, 64, 15.0, 0.0, 10, 100)


@pytest.mark.parametrize(("command", "flag"), [("cv", "--limit"), ("cv", "--fold"), ("tune", "--limit")])
def test_a_count_flag_of_zero_is_refused_not_read_as_all(command: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from competition.cli import main

    with pytest.raises(SystemExit) as stopped:
        main([command, flag, "0"])
    assert stopped.value.code == 2 and f"argument {flag}: must be >= 1, got 0" in capsys.readouterr().err


def test_importing_the_package_asks_no_network() -> None:
    """albumentations asks PyPI for its latest version on import unless NO_ALBUMENTATIONS_UPDATE is set."""
    code = ("import sys\n"
            "calls = []\n"
            "sys.addaudithook(lambda event, args: calls.append(event) if event.startswith('socket.') else None)\n"
            "import competition.cv, competition.tune, competition.app\n"
            "print(sorted(set(calls)))\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


def test_tiny_cv_run_writes_everything(tiny_run: Path) -> None:
    report = json.loads((tiny_run / "cv_report.json").read_text())
    assert {"oof_accuracy", "oof_loss", "fold_acc_mean", "fold_acc_std", "folds", "wall_seconds"} <= set(report)
    assert report["rows"] == 1000 and len(report["folds"]) == 2
    assert all({"val_acc", "val_loss", "epochs", "seconds", "images_per_s"} <= set(f) for f in report["folds"])
    oof = pd.read_csv(tiny_run / "oof.csv")
    assert len(oof) == 1000 and oof["row"].tolist() == list(range(1000))
    np.testing.assert_allclose(oof[[f"p{d}" for d in range(10)]].sum(1), 1, atol=1e-3)
    assert report["oof_accuracy"] == pytest.approx((oof["label"] == oof["pred"]).mean())
    assert report["oof_accuracy"] > 0.75  # 64 steps on 500 images learn (chance is 0.1)
    for name in ("fold1.pt", "fold2.pt", "learning_curves.png", "confusion.png", "worst_mistakes.png"):
        assert (tiny_run / name).stat().st_size > 0


def test_rerun_skips_finished_folds_and_refuses_other_settings(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    saved = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))  # the folds as if trained long ago
    for fold in ("fold1.pt", "fold2.pt"):
        os.utime(run / fold, (saved, saved))
    trained = json.loads((run / "cv_report.json").read_text())["train_seconds"]
    same = ("cv", *TINY_CV, "--out", str(run))
    proc = run_cli(*same)
    assert proc.returncode == 0, proc.stderr
    assert "fold 1: already trained" in proc.stdout + proc.stderr
    assert (run / "fold1.pt").stat().st_mtime == saved
    rebuilt = json.loads((run / "cv_report.json").read_text())  # the run's date and cost, not the re-run's
    assert (rebuilt["finished"], rebuilt["train_seconds"]) == ("2026-01-02T03:04:05", trained)
    proc = run_cli(*same, "--lr", "0.01")
    assert proc.returncode == 1 and "trained on other data or settings" in proc.stderr


def test_submit_and_evaluate_through_the_cli(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "subs" / "submission.csv"
    proc = run_cli("submit", "--models", str(tiny_run), "--data", str(SAMPLE), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # what submit says goes to stderr; stdout is for results
    assert f"warning: Kaggle would not accept {out}: 2,000 rows; Kaggle's test.csv has 28,000 (the bundled sample" in proc.stderr
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["ImageId", "Label"]
    assert sub["ImageId"].tolist() == list(range(1, 2001)) and sub["Label"].between(0, 9).all()
    assert len(list(out.parent.glob("submission-*.csv"))) == 1
    log = pd.read_csv(out.parent / "log.csv")
    assert len(log) == 1 and log["rows"][0] == 2000 and log["cv_score"][0] > 0
    proc = run_cli("evaluate", "--models", str(tiny_run), "--data", str(SAMPLE), "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout is one JSON line, nothing else
    assert result["n"] == 10_000 and 0.75 < result["accuracy"] <= 1 and len(result["per_model"]) == 2  # ~0.9 (tiny_run)
    assert result["seen_in_training"] is True and "this accuracy is optimistic" in proc.stderr  # its first 1,000 rows
    single = run_cli("evaluate", "--models", str(tiny_run / "fold1.pt"), "--data", str(SAMPLE), "--json")
    assert json.loads(single.stdout.strip().splitlines()[-1])["per_model"][0]["accuracy"] == result["per_model"][0]["accuracy"]


def test_submit_names_the_file_by_whether_kaggle_would_accept_it(tiny_run: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from competition import submit

    monkeypatch.chdir(tmp_path)
    submit.write_submission(models=tiny_run, data=SAMPLE)  # the sample's 2,000 test rows
    assert (tmp_path / "submissions" / "submission-2000-rows.csv").exists()
    assert not (tmp_path / "submissions" / "submission.csv").exists()  # the name people upload stays free
    monkeypatch.setattr(submit, "KAGGLE_ROWS", 2000)  # as if the sample's test file were Kaggle's
    frame = submit.write_submission(models=tiny_run, data=SAMPLE)
    assert (tmp_path / "submissions" / "submission.csv").exists() and submit.kaggle_problems(frame) == []
    assert submit.kaggle_problems(frame.assign(Label=frame["Label"] + 0.5)) == ["labels are not integers 0..9"]
    assert submit.kaggle_problems(frame.assign(ImageId=frame["ImageId"] - 1)) == ["ImageId is not 1..2000"]


def test_submit_errors_leave_no_file(tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "submission.csv"
    proc = run_cli("submit", "--models", str(tmp_path / "none"), "--data", str(SAMPLE), "--out", str(out))
    assert proc.returncode == 1 and "no such checkpoint file or run folder" in proc.stderr
    proc = run_cli("submit", "--models", str(tiny_run), "--data", str(SAMPLE / "train.csv.gz"), "--out", str(out))
    assert proc.returncode == 1 and "looks like a training file" in proc.stderr
    assert not out.exists()
    proc = run_cli("submit", "--models", str(tiny_run), "--data", str(SAMPLE), "--out", str(tmp_path))
    assert proc.returncode == 1 and "is a folder; give a file name" in proc.stderr


def test_submit_warns_about_a_run_with_missing_folds(tiny_run: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_run / "fold1.pt", partial)
    proc = run_cli("submit", "--models", str(partial), "--data", str(SAMPLE), "--out", str(tmp_path / "sub.csv"))
    assert proc.returncode == 0, proc.stderr
    assert f"{partial} has 1 of its 2 fold models" in proc.stderr
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 2000  # a warning, not a refusal
    proc = run_cli("submit", "--models", str(tiny_run), "--data", str(SAMPLE), "--out", str(tmp_path / "sub.csv"))
    assert proc.returncode == 0 and "fold models" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["submit", "cv"])
def test_an_output_path_that_cannot_be_made_is_one_line(command: str, tmp_path: Path, tiny_run: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    out = tmp_path / "taken" / ("submission.csv" if command == "submit" else "run")
    args = ["--models", str(tiny_run), "--data", str(SAMPLE)] if command == "submit" else [*TINY_CV, "--epochs", "1"]
    proc = run_cli(command, *args, "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'taken'}")
    assert "a file stands where a folder is needed" in proc.stderr


def test_submit_warns_when_sample_trained_models_meet_other_test_data(tiny_run: Path, tmp_path: Path, good_rows: list[list[int]]) -> None:
    test_file = write_csv(tmp_path / "test.csv", PIXELS, [row[1:] for row in good_rows])
    proc = run_cli("submit", "--models", str(tiny_run), "--data", str(test_file), "--out", str(tmp_path / "sub.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "trained on the bundled sample" in proc.stderr
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 10  # a warning, not a refusal


@pytest.mark.parametrize("full_file", [None, "train.csv", "train.csv.gz", "digit-recognizer.zip"])
def test_make_keeps_the_sample_run_apart_from_the_full_data_run(full_file: str | None, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Make's run folder follows the data the CLI will default to: models/sample for the bundled sample."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "data" / "sample").mkdir(parents=True)
    if full_file:
        (tmp_path / "data" / full_file).touch()
    monkeypatch.chdir(tmp_path)
    on_sample = default_data_dir() == SAMPLE_DIR
    assert on_sample == (full_file is None)
    for extra, run in (([], "sample" if on_sample else "default"), (["DATA=elsewhere"], "default")):
        dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "submit", *extra], capture_output=True, text=True, check=True)
        assert f"--out models/{run} " in dry.stdout and f"submit --models models/{run} " in dry.stdout


def test_make_checks_the_disk_before_a_first_install(tmp_path: Path) -> None:
    """A fresh machine short of space for PyTorch gets one clear line, not pip's OSError half-way through."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "pyproject.toml").touch()
    proc = subprocess.run(["make", "install", "MIN_FREE_GB=1e12"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "GB free here; installing PyTorch into .venv needs about 1e12 GB" in proc.stderr
    assert not (tmp_path / ".venv").exists()


def test_make_alone_explains_the_targets_and_installs_nothing(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "pyproject.toml").touch()
    proc = subprocess.run(["make"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for target in ("submit", "test", "data", "cv", "tune", "demo", "bench"):
        assert f"make {target} " in proc.stdout
    assert not (tmp_path / ".venv").exists()


@pytest.mark.slow
def test_make_submit_trains_first_then_writes_the_submission(tmp_path: Path) -> None:
    """The README's first command, on a copy of the repo, with a tiny budget passed through Make."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", "models", "bench", ".git", "*.pt", "test-artifacts"))
    (repo / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(["make", "-o", ".venv/.installed", "submit", "FOLDS=2", "EPOCHS=1", "ARGS=--limit 500"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "models/sample/cv_report.json").exists()  # the sample's run: not models/default (below)
    sub = pd.read_csv(repo / "submissions/submission-2000-rows.csv")  # the sample's: named so it is not uploaded
    assert len(sub) == 2000 and sub["ImageId"].iloc[-1] == 2000
    assert not (repo / "submissions/submission.csv").exists()


def test_the_same_seed_trains_the_same_weights(tmp_path: Path) -> None:
    """The seed decides weight init, shuffling, augmentation and dropout: two runs give identical models."""
    from competition.checkpoint import load_checkpoint
    from competition.cv import run_cv
    from competition.data import read_train

    full = read_train(SAMPLE)
    assert full.labels is not None
    data = type(full)(images=full.images[:300], labels=full.labels[:300], source="first 300")
    config = TrainConfig(folds=2, epochs=1, batch_size=32, workers=0)
    states = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_cv(data=data, out=tmp_path / name, config=config.replace(seed=seed), only=1)
        states.append(load_checkpoint(tmp_path / name / "fold1.pt").model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    first = next(k for k in states[0] if k.endswith("weight"))  # the first layer's, whatever the default network
    assert not torch.equal(states[0][first], states[2][first])


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KB tmpfs: room for the data's first files, not for a checkpoint (skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.stdout.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_cv_on_a_full_disk_is_one_line_and_leaves_no_partial_file(full_disk: Path) -> None:
    out = full_disk / "run"
    proc = run_cli("cv", *TINY_CV, "--epochs", "1", "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {out / 'fold1.pt'}: cannot write the checkpoint")
    assert [p.name for p in out.iterdir()] == []  # no half-written checkpoint, no temporary file
