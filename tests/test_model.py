"""The reference CNN, its checkpoints, and the one loader (including the notebook's bare state dict)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLE
from torch.nn import functional as F

from competition.checkpoint import load_checkpoint, save_checkpoint
from competition.config import RECIPES, TrainConfig
from competition.data import read_train
from competition.ensemble import Ensemble
from competition.errors import UserError
from competition.infer import TTA_ROTATIONS, autocast_dtype, precision_name, predict_proba, rotate, to_input
from competition.metrics import log_loss
from competition.model import ARCHS, NORMALIZE, NearestNeighbours, ReferenceCNN, build_model, deskew

REFERENCE = RECIPES["reference"]  # the recipe that trains ReferenceCNN
NOTEBOOK_KEYS = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias",
                 "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_shapes_and_state_dict_keys() -> None:
    model = ReferenceCNN()
    assert set(model.state_dict()) == NOTEBOOK_KEYS
    assert model.fc1.in_features == 128 * 7 * 7
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_channels_last_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    model = ReferenceCNN().eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    got = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def notebook_order_forward(model: ReferenceCNN, x: torch.Tensor) -> torch.Tensor:
    """The original notebook's forward, op for op: conv -> relu -> pool (flattened with reshape, as channels_last needs)."""
    x = F.max_pool2d(F.relu(model.conv1(x)), 2)
    x = F.relu(model.conv2(x))
    x = F.max_pool2d(F.relu(model.conv3(x)), 2)
    x = x.reshape(x.shape[0], -1)
    return model.fc2(model.dropout(F.relu(model.fc1(x))))


def test_forward_and_gradients_equal_the_notebooks_op_order() -> None:
    torch.manual_seed(2)
    model = ReferenceCNN().eval()
    x = torch.randn(6, 1, 28, 28)
    y = torch.randint(0, 10, (6,))
    grads = []
    for forward in (model, lambda t: notebook_order_forward(model, t)):
        model.zero_grad()
        logits = forward(x)
        F.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (ours, our_grads), (theirs, their_grads) = grads
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for a, b in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_only_where_the_cpu_computes_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    # emulated bf16 is many times slower than fp32: fp32 there, whatever bf16=True asks
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    cpu = torch.device("cpu")
    assert (autocast_dtype(cpu) == torch.bfloat16) is native and autocast_dtype(cpu, allowed=False) is None
    torch.manual_seed(3)
    model = ReferenceCNN().eval()
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    fp32 = predict_proba(model, images, NORMALIZE, device=cpu, bf16=False)
    asked = predict_proba(model, images, NORMALIZE, device=cpu, bf16=True)
    assert np.array_equal(asked, fp32) is not native  # bf16 rounding changes the probabilities


@pytest.mark.parametrize(("capability", "expected"), [
    ((9, 0), torch.bfloat16),  # H100 / H200
    ((8, 0), torch.bfloat16),  # A100
    ((7, 5), torch.float16),  # T4 (Kaggle Notebooks)
    ((7, 0), torch.float16),  # V100
    ((6, 0), torch.float16),  # P100 (Kaggle Notebooks)
    ((5, 2), None),  # Maxwell: no fast half precision
])
def test_precision_by_gpu_generation(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int],
                                     expected: torch.dtype | None) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype(torch.device("cuda")) == expected
    assert autocast_dtype(torch.device("cuda"), allowed=False) is None
    assert precision_name(expected) == {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast, loss scaling",
                                        None: "fp32"}[expected]


def test_normalisation_matches_the_notebook() -> None:
    images = torch.tensor([[[0, 255] * 14] * 28], dtype=torch.uint8)
    x = to_input(images, NORMALIZE, torch.device("cpu"))
    assert x.shape == (1, 1, 28, 28)
    assert x.min().item() == -1.0 and x.max().item() == 1.0


@pytest.mark.parametrize("prefix", ["", "module."])
def test_notebook_state_dict_loads_and_predicts_the_same(tmp_path: Path, prefix: str) -> None:
    torch.manual_seed(1)
    notebook = ReferenceCNN().eval()
    path = tmp_path / "mnist_cnn.pth"
    torch.save({prefix + k: v for k, v in notebook.state_dict().items()}, path)
    loaded = load_checkpoint(path)
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    x = (torch.from_numpy(images).float().unsqueeze(1) / 255 - 0.5) / 0.5
    expected = torch.softmax(notebook(x), 1).detach().numpy()
    got = predict_proba(loaded.model, images, loaded.normalize, bf16=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert loaded.normalize == {"mean": 0.5, "std": 0.5} and loaded.fold is None


def test_checkpoint_round_trip_describes_itself(tmp_path: Path) -> None:
    model = ReferenceCNN(dropout=0.3)
    config = REFERENCE.replace(dropout=0.3, lr=1e-3)
    path = tmp_path / "fold2.pt"
    save_checkpoint(path, model, config, fold=2, metrics={"val_acc": 0.99}, extra={"history": [{"epoch": 1}]})
    loaded = load_checkpoint(path)
    assert loaded.config == config and loaded.fold == 2 and loaded.metrics == {"val_acc": 0.99}
    assert loaded.extra["history"] == [{"epoch": 1}] and "torch" in loaded.extra["versions"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left nothing behind


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran on load",))


def test_loader_never_runs_code_and_rejects_junk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Exploit()}, evil)
    with pytest.raises(UserError, match="not a loadable PyTorch checkpoint .it pickles print, not only tensors"):
        load_checkpoint(evil)
    assert "code ran on load" not in capsys.readouterr().out
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps("hello", protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refusal is the one line below, without torch's warning beside it
        with pytest.raises(UserError, match="junk.pt: not a loadable PyTorch checkpoint"):
            load_checkpoint(junk)
    junk.write_bytes(b"x")
    with pytest.raises(UserError, match=r"junk.pt: not a loadable PyTorch checkpoint \(not a file of tensors that torch.save wrote\)$"):
        load_checkpoint(junk)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="do not fit"):
        load_checkpoint(wrong)
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rotate_turns_anticlockwise_about_the_centre() -> None:
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert np.array_equal(rotate(images, 0.0), images)
    assert np.array_equal(rotate(images, 90.0), np.rot90(images, 1, axes=(1, 2)))  # exact: pixels land on pixels
    assert rotate(images[:0], 6.0).shape == (0, 28, 28)


def test_tta_averages_the_image_and_its_rotations() -> None:
    torch.manual_seed(5)
    model = ReferenceCNN().eval()
    images = np.random.default_rng(5).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    views = [images] + [rotate(images, d) for d in TTA_ROTATIONS]
    expected = np.mean([predict_proba(model, v, NORMALIZE, bf16=False) for v in views], axis=0)
    got = predict_proba(model, images, NORMALIZE, bf16=False, tta=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.allclose(got, predict_proba(model, images, NORMALIZE, bf16=False))


@pytest.mark.parametrize("tta", [False, True])
def test_the_ensemble_predicts_as_the_checkpoint_says(tmp_path: Path, tta: bool) -> None:
    # OOF accuracy is measured with the config's tta; submit, evaluate, predict and the demo must match it
    torch.manual_seed(6)
    model = ReferenceCNN().eval()
    save_checkpoint(tmp_path / "fold1.pt", model, REFERENCE.replace(tta=tta, bf16=False), fold=1, metrics={}, extra={})
    images = np.random.default_rng(6).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = predict_proba(model, images, NORMALIZE, bf16=False, tta=tta)
    np.testing.assert_allclose(Ensemble.load(tmp_path).predict_proba(images), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_log_loss_is_torchs_cross_entropy_with_the_same_label_smoothing(smoothing: float) -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(50, 10), torch.randint(0, 10, (50,))  # no probability under log_loss's 1e-7 floor
    expected = F.cross_entropy(logits, labels, label_smoothing=smoothing).item()
    got = log_loss(logits.softmax(1).numpy(), labels.numpy(), smoothing=smoothing)
    assert got == pytest.approx(expected, rel=1e-5)


def _saved(tmp_path: Path, **changes: object) -> Path:
    """A checkpoint of an untrained CNN, its payload changed as given (None removes the key)."""
    torch.manual_seed(7)
    path = tmp_path / "fold1.pt"
    save_checkpoint(path, ReferenceCNN(), REFERENCE, fold=1, metrics={}, extra={})
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


def _with_nan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    state["fc2.bias"] = torch.full_like(state["fc2.bias"], float("nan"))
    return state


@pytest.mark.parametrize(("change", "message"), [
    ("nan weights", "weights hold NaN or infinity (fc2.bias): a diverged run cannot predict"),
    ("std 0", "normalize has mean 0.5 and std 0: needs finite numbers and std > 0"),
    ("no normalize", "lacks normalize"),
    ("unknown arch", "invalid arch='resnet9000'; known: reference, bncnn, resnet, poolres, poolres-wide, knn"),
    ("mistyped field", "config field epochs='ten' should be of type int"),
    ("config not a dict", "config is a list, not a dict"),
    ("state not tensors", "state_dict is not a dict of tensors"),
])
def test_a_checkpoint_that_cannot_predict_is_one_line_naming_the_file(tmp_path: Path, change: str, message: str) -> None:
    good = torch.load(_saved(tmp_path), weights_only=True)
    changes: dict[str, object] = {
        "nan weights": {"state_dict": _with_nan(good["state_dict"])},
        "std 0": {"normalize": {"mean": 0.5, "std": 0}},
        "no normalize": {"normalize": None},
        "unknown arch": {"config": {**good["config"], "arch": "resnet9000"}},
        "mistyped field": {"config": {**good["config"], "epochs": "ten"}},
        "config not a dict": {"config": [1, 2]},
        "state not tensors": {"state_dict": {"conv1.weight": "abc"}},
    }[change]
    path = _saved(tmp_path, **changes)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_nan_checkpoint_is_refused_by_submit_predict_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from canvas import render
    from PIL import Image

    from competition.cli import main

    good = torch.load(_saved(tmp_path), weights_only=True)
    path = _saved(tmp_path, state_dict=_with_nan(good["state_dict"]))
    drawing = tmp_path / "one.png"
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 13:15] = 255
    Image.fromarray(render(digit)).save(drawing)
    for args in (["submit", "--data", str(SAMPLE), "--out", str(tmp_path / "sub.csv")], ["predict", "--json", str(drawing)],
                 ["evaluate", "--data", str(SAMPLE), "--json"]):
        assert main([*args, "--models", str(path)]) == 1
        said = capsys.readouterr()
        assert said.out == "", said.out
        assert said.err.strip().splitlines()[-1] == f"error: {path}: weights hold NaN or infinity (fc2.bias): a diverged run cannot predict"
    assert not (tmp_path / "sub.csv").exists()


def test_non_finite_probabilities_are_an_error_never_a_label(tmp_path: Path) -> None:
    """Finite weights can still overflow: the ensemble refuses rather than writing label 0."""
    model = ReferenceCNN()
    with torch.no_grad():
        model.fc2.weight.fill_(3e38)
    save_checkpoint(tmp_path / "fold1.pt", model, REFERENCE.replace(bf16=False), fold=1, metrics={}, extra={})
    images = np.full((3, 28, 28), 255, np.uint8)
    with pytest.raises(UserError, match="fold1.pt: predicts NaN or infinite probabilities"):
        Ensemble.load(tmp_path).predict_proba(images)


def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    path = tmp_path / "fold1.pt"
    with pytest.raises(UserError, match=r"fold1.pt: cannot write the checkpoint \(.*file write failed\); is the disk full\?"):
        save_checkpoint(path, ReferenceCNN(), REFERENCE, fold=1, metrics={}, extra={})
    assert list(tmp_path.iterdir()) == []


NETWORKS = sorted(arch for arch, kind in ARCHS.items() if kind is not NearestNeighbours)  # what gradients train


@pytest.mark.parametrize("arch", NETWORKS)
@pytest.mark.parametrize("bf16", [False, True])
def test_every_architecture_trains_a_step_on_cpu_in_fp32_and_bf16_channels_last(arch: str, bf16: bool) -> None:
    torch.manual_seed(8)
    model = build_model(arch, dropout=0.3).to(memory_format=torch.channels_last).train()
    x = torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    assert logits.shape == (4, 10)
    F.cross_entropy(logits.float(), torch.arange(4)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_reloads_from_its_checkpoint_to_identical_outputs(tmp_path: Path, arch: str) -> None:
    torch.manual_seed(9)
    model = build_model(arch, dropout=0.3)
    if isinstance(model, NearestNeighbours):
        model.memorize(torch.randn(50, 1, 28, 28), torch.arange(50) % 10)
    else:
        model.train()(torch.randn(16, 1, 28, 28))  # moves batch-norm running statistics away from their initial values
    model.eval()
    path = tmp_path / "fold1.pt"
    save_checkpoint(path, model, TrainConfig(arch=arch, dropout=0.3), fold=1, metrics={}, extra={})
    loaded = load_checkpoint(path)
    assert type(loaded.model) is type(model) and loaded.config.arch == arch
    images = np.random.default_rng(9).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(predict_proba(loaded.model, images, NORMALIZE, bf16=False),
                                  predict_proba(model, images, NORMALIZE, bf16=False))


def test_deskew_stands_a_slanted_stroke_upright_and_centres_it_whatever_the_pixel_scale() -> None:
    image = np.zeros((28, 28), np.float32)
    for row in range(4, 24):  # a stroke leaning right by half a column per row, left of centre
        image[row, 4 + row // 2] = 1.0
    upright = deskew(torch.from_numpy(image)[None, None])[0, 0].numpy()
    ink_cols = [np.average(np.arange(28), weights=line) for line in upright if line.sum() > 0.5]
    assert np.ptp(ink_cols) < 1.5 and abs(np.mean(ink_cols) - 13.5) < 1  # vertical, in the middle
    normalised = (torch.from_numpy(image)[None, None] - 0.5) / 0.5  # as the models receive it
    np.testing.assert_allclose(deskew(normalised)[0, 0].numpy(), 2 * upright, atol=1e-5)


def test_nearest_neighbours_read_a_kept_digit_as_its_label_in_fp32_and_bf16() -> None:
    digits = read_train(SAMPLE)
    assert digits.labels is not None
    x = to_input(torch.from_numpy(digits.images[:300]), NORMALIZE, torch.device("cpu"))
    model = NearestNeighbours()
    model.memorize(x, torch.from_numpy(digits.labels[:300]))
    components = model.basis.shape[0]
    assert components in model.COMPONENTS and int(model.k) in model.KS and not list(model.parameters())
    assert model.points.shape == (300, components) and model.basis.shape == (components, 784)
    kept = predict_proba(model, digits.images[:300], NORMALIZE, bf16=False)
    assert (kept.argmax(1) == digits.labels[:300]).all() and kept.max(1).min() > 0.99  # each is its own nearest
    np.testing.assert_allclose(predict_proba(model, digits.images[300:400], NORMALIZE, bf16=True),
                               predict_proba(model, digits.images[300:400], NORMALIZE, bf16=False), atol=1e-6)


def test_nearest_neighbours_choose_more_voters_when_labels_are_noisy_and_load_checkpoints_from_before_the_choice() -> None:
    digits = read_train(SAMPLE)
    assert digits.labels is not None
    rows = np.flatnonzero(np.isin(digits.labels, [0, 1]))[:400]  # two classes that never look alike
    x = to_input(torch.from_numpy(digits.images[rows]), NORMALIZE, torch.device("cpu"))
    labels = torch.from_numpy(digits.labels[rows]).long()
    clean = NearestNeighbours()
    clean.memorize(x, labels)
    assert int(clean.k) == 1 and clean.basis.shape[0] == 40  # every setting reads them all: the least is kept
    flipped = torch.from_numpy(np.random.default_rng(0).random(len(rows)) < 0.15)
    noisy = NearestNeighbours()
    noisy.memorize(x, torch.where(flipped, 1 - labels, labels))
    assert int(noisy.k) >= 3  # one neighbour copies its label's noise; a majority outvotes it
    before = {name: value for name, value in noisy.state_dict().items() if name != "k"}  # k 6 then, not kept
    loaded = NearestNeighbours()
    loaded.load_state_dict(before)
    assert int(loaded.k) == 6 and torch.equal(loaded.points, noisy.points)


def test_an_architecture_flag_takes_that_architectures_recipe() -> None:
    from competition.config import RECIPES, resolve

    assert resolve(flags={"arch": "bncnn"})[0] == RECIPES["bncnn"]
    assert resolve(flags={"arch": "bncnn", "lr": 0.01})[0].lr == 0.01
    assert resolve(recipe="seed", flags={"arch": "resnet"})[0] == RECIPES["seed"].replace(arch="resnet")
    assert resolve(flags={"arch": "reference"})[0] == RECIPES["reference"] and RECIPES["reference"].arch == "reference"
    assert resolve()[0] == TrainConfig() == RECIPES["default"] and TrainConfig().arch == "poolres"
    with pytest.raises(UserError, match="invalid arch='vgg'"):
        resolve(flags={"arch": "vgg"})


def test_a_checkpoint_from_before_a_field_takes_the_reference_recipes_value(tmp_path: Path) -> None:
    """Checkpoints that lack a field predate it, when the reference CNN's recipe was the default."""
    path = tmp_path / "fold1.pt"
    save_checkpoint(path, ReferenceCNN(), REFERENCE.replace(lr=1e-3), fold=1, metrics={}, extra={})
    payload = torch.load(path, weights_only=True)
    for field in ("arch", "epochs", "dropout", "shift"):
        del payload["config"][field]
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert type(loaded.model) is ReferenceCNN and loaded.config == REFERENCE.replace(lr=1e-3)


def test_a_float16_step_scales_the_loss_and_updates_the_weights() -> None:
    """The fp16 path of older GPUs, run with CPU autocast: the scaler scales the loss and unscales before the step."""
    from competition.train import train_one_epoch

    torch.manual_seed(10)
    model = ReferenceCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    batches = [(torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8), torch.arange(8) % 10)]
    before = model.fc2.weight.detach().clone()
    loss, seen = train_one_epoch(model, batches, optimizer, None, device=torch.device("cpu"), dtype=torch.float16,
                                 scaler=scaler, label_smoothing=0.0)
    assert seen == 8 and np.isfinite(loss) and scaler.get_scale() > 1
    assert not torch.equal(model.fc2.weight, before)
