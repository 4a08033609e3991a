"""`python -m competition <command>`: parse, validate, call the typed functions. User errors are one line."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RECIPES, TrainConfig, field_help
from .errors import UserError
from .model import ARCHS

if TYPE_CHECKING:  # the data module pulls in pandas: imported where used, so --help stays fast
    from .data import Digits

log = logging.getLogger("competition")

# cv flags that map one-to-one onto TrainConfig fields (flag --batch-size -> field batch_size)
CONFIG_FLAGS = {"folds": int, "epochs": int, "patience": int, "lr": float, "dropout": float, "batch_size": int,
                "seed": int, "split_seed": int, "weight_decay": float, "label_smoothing": float, "workers": int,
                "pseudo_label": str, "pseudo_threshold": float, "stroke": float, "redraw": float,
                "elastic": float}


def _data_path(value: Path | None) -> Path:
    from .data import default_data_dir

    if value is not None:
        return value
    path = default_data_dir()
    log.info(f"data: {path}/" + (" (the bundled sample; `make data` fetches the full files)" if path.name == "sample" else ""))
    return path


def _models_path(value: Path | None) -> Path:
    from .checkpoint import latest_run

    if value is not None:
        return value
    run = latest_run()
    log.info(f"models: {run} (latest run)")
    return run


def config_flags(args: argparse.Namespace) -> dict[str, object]:
    """The TrainConfig fields the command line sets explicitly."""
    explicit: dict[str, object] = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    if args.arch:
        explicit["arch"] = args.arch
    if args.no_bf16:
        explicit["bf16"] = False
    if args.tta:
        explicit["tta"] = True
    if args.data_on_device:
        explicit["data_on_device"] = args.data_on_device
    return explicit


def cmd_cv(args: argparse.Namespace) -> int:
    from .config import resolve
    from .cv import run_cv

    path = _data_path(args.data)
    config, notes = resolve(recipe=args.recipe, params=args.params, flags=config_flags(args), data=path)
    for note in notes:
        log.info(f"cv: {note}")
    data = _read_limited(path, args.limit)
    pseudo = None
    if config.pseudo_label:
        from .cv import data_digest
        from .data import read_test
        from .pseudo import pseudo_labels

        pseudo = pseudo_labels(source=Path(config.pseudo_label), train=data, test=read_test(path), config=config,
                               digest=data_digest(data))
    run_cv(data=data, out=args.out, config=config, force=args.force, only=args.fold, pseudo=pseudo)
    return 0


def _read_limited(path: Path, limit: int | None) -> Digits:
    from .data import Digits, read_train

    data = read_train(path)
    if not limit:
        return data
    assert data.labels is not None  # read_train guarantees labels
    return Digits(images=data.images[:limit], labels=data.labels[:limit], source=f"{data.source}[:{limit}]")


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import STORAGE_ENV, run_tune

    storage = args.storage or os.environ.get(STORAGE_ENV) or None
    path = _data_path(args.data)
    data = _read_limited(path, args.limit)
    folds = max(RECIPES["default"].folds, args.trial_folds)
    run_tune(data=data, out=args.out, base=RECIPES["default"], trials=args.trials, timeout=args.timeout, storage=storage,
             study_name=args.study, folds=folds, cv_folds=args.trial_folds, fold_epochs=args.fold_epochs, jobs=args.jobs,
             worker=args.worker, worker_args=tune_worker_args(args, path))
    return 0


def tune_worker_args(args: argparse.Namespace, data: Path) -> list[str]:
    """The command line of a `tune --jobs` helper: the same study, minus the storage URL, which goes by environment."""
    worker_args = ["--data", str(data), "--trials", str(args.trials), "--study", args.study, "--trial-folds",
                   str(args.trial_folds), "--fold-epochs", str(args.fold_epochs), "--jobs", str(args.jobs), "--out", str(args.out)]
    worker_args += ["--timeout", str(args.timeout)] if args.timeout else []
    return worker_args + (["--limit", str(args.limit)] if args.limit else [])


def cmd_submit(args: argparse.Namespace) -> int:
    from .submit import write_submission

    write_submission(models=_models_path(args.models), data=_data_path(args.data), out=args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .submit import evaluate

    result = evaluate(models=_models_path(args.models), data=_data_path(args.data))
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        print(f"accuracy {result['accuracy']:.4f} on {result['n']:,} images ({result['models']} model(s))")
        for row in result["per_model"]:
            print(f"  {row['checkpoint']}: {row['accuracy']:.4f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .ensemble import Ensemble
    from .preprocess import open_image
    from .recognize import recognize

    ensemble = Ensemble.load(_models_path(args.models))
    failed = 0
    for path in args.images:
        try:
            reading = recognize(open_image(path), ensemble)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        line = {"file": str(path), **reading.to_json()}
        print(json.dumps(line, allow_nan=False) if args.json else f"{path}: {reading.number or 'no digit found'}"
              + ("" if not reading.digits or not line["unsure"] else " (unsure)"), flush=True)
    if failed:
        print(f"error: {failed} of {len(args.images)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .app import serve

    serve(models=_models_path(args.models), host=args.host, port=args.port, share=args.share)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from .blend import blend_runs

    blend_runs(runs=args.runs, out=args.out, max_picks=args.max_picks)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from .best import PLAN, default_jobs, read_plan, run_best

    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs should be at least 1, not {args.jobs}")
    plan = read_plan(args.plan or PLAN)
    run_best(data=_data_path(args.data), plan=plan, out=args.out, submission=args.submission, force=args.force,
             jobs=args.jobs or default_jobs(plan))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs import list_runs, runs_table

    rows = list_runs(args.models)
    if args.json:
        for row in rows:
            print(json.dumps(row, allow_nan=False))
    else:
        print(runs_table(rows, args.models))
    return 0


def cmd_kaggle_submit(args: argparse.Namespace) -> int:
    from .kaggle import kaggle_submit

    kaggle_submit(file=args.file, message=args.message, wait=args.wait)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .fetch import fetch_data

    fetch_data(src=args.src)
    return 0


def _at_least(kind: type, minimum: float = 0) -> Callable[[str], Any]:
    def parse(text: str) -> object:
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {text}")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m competition", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    cv = sub.add_parser("cv", help="K-fold cross-validation of the CNN; one checkpoint per fold")
    cv.add_argument("--data", type=Path, help="train.csv / .csv.gz / Kaggle zip / folder (default: data/, else the sample)")
    cv.add_argument("--out", type=Path, default=Path("models/default"), help="run folder (default: models/default)")
    cv.add_argument("--recipe", choices=sorted(RECIPES),
                    help="default: the recipe the README reports (poolres); reference: the notebook's CNN's; seed: the "
                         "original notebook's settings; bncnn, resnet: those architectures' (default: the --arch's "
                         "recipe, else default)")
    cv.add_argument("--arch", choices=sorted(ARCHS), help="the network (default poolres; reference: the notebook's CNN)")
    cv.add_argument("--params", type=Path, metavar="FILE",
                    help="hyperparameters from a `tune` result (models/tune/best_params.json); flags override them")
    helps = field_help()
    for name, kind in CONFIG_FLAGS.items():
        default = TrainConfig.__dataclass_fields__[name].default
        cv.add_argument(f"--{name.replace('_', '-')}", type=str if kind is str else _at_least(kind),
                        help=f"{helps[name]} (default {default!r})")
    cv.add_argument("--no-bf16", action="store_true", help="train in float32 even where the hardware computes bf16 (slower there)")
    cv.add_argument("--tta", action="store_true", help=helps["tta"])
    cv.add_argument("--data-on-device", choices=["auto", "yes", "no"],
                    help="keep the fold's images on the training device and augment them there (default auto: on CUDA)")
    cv.add_argument("--limit", type=_at_least(int, 1), help="use only the first N rows (quick trials)")
    cv.add_argument("--fold", type=_at_least(int, 1), help="train only this fold (1..K), e.g. one per machine")
    cv.add_argument("--force", action="store_true", help="retrain folds that are already in --out")
    cv.set_defaults(run=cmd_cv)

    tune = sub.add_parser("tune", help="Optuna search over lr, dropout and batch size (resumable, distributable)")
    tune.add_argument("--data", type=Path, help="labelled data (default: data/, else the sample)")
    tune.add_argument("--trials", type=int, default=20, help="finished trials the study should reach (default 20)")
    tune.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    tune.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user@host/db (default: $COMPETITION_TUNE_STORAGE, "
                                        "else a journal file in --out); passwords are never printed")
    tune.add_argument("--study", default="digits", help="study name (default digits)")
    tune.add_argument("--trial-folds", type=int, default=1,
                      help="folds of the 5-fold split each trial trains and averages (default 1)")
    tune.add_argument("--fold-epochs", type=int, default=3, help="epochs per fold in a trial (default 3)")
    tune.add_argument("--jobs", type=int, default=1, help="worker processes on this machine sharing the study (default 1)")
    tune.add_argument("--out", type=Path, default=Path("models/tune"), help="results folder (default models/tune)")
    tune.add_argument("--limit", type=_at_least(int, 1), help="use only the first N rows")
    tune.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a helper started by --jobs
    tune.set_defaults(run=cmd_tune)

    submit = sub.add_parser("submit", help="ensemble the fold models over test.csv -> submission.csv")
    submit.add_argument("--models", type=Path, help="run folder, blend folder or checkpoint file (default: latest run in models/)")
    submit.add_argument("--data", type=Path, help="test.csv / .csv.gz / Kaggle zip / folder (default: data/, else the sample)")
    submit.add_argument("--out", type=Path, help="the file to write (default submissions/submission.csv, or "
                        "submissions/submission-N-rows.csv when the test file is not Kaggle's 28,000 rows); a timestamped copy "
                        "and a line in log.csv go beside it")
    submit.set_defaults(run=cmd_submit)

    evaluate = sub.add_parser("evaluate", help="accuracy of the ensemble and each model on a labelled file")
    evaluate.add_argument("--models", type=Path, help="run folder, blend folder or checkpoint file (default: latest run)")
    evaluate.add_argument("--data", type=Path, help="a labelled train-format file or folder")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = sub.add_parser("predict", help="read the digits in image files (canvases, scans, photos)")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    predict.add_argument("--models", type=Path, help="run folder, blend folder or checkpoint file (default: latest run)")
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.set_defaults(run=cmd_predict)

    demo = sub.add_parser("demo", help="the draw-a-digit page (Gradio)")
    demo.add_argument("--models", type=Path, help="run folder, blend folder or checkpoint file (default: latest run)")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    demo.add_argument("--port", type=_port, default=7860, help="1..65535 (default 7860)")
    demo.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs internet)")
    demo.set_defaults(run=cmd_demo)

    blend = sub.add_parser("blend", help="combine finished runs with weights learned on their out-of-fold predictions")
    blend.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders trained on the same data and fold split")
    blend.add_argument("--out", type=Path, required=True, help="the blend's folder, e.g. models/blends/NAME")
    blend.add_argument("--max-picks", type=int, default=50, help="most selection rounds (default 50)")
    blend.set_defaults(run=cmd_blend)

    best = sub.add_parser("best", help="train a plan's runs on one fold split, blend them, write the submission")
    best.add_argument("--data", type=Path, help="a folder (or zip) with the train and test files (default: data/, else the sample)")
    best.add_argument("--plan", type=Path, metavar="FILE", help="a plan (JSON) of runs (default: the shipped competition/best.json)")
    best.add_argument("--out", type=Path, default=Path("models/best"),
                      help="folder for the runs (OUT/NAME) and their blend (OUT/blend) (default models/best)")
    best.add_argument("--submission", type=Path, metavar="FILE", help="the file to write (default: as submit chooses it)")
    best.add_argument("--force", action="store_true", help="retrain runs already in --out with other data or settings")
    best.add_argument("--jobs", type=int, metavar="N", help="runs trained at once, each in its own process (default: "
                      "all of them on a CUDA GPU, which one run leaves mostly idle; 1 on a CPU)")
    best.set_defaults(run=cmd_best)

    runs = sub.add_parser("runs", help="the finished runs and blends, best out-of-fold accuracy first")
    runs.add_argument("--models", type=Path, default=Path("models"), help="where the runs are (default models/)")
    runs.add_argument("--json", action="store_true", help="one JSON object per run or blend")
    runs.set_defaults(run=cmd_runs)

    upload = sub.add_parser("kaggle-submit", help="upload a submission with the Kaggle API; record its public score")
    upload.add_argument("file", type=Path, nargs="?", default=Path("submissions/submission.csv"),
                        help="the submission (default submissions/submission.csv)")
    upload.add_argument("-m", "--message", help="the submission's description (default: its run and CV score, from log.csv)")
    upload.add_argument("--wait", type=_at_least(float), default=300,
                        help="seconds to wait for the public score before leaving it to Kaggle's page (default 300)")
    upload.set_defaults(run=cmd_kaggle_submit)

    data = sub.add_parser("data", help="fill data/ from SRC, else the Kaggle API")
    data.add_argument("--src", type=Path, help="Kaggle zip, folder or file pair you already have")
    data.set_defaults(run=cmd_data)
    return parser


def _version() -> str:
    try:
        return version("competition")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


class _TqdmHandler(logging.Handler):
    """Log lines on stderr, written between progress-bar redraws so neither garbles the other."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging() -> None:
    """Informational lines go to stderr, so stdout carries only results (`--json` lines stay pure JSON)."""
    if not log.handlers:
        log.addHandler(_TqdmHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return int(args.run(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path given that cannot be made, read or written (not a folder, no permission, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        hint = " (a file stands where a folder is needed)" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else ""
        print(f"error: {where}{exc.strerror or exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished folds and trials are saved; run the same command again to continue",
              file=sys.stderr)
        return 130
