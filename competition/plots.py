"""Figures for a CV run: learning curves, OOF confusion matrix, the worst OOF mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no backend, no window, no global state
from sklearn.metrics import confusion_matrix


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def learning_curves(histories: list[list[dict[str, float]]], path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for fold, history in enumerate(histories, start=1):
        epochs = [h["epoch"] for h in history]
        line = ax_loss.plot(epochs, [h["val_loss"] for h in history], label=f"fold {fold} val")[0]
        ax_loss.plot(epochs, [h["train_loss"] for h in history], "--", color=line.get_color(), alpha=0.6)
        ax_acc.plot(epochs, [h["val_acc"] for h in history], color=line.get_color(), label=f"fold {fold}")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (dashed: train, augmented)", title="loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    _save(fig, path)


def confusion(labels: np.ndarray, preds: np.ndarray, path: Path) -> None:
    matrix = confusion_matrix(labels, preds, labels=list(range(10)))
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    ax.imshow(off, cmap="Reds")  # colour shows the errors; the diagonal would drown them
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="black" if i != j else "grey")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"OOF confusion ({int(off.sum())} errors / {len(labels)})")
    _save(fig, path)


def worst_mistakes(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, path: Path, count: int = 32,
                   among: np.ndarray | None = None) -> None:
    """The wrong predictions the models were most sure of (among the rows `among`, when given), with true label and
    predicted probability."""
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)
    if among is not None:
        wrong = np.intersect1d(wrong, among)
    wrong = wrong[np.argsort(-probs[wrong, preds[wrong]])][:count]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig = Figure(figsize=(cols * 1.3, rows * 1.5))
    axes = fig.subplots(rows, cols)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), wrong):
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"true {labels[i]} → {preds[i]}\np={probs[i, preds[i]]:.2f} row {i}", fontsize=7)
    fig.suptitle(f"worst OOF mistakes ({len(wrong)} shown)" if len(wrong) else "no OOF mistakes")
    _save(fig, path)
