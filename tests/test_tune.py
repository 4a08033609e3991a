"""`tune` for real: a tiny study feeds `cv`, a killed study resumes, workers share a study (file and PostgreSQL)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, SAMPLE, free_port, run_cli

from competition.config import TrainConfig, resolve
from competition.errors import UserError
from competition.tune import DONE, Interrupt

TINY = ["--data", str(SAMPLE), "--limit", "800", "--fold-epochs", "1"]


def journal(out: Path) -> optuna.storages.BaseStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "journal.log")))


def finished(storage: optuna.storages.BaseStorage | str, study: str = "digits") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(states=DONE)


@pytest.mark.slow
def test_tiny_study_writes_best_params_that_cv_uses_when_asked(tmp_path: Path) -> None:
    proc = run_cli("tune", *TINY, "--trials", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "models" / "tune"
    saved = json.loads((out / "best_params.json").read_text())
    best = saved["params"]
    assert set(best) == {"lr", "dropout", "batch_size"} and saved["data"] == f"{SAMPLE / 'train.csv.gz'}[:800]"
    report = json.loads((out / "report.json").read_text())
    assert report["trials_finished"] == 3 and report["best_params"] == best
    assert {"history.png", "slice.png", "importances.png", "trials.csv"} <= {p.name for p in out.iterdir()}
    command = "python -m competition cv --params models/tune/best_params.json"
    assert command in proc.stderr and proc.stdout == ""  # tune says how to use its result
    from competition.checkpoint import load_checkpoint

    run = ["cv", "--data", str(SAMPLE), "--limit", "400", "--folds", "2", "--epochs", "1", "--out"]
    proc = run_cli(*run, "models/plain", cwd=tmp_path)  # no silent pick-up of the study's result
    assert proc.returncode == 0 and "best_params" not in proc.stderr, proc.stderr
    assert load_checkpoint(tmp_path / "models" / "plain" / "fold1.pt").config.lr == TrainConfig().lr
    proc = run_cli(*run, "models/tuned", *command.split()[4:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "parameters from models/tune/best_params.json" in proc.stderr
    config = load_checkpoint(tmp_path / "models" / "tuned" / "fold1.pt").config
    assert (config.lr, config.dropout, config.batch_size) == (best["lr"], best["dropout"], best["batch_size"])


@pytest.mark.parametrize(("tuned_on", "data", "warned"), [
    ("data/sample/train.csv.gz", "data/sample", False),
    ("data/sample/train.csv.gz[:800]", "data", True),
    ("data/train.csv.gz", "data", False),
    ("", "data", False),  # a file from before the data was recorded
])
def test_parameters_tuned_on_the_sample_are_used_with_a_warning_for_other_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tuned_on: str, data: str, warned: bool) -> None:
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "best.json"
    params.write_text(json.dumps({"params": {"lr": 0.0088}, "value": 0.05, "study": "digits", "data": tuned_on}))
    config, notes = resolve(params=params, flags={"dropout": 0.2}, data=data)
    assert (config.lr, config.dropout) == (0.0088, 0.2)  # the file over the recipe, flags over the file
    assert any("tuned on the bundled sample" in note for note in notes) == warned


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such parameters file"), ("{", "not a tuned-parameters file"),
    ('{"params": {"lr": 0.01, "colour": 1}}', "unknown parameters ['colour']"), ('{"params": {"lr": 7}}', "invalid lr=7"),
])
def test_a_bad_parameters_file_is_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    params = tmp_path / "best.json"
    if content is not None:
        params.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)):
        resolve(params=params)


@pytest.mark.slow
def test_killed_study_resumes_and_the_count_adds_up(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    cmd = [sys.executable, "-m", "competition", "tune", "--data", str(SAMPLE), "--limit", "1000", "--fold-epochs", "2",
           "--trials", "5", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (out / "journal.log").exists() and len(finished(journal(out))) >= 1:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)  # Ctrl-C in the middle of a later trial
    assert proc.wait(timeout=120) in (130, 0)
    before = {t.number: t.value for t in finished(journal(out))}
    assert 1 <= len(before) < 5
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    after = finished(journal(out))
    assert len(after) == 5  # the target counts the finished trials of both runs
    assert all({t.number: t.value for t in after}[n] == v for n, v in before.items())  # nothing lost or redone


def _workers(trials: list[optuna.trial.FrozenTrial]) -> set[str]:
    return {t.user_attrs["worker"] for t in trials}


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tmp_path: Path) -> None:
    proc = run_cli("tune", *TINY, "--trials", "4", "--jobs", "2", "--out", str(tmp_path / "tune"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = finished(journal(tmp_path / "tune"))
    assert len(trials) >= 4 and len(_workers(trials)) == 2


@pytest.mark.slow  # waits for a database connection to be refused
def test_bad_storage_and_changed_search_space_are_clear_errors(tmp_path: Path) -> None:
    proc = run_cli("tune", *TINY, "--trials", "1", "--storage", "foo://nowhere", cwd=tmp_path)
    assert proc.returncode == 1 and "unknown storage URL 'foo://nowhere'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("tune", *TINY, "--trials", "1", "--storage", f"postgresql://nobody:s3cret@127.0.0.1:{free_port()}/none", cwd=tmp_path)
    assert proc.returncode == 1 and "cannot open storage 'postgresql://nobody:***@127.0.0.1:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stdout + proc.stderr
    out = tmp_path / "tune"
    out.mkdir()
    study = optuna.create_study(study_name="digits", storage=journal(out))
    study.optimize(lambda t: t.suggest_float("lr", 0.1, 0.9), n_trials=2)
    proc = run_cli("tune", *TINY, "--trials", "3", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 1 and "different search space" in proc.stderr
    assert len(finished(journal(out))) == 2  # existing trials untouched
    proc = run_cli("tune", *TINY, "--trials", "0", cwd=tmp_path)
    assert proc.returncode == 1 and "invalid --trials" in proc.stderr


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free local port; skips (with the reason) if it cannot start."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    # not under pytest's tmp tree: that is root-only, and the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="competition-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    steps = [[str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
             [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
              f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"]]
    for step in steps:
        done = subprocess.run(as_user + step, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.skip(f"PostgreSQL could not start: {(done.stderr or done.stdout).strip()[-300:]}")
    subprocess.run(as_user + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"],
                   check=True, timeout=60)
    yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], timeout=60)
    shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_study_through_postgresql(postgres: str, tmp_path: Path) -> None:
    # The server trusts local connections, so it ignores the password; the helper process reaches the study only
    # through the environment, since its command line carries no storage URL.
    with_password = postgres.replace("postgres@", "postgres:s3cret@")
    args = [*TINY, "--trials", "4", "--storage", with_password, "--study", "pg", "--out", str(tmp_path / "tune")]
    proc = run_cli("tune", *args, "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr and "postgres:***@" in proc.stderr
    trials = finished(postgres, "pg")
    assert len(trials) >= 4 and len(_workers(trials)) == 2
    proc = run_cli("tune", *args, cwd=tmp_path)  # a later worker joins the same study: target reached, nothing to do
    assert proc.returncode == 0 and f"{len(trials)} finished trial(s), target 4" in proc.stdout + proc.stderr
    assert len(finished(postgres, "pg")) == len(trials)


def test_the_study_folder_lock_admits_one_holder_at_a_time(tmp_path: Path) -> None:
    from competition.tune import local_lock

    with local_lock(tmp_path) as first, local_lock(tmp_path) as second:
        assert (first, second) == (True, False)
    with local_lock(tmp_path) as again:
        assert again  # released


def test_passwords_are_masked_and_kept_off_helper_command_lines() -> None:
    from competition.cli import build_parser, tune_worker_args
    from competition.tune import mask_password

    url = "postgresql://ann:pa55word@db.example:5432/optuna"
    assert mask_password(f"cannot open storage {url!r}: password for ann: pa55word", url) == (
        "cannot open storage 'postgresql://ann:***@db.example:5432/optuna': password for ann: ***")
    assert mask_password("no secret here", "sqlite:///x.db") == "no secret here"
    args = build_parser().parse_args(["tune", "--storage", url, "--jobs", "2", "--trials", "8"])
    assert not any("pa55word" in arg or "--storage" in arg for arg in tune_worker_args(args, SAMPLE))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one
def test_ctrl_c_swallowed_by_a_destructor_still_stops_the_study() -> None:
    class Swallows:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # the KeyboardInterrupt raised in here is only printed

    def objective(trial: optuna.Trial) -> float:
        Swallows()  # freed at once, as a DataLoader is when a trial's fit returns
        return trial.suggest_float("x", 0, 1)

    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt), Interrupt() as interrupt:
        study.optimize(objective, n_trials=5, callbacks=[interrupt])
    assert len(study.trials) == 1
