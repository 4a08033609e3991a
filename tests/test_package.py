"""The package as a library and a command line: no global state changed on import, every flag explained."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from competition.cli import build_parser, main
from competition.metrics import accuracy
from competition.model import ReferenceCNN
from competition.train import EarlyStopping


def test_importing_the_package_changes_no_global_state() -> None:
    """PIL's pixel limit, matplotlib's backend and the environment stay as the importing program set them (the
    environment variables the package reads are set where they are needed; libraries it imports set their own)."""
    code = ("import os, PIL.Image, matplotlib\n"
            "ours = lambda: {k: os.environ.get(k) for k in ('NO_ALBUMENTATIONS_UPDATE', 'GRADIO_ANALYTICS_ENABLED', 'MPLBACKEND')}\n"
            "before = (PIL.Image.MAX_IMAGE_PIXELS, matplotlib.get_backend(), ours())\n"
            "import competition, competition.cli, competition.cv, competition.tune, competition.app, competition.plots\n"
            "import competition.preprocess, competition.augment, competition.submit, competition.fetch\n"
            "after = (PIL.Image.MAX_IMAGE_PIXELS, matplotlib.get_backend(), ours())\n"
            "print(before == after)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "NO_ALBUMENTATIONS_UPDATE", "GRADIO_ANALYTICS_ENABLED")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "True", done.stderr


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_of_every_command_has_help_text() -> None:
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"


def test_version_and_unknown_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("python -m competition ")
    with pytest.raises(SystemExit) as done:
        main(["cv", "--mixup", "0.5"])  # no such option
    assert done.value.code == 2 and "unrecognized arguments: --mixup" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_weights_and_stops_after_patience() -> None:
    model = ReferenceCNN()
    stopper = EarlyStopping(model, patience=2)
    stops = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.6, 1.0], start=1):
        with torch.no_grad():
            model.fc2.bias.fill_(epoch)  # marks the weights of each epoch
        stops.append(stopper.update(model, epoch, loss))
    assert stops == [False, False, False, True, False]  # two epochs without a lower loss after epoch 2
    assert stopper.best_epoch == 5 and stopper.best_state["fc2.bias"][0].item() == 5
    stopper = EarlyStopping(model, patience=2)
    for epoch, loss in enumerate([3.0, 2.0, 2.5], start=1):
        with torch.no_grad():
            model.fc2.bias.fill_(epoch)
        stopper.update(model, epoch, loss)
    assert stopper.best_epoch == 2 and stopper.best_state["fc2.bias"][0].item() == 2  # a copy, not the live weights


def test_accuracy_counts_the_rows_whose_most_probable_class_is_the_label() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert accuracy(probs, np.array([0, 1, 1, 0])) == 0.5
    assert accuracy(probs, np.array([0, 1, 0, 1])) == 1.0


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_users_umask(tmp_path: object, umask: int) -> None:
    from pathlib import Path

    from competition.io import atomic_write

    path = Path(str(tmp_path)) / "out.json"
    previous = os.umask(umask)
    try:
        atomic_write(path, lambda h: json.dump({"a": 1}, h), mode="w")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert json.loads(path.read_text()) == {"a": 1}
