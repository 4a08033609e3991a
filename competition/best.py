"""`best`: the strongest result in one command: train a plan's runs on one fold split, blend them, submit.

A plan is data, a JSON file: the fold split its runs share, and the runs, each a recipe (config.RECIPES) plus the
hyperparameters it changes; a run may take pseudo-labels from the blend of runs before it. best.json (beside this
module) is `make best`'s; `best --plan FILE` takes another of the same shape (docs/training.md, "make best").
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RUN_SETTINGS, TrainConfig, resolve
from .errors import UserError

if TYPE_CHECKING:
    from .data import Digits

log = logging.getLogger(__name__)

PLAN = Path(__file__).with_suffix(".json")  # the shipped plan, beside this module
BLEND = "blend"  # the blend's folder in the plan's output folder; BLEND-NAME: the blend that pseudo-labels run NAME
# what a plan's run may set: the hyperparameters, less the split (the plan's) and pseudo_label (names of runs, below)
RUN_FIELDS = {f.name for f in fields(TrainConfig)} - set(RUN_SETTINGS) - {"split_seed"}


@dataclass(frozen=True)
class Plan:
    path: Path
    runs: dict[str, TrainConfig]  # run folder name -> its configuration, in training order
    # run name -> the earlier runs whose blend labels the test rows it trains on (absent: none)
    pseudo_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_plan(path: Path = PLAN) -> Plan:
    """The plan in `path`; a one-line UserError naming the file, the run and what is wrong."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such plan file") from exc
    except ValueError as exc:
        raise UserError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise UserError(f"{path}: a plan is an object whose 'runs' is a non-empty list")
    unknown = sorted(set(raw) - {"about", "split_seed", "runs"})
    if unknown:
        raise UserError(f"{path}: unknown keys {unknown}; a plan has 'about', 'split_seed' and 'runs'")
    split_seed = raw.get("split_seed", 42)
    if not isinstance(split_seed, int) or isinstance(split_seed, bool) or split_seed < 0:
        raise UserError(f"{path}: split_seed should be an integer >= 0, not {split_seed!r}")
    runs: dict[str, TrainConfig] = {}
    pseudo_sources: dict[str, tuple[str, ...]] = {}
    for number, entry in enumerate(raw["runs"], start=1):
        if not isinstance(entry, dict):
            raise UserError(f"{path}: run {number} is not an object")
        changes = {key: value for key, value in entry.items() if key not in ("name", "recipe")}
        name, recipe = entry.get("name"), entry.get("recipe")
        where = f"{path}: run {number} ({name})"
        if (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
                or name == BLEND or name.startswith(f"{BLEND}-")):
            raise UserError(f"{where}: 'name' should be a folder name of letters, digits, '.', '_' or '-' "
                            f"(not {BLEND!r} or {BLEND}-…)")
        if name in runs:
            raise UserError(f"{where}: a second run of that name")
        if recipe is not None and not isinstance(recipe, str):
            raise UserError(f"{where}: 'recipe' should be a recipe's name")
        unknown = sorted(set(changes) - RUN_FIELDS)
        if unknown:
            raise UserError(f"{where}: unknown or unplannable fields {unknown}; a run may set {sorted(RUN_FIELDS)}")
        sources = changes.pop("pseudo_label", None)
        try:
            config, _ = resolve(recipe=recipe, flags={**changes, "split_seed": split_seed})
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc
        if sources is not None:
            pseudo_sources[name] = _pseudo_sources(sources, runs, config, where)
        runs[name] = config
    folds = {config.folds for config in runs.values()}
    if len(folds) > 1:
        raise UserError(f"{path}: the runs use different fold counts {sorted(folds)}; a blend needs one split")
    return Plan(path=path, runs=runs, pseudo_sources=pseudo_sources)


def _pseudo_sources(sources: object, earlier: dict[str, TrainConfig], config: TrainConfig, where: str) -> tuple[str, ...]:
    """A run's pseudo_label: names of runs before it in the plan, checked now rather than after their hours of training."""
    if (not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources)
            or len(set(sources)) < len(sources)):
        raise UserError(f"{where}: 'pseudo_label' should be a list of the names of runs before it, not {sources!r}")
    from .pseudo import most_confident

    later = [s for s in sources if s not in earlier]
    if later:
        raise UserError(f"{where}: 'pseudo_label' names {later}, not runs before it in the plan")
    ceiling = max(most_confident(earlier[s].label_smoothing) for s in sources)
    if ceiling < config.pseudo_threshold:
        raise UserError(f"{where}: {sources} are trained with label smoothing, so their probabilities stay near "
                        f"{ceiling:.2f}, below pseudo_threshold {config.pseudo_threshold:g}: lower it")
    return tuple(sources)


def default_jobs(plan: Plan) -> int:
    """Runs to train at once: on a CUDA GPU every run that takes no pseudo-labels (one run leaves the GPU mostly
    idle); on a CPU one, as the cores are already shared by a run's training and its augmentation worker."""
    import torch

    return max(1, len(plan.runs) - len(plan.pseudo_sources)) if torch.cuda.is_available() else 1


def run_best(*, data: Path, plan: Plan, out: Path, submission: Path | None = None, force: bool = False,
             jobs: int = 1) -> dict[str, Any]:
    """Train each run of `plan` into OUT/NAME (finished folds are kept), blend them into OUT/blend, and write the
    submission for `data`'s test file (the default name as `submit` chooses it). Returns the blend's report, or the
    run's when the plan has one run.

    jobs: runs trained at once, each in its own process, when more than one run takes no pseudo-labels (runs that do
    train after, one by one, once the runs they learn from are done). On a GPU one run leaves it mostly idle: the
    host's Python, launching small kernels, sets the pace (docs/benchmarks.md, GPU data path)."""
    from .blend import blend_runs
    from .cv import data_digest, run_cv
    from .data import read_test, read_train
    from .pseudo import pseudo_labels
    from .submit import write_submission

    train = read_train(data)
    test = read_test(data)  # now: a missing test file should stop the plan before hours of training, not after
    started = time.perf_counter()
    apart = {name: config for name, config in plan.runs.items() if name not in plan.pseudo_sources}
    if jobs > 1 and len(apart) > 1:
        train_apart(train=train, runs=apart, out=out, force=force, jobs=jobs)
    else:
        apart = {}
    for number, (name, config) in enumerate(plan.runs.items(), start=1):
        if name in apart:
            continue
        log.info(f"best: run {number} of {len(plan.runs)}: {name} ({config.arch}, seed {config.seed}, {config.epochs} epochs)")
        pseudo = None
        if name in plan.pseudo_sources:
            sources = [out / source for source in plan.pseudo_sources[name]]
            labeller = sources[0]
            if len(sources) > 1:
                labeller = out / f"{BLEND}-{name}"
                blend_runs(runs=sources, out=labeller)
            config = config.replace(pseudo_label=str(labeller))
            pseudo = pseudo_labels(source=labeller, train=train, test=test, config=config, digest=data_digest(train))
        run_cv(data=train, out=out / name, config=config, force=force, pseudo=pseudo)
    runs = [out / name for name in plan.runs]
    if len(runs) == 1:
        models, report = runs[0], json.loads((runs[0] / "cv_report.json").read_text())
    else:
        models = out / BLEND
        report = blend_runs(runs=runs, out=models)
    write_submission(models=models, data=data, out=submission)
    log.info(f"best: {len(runs)} run(s) of {plan.path.name} in {(time.perf_counter() - started) / 60:.1f} min; OOF "
             f"{report['oof_accuracy']:.4f}; models {models}")
    return report


RUN_LOG = "train.log"  # a run's log in its folder when it trains in a process of its own


def train_apart(*, train: Digits, runs: dict[str, TrainConfig], out: Path, force: bool, jobs: int) -> None:
    """Train `runs` (none taking pseudo-labels) `jobs` at a time, each in a fresh process whose log and progress go to
    OUT/NAME/train.log; a bar here counts the finished runs. Every run finishes (or fails) before the first failure
    is raised, so the others' folds are kept."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    workers = min(jobs, len(runs))
    log.info(f"best: training {', '.join(runs)} {workers} at a time; each run's progress in {out}/NAME/{RUN_LOG}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    failures: list[BaseException] = []
    # spawn, not fork: a forked child cannot use CUDA once the parent has touched it
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_train_run, train=train, out=out / name, config=config, force=force, threads=threads): name
                   for name, config in runs.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs", unit="run", dynamic_ncols=True):
            name = futures[future]
            try:
                report = future.result()
            except Exception as exc:  # noqa: BLE001 - the others go on; the first failure is raised below
                log.info(f"best: {name} failed: {exc} (its log: {out / name / RUN_LOG})")
                failures.append(exc)
                continue
            log.info(f"best: {name} done: OOF {report['oof_accuracy']:.4f}, {report['wall_seconds'] / 60:.1f} min")
    finally:  # after Ctrl-C too: runs not started yet do not start
        pool.shutdown(cancel_futures=True)
    if failures:
        raise failures[0]


def _train_run(*, train: Digits, out: Path, config: TrainConfig, force: bool, threads: int) -> dict[str, Any]:
    """One run's `cv` in a process of `train_apart`'s pool, logging to OUT/train.log."""
    import sys

    import torch

    from .cv import run_cv

    torch.set_num_threads(threads)  # the host's cores shared out: on a CPU each run would take them all
    out.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("competition")
    saved = sys.stderr, logger.handlers
    with open(out / RUN_LOG, "a") as stream:
        sys.stderr = stream  # this run's log lines and progress bars (read when they write)
        logger.handlers = [logging.StreamHandler(stream)]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            return run_cv(data=train, out=out, config=config, force=force)
        finally:  # the process may train the next run
            sys.stderr, logger.handlers = saved
