"""One model, one train/validation split: the explicit training loop with early stopping."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .augment import make_loader
from .config import TrainConfig
from .infer import autocast_dtype, predict_proba, to_input
from .metrics import accuracy, log_loss
from .model import NORMALIZE, NearestNeighbours, build_model

# Called after every epoch with (epoch, val_loss, val_acc); returns True to stop now (Optuna pruning).
# Stopping by return, not by raising, lets the loader's worker process shut down with the loop: an
# exception's traceback would keep it alive until a later forked worker garbage-collects it.
EpochHook = Callable[[int, float, float], bool]


@dataclass
class FitResult:
    # per epoch: train_loss, val_loss, watched_loss (= val_loss label-smoothed), val_acc, seconds, images_per_s,
    # lr (the learning rate at the epoch's end)
    history: list[dict[str, float]]
    best_epoch: int  # 1-based epoch whose weights were restored
    val_probs: np.ndarray  # (n_val, 10) softmax of the restored model
    val_loss: float
    val_acc: float
    seconds: float  # wall time of the whole fit
    images_per_s: float  # training images per second over all epochs (augmentation included)


def batches(train: tuple[np.ndarray, np.ndarray], config: TrainConfig, device: torch.device) -> Any:
    """One epoch's augmented batches each time it is iterated: on the device itself (data_on_device "yes", or "auto"
    on CUDA), else from the CPU worker (albumentations)."""
    if config.data_on_device == "yes" or (config.data_on_device == "auto" and device.type == "cuda"):
        from .device_augment import DeviceBatches

        return DeviceBatches(*train, config, device)
    return make_loader(*train, config, pin_memory=device.type == "cuda")


def init_model(config: TrainConfig) -> nn.Module:
    """A freshly initialised network for `config`: the same weights for the same arch, dropout and seed."""
    torch.manual_seed(config.seed)
    return build_model(config.arch, dropout=config.dropout)


class EarlyStopping:
    """Keeps the weights of the epoch with the lowest watched loss; says when `patience` counted epochs brought none
    lower. An epoch is counted unless the caller says it trained at a learning rate too high to judge by."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.patience, self.best_loss, self.best_epoch, self.stale = patience, float("inf"), 0, 0
        self.best_state = copy.deepcopy(model.state_dict())

    def update(self, model: nn.Module, epoch: int, loss: float, *, counts: bool = True) -> bool:
        """Record this epoch; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        elif counts:
            self.stale += 1
        return self.stale >= self.patience


# Under the one-cycle schedule the validation loss jumps about while the learning rate is high, and the cooling
# epochs are where it falls most: only epochs that end with the rate falling and at most this fraction of its
# peak count toward the patience, so a fold is not stopped before it has cooled (docs/training.md).
JUDGED_BELOW = 0.5


def train_one_epoch(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None, *, device: torch.device,
                    dtype: torch.dtype | None, scaler: torch.amp.GradScaler, label_smoothing: float) -> tuple[float, int]:
    """One pass over the loader's uint8 batches: (mean training loss, images seen). dtype: the autocast precision
    (None: fp32); the scaler scales the loss where that is float16 and passes it through otherwise."""
    model.train()
    # summed on the device: a .item() per step would make the host wait for every step on a GPU
    seen, total_loss = 0, torch.zeros((), device=device)
    for images, labels in loader:
        x, y = to_input(images, NORMALIZE, device), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        seen += len(y)
        total_loss += loss.detach().float() * len(y)
    return total_loss.item() / max(seen, 1), seen


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, device: torch.device, bf16: bool,
             smoothing: float = 0.0, tta: bool = False) -> tuple[np.ndarray, dict[str, float]]:
    """(softmax (N, 10), {val_loss, watched_loss, val_acc}); watched_loss is the loss training minimises."""
    probs = predict_proba(model, images, NORMALIZE, device=device, bf16=bf16, tta=tta)
    return probs, {"val_loss": log_loss(probs, labels), "watched_loss": log_loss(probs, labels, smoothing=smoothing),
                   "val_acc": accuracy(probs, labels)}


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        config: TrainConfig, *, device: torch.device, desc: str = "train", on_epoch: EpochHook | None = None) -> FitResult:
    """Train `model` in place on uint8 images; restore the weights with the lowest validation loss."""
    if isinstance(model, NearestNeighbours):
        return memorize(model, train, val, config, device=device)
    torch.manual_seed(config.seed)
    model.to(device).to(memory_format=torch.channels_last)
    loader = batches(train, config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    scheduler = None
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * len(loader))
    dtype = autocast_dtype(device, config.bf16)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    # Early stopping watches the loss being trained: with label smoothing the plain log loss rises while
    # accuracy still improves, and watching it kept too-early epochs (docs/training.md).
    stopper = EarlyStopping(model, config.patience)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    images_total, train_total = 0, 0.0  # for the run's images/s, augmentation included
    last_lr = optimizer.param_groups[0]["lr"]  # the one-cycle warm-up's start
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    for epoch in bar:
        tick = time.perf_counter()
        train_loss, seen = train_one_epoch(model, loader, optimizer, scheduler, device=device, dtype=dtype, scaler=scaler,
                                           label_smoothing=config.label_smoothing)
        train_seconds = time.perf_counter() - tick
        images_total, train_total = images_total + seen, train_total + train_seconds
        _, scores = evaluate(model, *val, device=device, bf16=config.bf16, smoothing=config.label_smoothing)
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch ended at
        history.append({"epoch": epoch, "train_loss": train_loss, **scores, "seconds": time.perf_counter() - tick,
                        "images_per_s": seen / train_seconds, "lr": lr})
        bar.set_postfix(val_loss=f"{scores['val_loss']:.4f}", val_acc=f"{scores['val_acc']:.4f}", img_s=f"{seen / train_seconds:.0f}")
        cooled = scheduler is None or (lr < last_lr and lr <= JUDGED_BELOW * config.lr)
        stop = stopper.update(model, epoch, scores["watched_loss"], counts=cooled)
        last_lr = lr
        if (on_epoch is not None and on_epoch(epoch, scores["val_loss"], scores["val_acc"])) or stop:
            break
    bar.close()
    model.load_state_dict(stopper.best_state)
    probs, scores = evaluate(model, *val, device=device, bf16=config.bf16, tta=config.tta)  # the OOF predictions
    return FitResult(history=history, best_epoch=stopper.best_epoch, val_probs=probs, val_loss=scores["val_loss"],
                     val_acc=scores["val_acc"], seconds=time.perf_counter() - start,
                     images_per_s=images_total / max(train_total, 1e-9))


def memorize(model: NearestNeighbours, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
             config: TrainConfig, *, device: torch.device) -> FitResult:
    """`fit` for nearest neighbours: keep the training digits as they are (no augmentation, no epochs), then predict
    the validation digits; one pass stands in for an epoch in the history."""
    start = time.perf_counter()
    model.to(device).memorize(to_input(torch.from_numpy(train[0]), NORMALIZE, device), torch.from_numpy(train[1]).to(device))
    rate = len(train[1]) / (time.perf_counter() - start)  # kept digits per second
    probs, scores = evaluate(model, *val, device=device, bf16=config.bf16, tta=config.tta)
    seconds = time.perf_counter() - start
    history = [{"epoch": 1, "train_loss": float("nan"), **scores, "seconds": seconds, "images_per_s": rate, "lr": 0.0}]
    return FitResult(history=history, best_epoch=1, val_probs=probs, val_loss=scores["val_loss"], val_acc=scores["val_acc"],
                     seconds=seconds, images_per_s=rate)
