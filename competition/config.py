"""Training configuration: one typed dataclass; recipes and tuned parameters are instances of it.

`resolve` is the one place a run's configuration is decided: recipe, then a parameters file, then flags.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one fold is trained and how its model predicts. Defaults = the run the README reports.

    The fields above `bf16` are the hyperparameters: a run's fingerprint covers them. The run settings below
    change how fast a run goes, not what it learns (in distribution), so a run can be resumed with other values.
    """

    arch: str = "poolres"  # model name in competition.model.ARCHS ("reference" = the notebook's CNN; docs/training.md)
    folds: int = 5  # K of the stratified K-fold split
    seed: int = 42  # weight init, augmentation, shuffling and (unless split_seed is set) the fold split derive from it
    split_seed: int = -1  # seed of the fold split; -1 = `seed`. Runs that share it can be blended (their OOF rows line up)
    epochs: int = 20  # upper bound per fold; early stopping may end a fold sooner (docs/training.md)
    patience: int = 5  # epochs without a lower validation loss before a fold stops
    lr: float = 3e-3  # peak learning rate of Adam (the one-cycle schedule's maximum); batch norm tolerates a high one
    schedule: str = "onecycle"  # "onecycle" (warm-up, then cosine decay to ~0) or "constant" (the seed recipe's)
    batch_size: int = 128  # images per optimiser step
    dropout: float = 0.2  # before the last layer (the reference CNN's notebook: 0.5)
    weight_decay: float = 1e-4  # Adam's L2 term (docs/training.md)
    label_smoothing: float = 0.1  # cross-entropy target smoothing, 0..1; 0.1 made fewer OOF errors than 0 in paired runs
    rotate: float = 10.0  # augmentation: degrees, uniform in [-rotate, rotate]
    shift: float = 0.1  # augmentation: fraction of the image side, uniform in [-shift, shift] per axis
    scale: float = 0.1  # augmentation: relative zoom, uniform in [1 - scale, 1 + scale]
    shear: float = 5.0  # augmentation: degrees, uniform in [-shear, shear]
    stroke: float = 0.0  # augmentation: probability that an image's strokes are thickened or thinned by a pixel (half each)
    elastic: float = 0.0  # augmentation: probability of a local elastic warp (Simard et al. 2003; augment.ELASTIC_*)
    redraw: float = 0.0  # augmentation: probability that an image is swapped for its sketchpad redraw (competition/sketch.py)
    pseudo_label: str = ""  # a run or blend whose confident test predictions join every fold's training part ("": none)
    pseudo_threshold: float = 0.99  # the least probability a pseudo-label needs
    tta: bool = False  # predict from 3 views (as is, rotated +-6 deg): OOF, submit, evaluate, predict and demo
    bf16: bool = True  # reduced precision where the hardware computes it: bf16 (AVX512-BF16/AMX CPUs, GPUs), fp16 on older GPUs
    workers: int = 1  # augmentation processes beside the training loop (0 = in the loop)
    aug_group: int = 4  # images per albumentations call, sharing one random draw (the per-call overhead dominates)
    data_on_device: str = "auto"  # "yes": the fold's images live on the training device, augmented there; "auto": on CUDA

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def fold_seed(self) -> int:
        """The seed the fold split is drawn with."""
        return self.seed if self.split_seed < 0 else self.split_seed

    def hyperparameters(self) -> dict[str, object]:
        """The fields that decide what a run learns: what its fingerprint covers. A field added later is left out at
        the value that trains as runs from before it did, so those runs keep their fingerprint and still resume."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in RUN_SETTINGS and not (k in ADDED_LATER and v == ADDED_LATER[k])}

    def validate(self) -> TrainConfig:
        """Raise UserError naming the first out-of-range field."""
        checks = {
            "folds": self.folds >= 2,
            "epochs": self.epochs >= 1,
            "patience": self.patience >= 1,
            "lr": 0 < self.lr < 1,
            "batch_size": self.batch_size >= 1,
            "dropout": 0 <= self.dropout < 1,
            "weight_decay": self.weight_decay >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "rotate": 0 <= self.rotate <= 180,
            "shift": 0 <= self.shift < 0.5,
            "scale": 0 <= self.scale < 1,
            "shear": 0 <= self.shear < 45,
            "stroke": 0 <= self.stroke <= 1,
            "elastic": 0 <= self.elastic <= 1,
            "redraw": 0 <= self.redraw <= 1,
            "aug_group": 1 <= self.aug_group <= 512,
            "workers": self.workers >= 0,
            "schedule": self.schedule in ("onecycle", "constant"),
            "data_on_device": self.data_on_device in ("auto", "yes", "no"),
            "pseudo_threshold": 0 < self.pseudo_threshold <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise UserError(f"invalid {name}={getattr(self, name)!r}")
        from .model import ARCHS  # late: config must not pull in torch for validation errors

        if self.arch not in ARCHS:
            raise UserError(f"invalid arch={self.arch!r}; known: {', '.join(ARCHS)}")
        return self

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object], *, base: TrainConfig | None = None) -> TrainConfig:
        """Build from a dict (a checkpoint's, a parameters file's), ignoring keys this version does not know
        (newer checkpoints) and taking those it lacks from `base` (default: the defaults); UserError naming a value
        of the wrong type."""
        known = {f.name: type(f.default) for f in fields(cls)}
        kept: dict[str, object] = {}
        for name, value in values.items():
            if name not in known:
                continue
            kind = known[name]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (isinstance(value, kind) and (kind is bool or not isinstance(value, bool)) or (kind is float and number)):
                raise UserError(f"config field {name}={value!r} should be of type {kind.__name__}")
            kept[name] = float(value) if kind is float else value  # type: ignore[arg-type]
        return (base or cls()).replace(**kept)


RUN_SETTINGS = ("bf16", "workers", "aug_group", "data_on_device")
ADDED_LATER = {"stroke": 0.0, "redraw": 0.0, "elastic": 0.0}  # hyperparameters added after runs existed -> the value those runs trained with

# The reference CNN's recipe, the default until `poolres` made fewer OOF errors on each of three paired splits
# (docs/training.md); lr and dropout from a full-data `tune`. Old checkpoints that lack a field predate it and
# trained with this recipe's value.
REFERENCE_RECIPE = TrainConfig(arch="reference", epochs=15, lr=4.48e-3, dropout=0.165, shift=0.08)
# The original notebook's settings: Adam 1e-3 without weight decay or label smoothing, batch 64, rotation 15 deg only,
# patience 10, up to 100 epochs, fp32.
SEED_RECIPE = REFERENCE_RECIPE.replace(
    epochs=100, patience=10, lr=1e-3, schedule="constant", batch_size=64, weight_decay=0.0, label_smoothing=0.0,
    rotate=15.0, shift=0.0, scale=0.0, shear=0.0, bf16=False,
)
# The other architectures' recipes, named after them (`cv --arch NAME` takes the recipe NAME): batch norm tolerates
# a higher peak rate, and their dropout sits where the architectures' authors put it. Not tuned on the full data;
# resnet's 25 epochs beat 15 and its smoothing beat none on paired 5-fold runs (docs/training.md, architectures);
# bncnn was measured without smoothing only, so it keeps plain cross-entropy.
BNCNN_RECIPE = REFERENCE_RECIPE.replace(arch="bncnn", lr=3e-3, dropout=0.4, label_smoothing=0.0, shift=0.1)
RESNET_RECIPE = TrainConfig(arch="resnet", epochs=25)
# For a run that backs the page: half the training images redrawn with one pen, as a sketchpad draws; measured with
# the reference CNN, it reads drawings better and scans worse (docs/training.md, redrawn strokes).
DRAWN_RECIPE = REFERENCE_RECIPE.replace(redraw=0.5)
# Nearest neighbours learn nothing by gradient and see the training digits as they are: no epochs, augmentation,
# dropout or smoothing, so the run's config says what it did (docs/training.md, nearest neighbours).
KNN_RECIPE = TrainConfig(arch="knn", epochs=1, dropout=0.0, weight_decay=0.0, label_smoothing=0.0, rotate=0.0, shift=0.0,
                         scale=0.0, shear=0.0)
# The default is poolres's recipe (`resnet`'s, with the epochs that keep a 5-fold `cv` near 20 minutes on 2 cores).
RECIPES: dict[str, TrainConfig] = {"default": TrainConfig(), "reference": REFERENCE_RECIPE, "seed": SEED_RECIPE,
                                   "bncnn": BNCNN_RECIPE, "resnet": RESNET_RECIPE, "drawn": DRAWN_RECIPE, "knn": KNN_RECIPE}


@cache
def field_help() -> dict[str, str]:
    """Each field's comment in the class above: the CLI's help text, so the two cannot disagree."""
    source = inspect.getsource(TrainConfig)
    return dict(re.findall(r"^    (\w+): [^=]+= .*?  # (.+)$", source, flags=re.MULTILINE))


def load_params(path: Path) -> tuple[dict[str, object], str]:
    """(hyperparameters, the data they were tuned on) from a `tune` result (best_params.json)."""
    try:
        saved = json.loads(path.read_text())
        params, data = saved["params"], str(saved.get("data", ""))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such parameters file (`tune` writes one)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a tuned-parameters file ({exc})") from exc
    if not isinstance(params, dict):
        raise UserError(f"{path}: 'params' is not an object")
    unknown = set(params) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise UserError(f"{path}: unknown parameters {sorted(unknown)}")
    return dict(params), data


def resolve(*, recipe: str | None = None, params: Path | None = None, flags: dict[str, object] | None = None,
            data: str | Path | None = None) -> tuple[TrainConfig, list[str]]:
    """The run's configuration and the notes to show about it: the recipe, then `params` (a `tune` result), then
    explicit flags (type-checked: they may come from a file, as a plan's do), each overriding the one before.
    Without a recipe, an `arch` flag picks the recipe of that name (the architecture's own defaults), else
    "default". `data` (the training data) only decides a warning."""
    from .data import is_sample

    flags = dict(flags or {})
    if recipe is None:
        recipe = str(flags["arch"]) if flags.get("arch") in RECIPES else "default"
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    config, notes = RECIPES[recipe], []
    if params is not None:
        tuned, tuned_on = load_params(params)
        try:
            config = config.replace(**typed(tuned))
        except UserError as exc:
            raise UserError(f"{params}: {exc}") from exc
        notes.append(f"parameters from {params}: {tuned}" + (f" (tuned on {tuned_on})" if tuned_on else ""))
        if tuned_on and is_sample(tuned_on) and data is not None and not is_sample(data):
            notes.append(f"warning: {params} was tuned on the bundled sample, not on {data}; "
                         f"parameters tuned on the sample did not transfer to the full data (docs/tuning.md)")
    config = config.replace(**typed(flags))
    return config.validate(), notes


def typed(values: dict[str, object]) -> dict[str, object]:
    """`values` (field -> value, from a file or the command line) with their types checked as `from_dict` does."""
    checked = TrainConfig.from_dict(values)
    return {name: getattr(checked, name) for name in values}
