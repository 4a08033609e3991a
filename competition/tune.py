"""Optuna search over learning rate, dropout and batch size, on the same fold trainer as `cv`.

Resumable (the study lives in a storage, by default a journal file under models/tune/) and
distributable (any number of `tune` processes, here via --jobs or on other machines, can share one
study through a database URL). Hopeless trials are pruned on their per-epoch validation loss.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from .config import TrainConfig
from .data import Digits, fold_indices
from .errors import UserError
from .infer import pick_device
from .io import atomic_write
from .train import fit, init_model

log = logging.getLogger(__name__)

# The promised three. Weight decay and augmentation strength were left out: in short trials they moved
# validation loss less than run-to-run noise (docs/tuning.md), and each extra dimension slows TPE down.
SPACE: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(3e-4, 1e-2, log=True),
    "dropout": FloatDistribution(0.1, 0.6),
    "batch_size": CategoricalDistribution([64, 128, 256]),
}
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


STORAGE_ENV = "COMPETITION_TUNE_STORAGE"  # the storage URL for helper processes: never on a command line, where `ps` shows it


def mask_password(text: str, url: str | None) -> str:
    """`text` with the password of `url` (scheme://user:password@host/...) replaced by ***."""
    match = re.match(r"[^:]+://[^/@:]*:([^/@]+)@", url or "")
    return text.replace(match.group(1), "***") if match else text


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """None -> a journal file in `out`; else any Optuna RDB URL (sqlite:///, postgresql://, mysql://)."""
    if url is None:
        out.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(out / "journal.log"))
        return optuna.storages.JournalStorage(backend)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise UserError(mask_password(f"unknown storage URL {url!r}: expected sqlite:///FILE, postgresql://USER@HOST/DB or "
                                      f"mysql://...", url))
    try:
        # heartbeats: a trial whose process died is marked failed after 2 minutes, so counts stay right
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                              engine_kwargs={"pool_pre_ping": True})
    except ImportError as exc:
        raise UserError(mask_password(f"storage {url!r} needs a database driver ({exc}); for PostgreSQL: "
                                      f"pip install -e '.[postgres]'", url)) from exc
    except Exception as exc:  # noqa: BLE001 - sqlalchemy's errors: bad URL, unreachable server, auth
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(mask_password(f"cannot open storage {url!r}: {first}", url)) from exc


def check_space(study: optuna.Study) -> None:
    """Refuse to add trials to a study made with another search space (its trials stay untouched)."""
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if SPACE.get(name) != dist:
                raise UserError(f"study {study.study_name!r} was made with a different search space "
                                f"({name}: {dist} here is {SPACE.get(name)}); use --study NEW_NAME")


def _try_lock(handle: IO[str]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another process holds it."""
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def local_lock(out: Path) -> Iterator[bool]:
    """Yields True when no other `tune` on this machine holds the study folder; released when the block ends."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("w") as handle:
        yield _try_lock(handle)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    assert isinstance(dist, CategoricalDistribution)
    return trial.suggest_categorical(name, dist.choices)


def make_objective(data: Digits, base: TrainConfig, *, folds: int, cv_folds: int, fold_epochs: int) -> Any:
    assert data.labels is not None
    labels = data.labels
    splits = fold_indices(labels, folds=folds, seed=base.fold_seed)[:cv_folds]
    device = pick_device()

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, dist) for name, dist in SPACE.items()}
        config = base.replace(**params, epochs=fold_epochs, patience=fold_epochs)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which process ran it
        start, losses, accs, epochs = time.perf_counter(), [], [], 0

        for i, (train_idx, val_idx) in enumerate(splits):
            pruned = False

            def report(epoch: int, val_loss: float, _: float, offset: int = i * fold_epochs) -> bool:
                nonlocal epochs, pruned
                epochs = offset + epoch
                trial.set_user_attr("epochs", epochs)
                trial.set_user_attr("seconds", time.perf_counter() - start)
                trial.report(val_loss, offset + epoch)
                pruned = trial.should_prune()
                return pruned

            fold_config = config.replace(seed=config.seed + i + 1)
            result = fit(init_model(fold_config), (data.images[train_idx], labels[train_idx]),
                         (data.images[val_idx], labels[val_idx]), fold_config,
                         device=device, desc=f"trial {trial.number} fold {i + 1}", on_epoch=report)
            if pruned:
                raise optuna.TrialPruned(f"pruned at epoch {epochs}: val loss {result.history[-1]['val_loss']:.4f}")
            losses.append(result.val_loss)
            accs.append(result.val_acc)
        trial.set_user_attr("val_acc", float(np.mean(accs)))
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return float(np.mean(losses))

    return objective


def _log_trial() -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            log.info(f"trial {trial.number}: val loss {trial.value:.4f} (acc {trial.user_attrs.get('val_acc', 0):.4f}); {params}")
        else:
            log.info(f"trial {trial.number}: {trial.state.name.lower()} after epoch {trial.user_attrs.get('epochs', 0)}; {params}")
    return callback


class Interrupt:
    """Ctrl-C ends the study even when its KeyboardInterrupt lands where Python swallows it (a
    destructor, e.g. a DataLoader shutting down its worker): the flag stops the study after the trial."""

    def __init__(self) -> None:
        self.seen = False

    def __enter__(self) -> Interrupt:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        signal.signal(signal.SIGINT, self.previous)
        if self.seen and kind is None:
            raise KeyboardInterrupt

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.seen:
            study.stop()


def run_tune(*, data: Digits, out: Path, base: TrainConfig, trials: int, timeout: float | None, storage: str | None,
             study_name: str, folds: int, cv_folds: int, fold_epochs: int, jobs: int, worker: bool = False,
             worker_args: list[str] | None = None) -> dict[str, Any]:
    """Bring study `study_name` to `trials` finished (complete or pruned) trials; write the results."""
    for name, ok in (("trials", trials >= 1), ("fold-epochs", fold_epochs >= 1), ("jobs", jobs >= 1),
                     ("trial-folds", 1 <= cv_folds <= folds), ("timeout", timeout is None or timeout > 0)):
        if not ok:
            raise UserError(f"invalid --{name}")
    base.validate()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage, out)
    study = optuna.create_study(study_name=study_name, storage=store, direction="minimize", load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    check_space(study)
    if jobs > 1 or worker:  # share the cores: each process gets its slice, augmentation inline
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(jobs, 1)))
        base = base.replace(workers=0)
    objective = make_objective(data, base, folds=folds, cv_folds=cv_folds, fold_epochs=fold_epochs)
    stop_at = optuna.study.MaxTrialsCallback(trials, states=DONE)

    def optimize(n_trials: int) -> None:
        with Interrupt() as interrupt:
            study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[stop_at, _log_trial(), interrupt])

    if worker:
        optimize(trials)
        return {}
    with local_lock(out) as alone:
        if alone and storage is None:  # trials a killed run left RUNNING can never finish: mark them failed
            for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.tell(stale.number, state=TrialState.FAIL)
                log.info(f"tune: trial {stale.number} was left running by an interrupted run; marked failed")
        done = len(study.get_trials(deepcopy=False, states=DONE))
        where = mask_password(storage, storage) if storage else out / "journal.log"
        log.info(f"tune: study {study_name!r} in {where}: {done} finished trial(s), target {trials}; "
            f"{len(data):,} images from {data.source}; {cv_folds} of {folds} folds x {fold_epochs} epochs per trial; {jobs} process(es)")
        env = {**os.environ, **({STORAGE_ENV: storage} if storage else {})}
        helpers = [subprocess.Popen([sys.executable, "-m", "competition", "tune", *(worker_args or []), "--worker"], env=env)
                   for _ in range(jobs - 1)] if done < trials else []
        try:
            if done < trials:
                optimize(trials - done)
        finally:
            for helper in helpers:
                helper.wait()
        return write_results(study, out, base=base, planned_epochs=cv_folds * fold_epochs, data=data.source)


def write_results(study: optuna.Study, out: Path, *, base: TrainConfig, planned_epochs: int, data: str) -> dict[str, Any]:
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plt.switch_backend("Agg")  # Optuna's plots go through pyplot; files only, never a window

    finished = study.get_trials(deepcopy=False, states=DONE)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if not complete:
        raise UserError(f"study {study.study_name!r} has no completed trial yet; run tune again")
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    saved = sum((planned_epochs - t.user_attrs.get("epochs", planned_epochs)) * t.user_attrs.get("seconds", 0)
                / max(t.user_attrs.get("epochs", 1), 1) for t in pruned)
    best = study.best_trial
    report = {
        "study": study.study_name, "best_value": best.value, "best_params": best.params,
        "best_val_acc": best.user_attrs.get("val_acc"), "best_trial": best.number,
        "trials_finished": len(finished), "trials_complete": len(complete), "trials_pruned": len(pruned),
        "pruned_fraction": len(pruned) / len(finished), "seconds_saved_by_pruning": saved,
        "trial_seconds_total": sum(t.user_attrs.get("seconds", 0) for t in finished),
        "base_config": base.to_dict(),
    }
    atomic_write(out / "best_params.json", lambda h: json.dump({"params": best.params, "value": best.value,
                                                               "study": study.study_name, "data": data}, h, indent=2), mode="w")
    atomic_write(out / "report.json", lambda h: json.dump(report, h, indent=2), mode="w")
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    atomic_write(out / "trials.csv", lambda h: frame.to_csv(h, index=False), mode="w")
    figures: dict[str, Callable[[optuna.Study], Any]] = {"history.png": vis.plot_optimization_history, "slice.png": vis.plot_slice}
    if len(complete) >= 2:
        figures["importances.png"] = vis.plot_param_importances
    for name, draw in figures.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            ax = draw(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    log.info(f"tune: best val loss {best.value:.4f} (trial {best.number}): {best.params}; {len(pruned)}/{len(finished)} "
             f"pruned, ~{saved:.0f} s saved; wrote {out / 'best_params.json'}")
    log.info(f"tune: train with them: python -m competition cv --params {out / 'best_params.json'}")
    return report
