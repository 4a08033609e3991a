"""One model, one train/validation split: the explicit training loop with early stopping."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .augment import make_loader
from .checkpoint import NOTEBOOK_NORM
from .config import TrainConfig
from .infer import bf16_helps, log_loss, predict_proba, to_input

# Called after every epoch with (epoch, val_loss, val_acc); returns True to stop now (Optuna pruning).
# Stopping by return, not by raising, lets the loader's worker process shut down with the loop: an
# exception's traceback would keep it alive until a later forked worker garbage-collects it.
EpochHook = Callable[[int, float, float], bool]


@dataclass
class FitResult:
    history: list[dict[str, float]]  # per epoch: train_loss, val_loss, watched_loss (= val_loss label-smoothed), val_acc, seconds, images_per_s
    best_epoch: int  # 1-based epoch whose weights were restored
    val_probs: np.ndarray  # (n_val, 10) softmax of the restored model
    val_loss: float
    val_acc: float
    seconds: float  # wall time of the whole fit
    images_per_s: float  # training images per second over all epochs (augmentation included)


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        config: TrainConfig, *, device: torch.device, desc: str = "train", on_epoch: EpochHook | None = None) -> FitResult:
    """Train `model` in place on uint8 images; restore the weights with the lowest validation loss."""
    torch.manual_seed(config.seed)
    model.to(device).to(memory_format=torch.channels_last)
    loader = make_loader(*train, config, pin_memory=device.type == "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    scheduler = None
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * len(loader))
    bf16 = config.bf16 and bf16_helps(device)
    history: list[dict[str, float]] = []
    best_loss, best_state, best_epoch, stale = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    start = time.perf_counter()
    out_of_time = False
    images_total, train_total = 0, 0.0  # for the run's images/s, augmentation included
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    for epoch in bar:
        model.train()
        tick, seen, total_loss = time.perf_counter(), 0, 0.0
        for images, labels in loader:
            x, y = to_input(images, NOTEBOOK_NORM, device), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seen += len(y)
            total_loss += loss.item() * len(y)
            if config.time_budget and time.perf_counter() - start > config.time_budget:
                out_of_time = True
                break
        train_seconds = time.perf_counter() - tick
        images_total, train_total = images_total + seen, train_total + train_seconds
        probs = predict_proba(model, val[0], NOTEBOOK_NORM, device=device, bf16=bf16)
        val_loss, val_acc = log_loss(probs, val[1]), float((probs.argmax(1) == val[1]).mean())
        # Early stopping watches the loss being trained: with label smoothing the plain log loss rises
        # while accuracy still improves, and watching it kept early epochs: 300 OOF errors, not 213 (README).
        watched = log_loss(probs, val[1], smoothing=config.label_smoothing)
        history.append({"epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
                        "watched_loss": watched, "val_acc": val_acc, "seconds": time.perf_counter() - tick,
                        "images_per_s": seen / train_seconds})
        bar.set_postfix(val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.4f}", img_s=f"{seen / train_seconds:.0f}")
        if watched < best_loss:
            best_loss, best_state, best_epoch, stale = watched, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
        stop = on_epoch is not None and on_epoch(epoch, val_loss, val_acc)
        if stop or stale >= config.patience or out_of_time:
            break
    bar.close()
    model.load_state_dict(best_state)
    probs = predict_proba(model, val[0], NOTEBOOK_NORM, device=device, bf16=bf16, tta=config.tta)  # the OOF predictions
    seconds = time.perf_counter() - start
    return FitResult(
        history=history, best_epoch=best_epoch, val_probs=probs,
        val_loss=log_loss(probs, val[1]), val_acc=float((probs.argmax(1) == val[1]).mean()), seconds=seconds,
        images_per_s=images_total / max(train_total, 1e-9),
    )
