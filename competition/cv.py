"""K-fold cross-validation: one checkpoint per fold, out-of-fold predictions, a report and plots."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .blend import PROB_COLUMNS
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Digits, fold_indices
from .errors import UserError
from .infer import autocast_dtype, pick_device, precision_name
from .io import atomic_write
from .metrics import accuracy, log_loss
from .pseudo import PseudoLabels
from .train import fit, init_model

log = logging.getLogger(__name__)


def data_digest(data: Digits) -> str:
    """Identifies the images and labels, wherever the file lies: runs with equal digests trained on the same rows."""
    digest = hashlib.sha1(data.images.tobytes())
    digest.update(data.labels.tobytes() if data.labels is not None else b"")
    return digest.hexdigest()[:16]


def fingerprint(data: Digits, config: TrainConfig, pseudo: PseudoLabels | None = None) -> str:
    """Identifies data + settings (+ pseudo-labels), so a re-run only reuses folds trained on exactly these."""
    digest = hashlib.sha1(data_digest(data).encode())
    digest.update(json.dumps(config.hyperparameters(), sort_keys=True).encode())
    digest.update(pseudo.digest().encode() if pseudo is not None else b"")
    return digest.hexdigest()[:16]


def run_cv(*, data: Digits, out: Path, config: TrainConfig, force: bool = False, only: int | None = None,
           pseudo: PseudoLabels | None = None) -> dict[str, Any]:
    """Train config.folds models (or just fold `only`); skip folds already in `out` for the same data and settings.

    pseudo: extra labelled rows for each fold's training part (test rows a finished run's models of that fold labelled
    confidently)."""
    assert data.labels is not None, "run_cv needs labelled data"
    config.validate()
    splits = fold_indices(data.labels, folds=config.folds, seed=config.fold_seed)
    if only is not None and not 1 <= only <= config.folds:
        raise UserError(f"--fold {only} is not in 1..{config.folds}")
    signature = fingerprint(data, config, pseudo)
    device = pick_device()
    on_device = config.data_on_device == "yes" or (config.data_on_device == "auto" and device.type == "cuda")
    precision = (precision_name(autocast_dtype(device, config.bf16)) + (", TTA 3 views" if config.tta else "")
                 + (", data and augmentation on the device" if on_device else ""))
    log.info(f"cv: {len(data):,} images from {data.source}; {config.folds} folds; device {device} ({precision}); out {out}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for fold, (train_idx, val_idx) in enumerate(tqdm(splits, desc="folds", unit="fold", dynamic_ncols=True), start=1):
        path = out / f"fold{fold}.pt"
        if only is not None and fold != only:
            continue
        if path.exists() and not force:
            previous = load_checkpoint(path)
            if previous.extra.get("signature") != signature:
                raise UserError(f"{path} was trained on other data or settings; "
                                f"pass --force to retrain, or choose another --out")
            log.info(f"fold {fold}: already trained (val acc {previous.metrics['val_acc']:.4f}); skipped, --force retrains")
            continue
        fold_config = config.replace(seed=config.seed + fold)
        model = init_model(fold_config)
        train = (data.images[train_idx], data.labels[train_idx])
        if pseudo is not None:
            train = (np.concatenate([train[0], pseudo.images[fold - 1]]), np.concatenate([train[1], pseudo.labels[fold - 1]]))
        result = fit(model, train, (data.images[val_idx], data.labels[val_idx]), fold_config, device=device,
                     desc=f"fold {fold}/{config.folds}")
        metrics = {"val_acc": result.val_acc, "val_loss": result.val_loss, "best_epoch": result.best_epoch,
                   "epochs": len(result.history), "seconds": result.seconds, "images_per_s": result.images_per_s}
        save_checkpoint(path, model, config, fold=fold, metrics=metrics, extra={
            "signature": signature, "data": data.source, "history": result.history, "train_rows": len(train[1]),
            "oof_index": val_idx.tolist(), "oof_probs": result.val_probs.tolist()})
        log.info(f"fold {fold}: val acc {result.val_acc:.4f}, loss {result.val_loss:.4f}, "
            f"best epoch {result.best_epoch}/{len(result.history)}, {result.seconds:.0f} s, "
            f"{result.images_per_s:,.0f} img/s")
    missing = [k for k in range(1, config.folds + 1) if not (out / f"fold{k}.pt").exists()]
    if missing:
        log.info(f"cv: folds {missing} not trained yet; the report is written once all {config.folds} exist")
        return {}
    report = write_report(data=data, out=out, config=config, wall_seconds=time.perf_counter() - started)
    log.info(f"cv: OOF accuracy {report['oof_accuracy']:.4f}; folds {report['fold_acc_mean']:.4f} ± "
        f"{report['fold_acc_std']:.4f}; report {out / 'cv_report.json'}")
    return report


def host() -> str:
    """The machine a run trained on, for the runs table: the GPU, else the CPU model and its bf16 support."""
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        text = info.read_text()
        cpu = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), cpu)
        threads = torch.get_num_threads()
        cpu += (f", {threads} thread{'s' if threads != 1 else ''}"
                + (", bf16" if "avx512_bf16" in text or "amx_bf16" in text else ", no bf16"))
    return cpu


def write_report(*, data: Digits, out: Path, config: TrainConfig, wall_seconds: float) -> dict[str, Any]:
    """cv_report.json, oof.csv and the plots, rebuilt from the fold checkpoints."""
    from . import plots  # matplotlib only when a report is written

    assert data.labels is not None
    paths = [out / f"fold{k}.pt" for k in range(1, config.folds + 1)]
    checkpoints = [load_checkpoint(path) for path in paths]
    probs = np.zeros((len(data), 10), dtype=np.float32)
    for ck in checkpoints:
        probs[np.asarray(ck.extra["oof_index"])] = np.asarray(ck.extra["oof_probs"], dtype=np.float32)
    preds = probs.argmax(1)
    accs = np.array([ck.metrics["val_acc"] for ck in checkpoints])
    report = {
        "data": data.source, "data_digest": data_digest(data), "rows": len(data), "config": config.to_dict(),
        # when the last fold was saved: a report rebuilt later (a re-run, a lost oof.csv) keeps the run's date
        "host": host(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(p.stat().st_mtime for p in paths))),
        "oof_accuracy": accuracy(probs, data.labels), "oof_loss": log_loss(probs, data.labels),
        "fold_acc_mean": float(accs.mean()), "fold_acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "folds": [{"fold": ck.fold, **ck.metrics} for ck in checkpoints],
        "train_seconds": float(sum(ck.metrics["seconds"] for ck in checkpoints)),  # the folds' fits, however resumed
        "wall_seconds": wall_seconds,  # of the `cv` call that wrote this report (0 when every fold was trained before)
    }
    atomic_write(out / "cv_report.json", lambda h: json.dump(report, h, indent=2), mode="w")
    table = pd.DataFrame(probs, columns=list(PROB_COLUMNS))
    table.insert(0, "pred", preds)
    table.insert(0, "label", data.labels)
    table.insert(0, "row", np.arange(len(data)))
    atomic_write(out / "oof.csv", lambda h: table.to_csv(h, index=False, float_format="%.5f"), mode="w")
    plots.learning_curves([ck.extra["history"] for ck in checkpoints], out / "learning_curves.png")
    plots.confusion(data.labels, preds, out / "confusion.png")
    plots.worst_mistakes(data.images, data.labels, probs, out / "worst_mistakes.png")
    return report
