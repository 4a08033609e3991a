"""The reference CNN, its checkpoints, and the one loader (including the notebook's bare state dict)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from competition.bench import host, notebook_order_forward
from competition.checkpoint import NOTEBOOK_NORM, load_checkpoint, save_checkpoint
from competition.config import TrainConfig
from competition.ensemble import Ensemble
from competition.errors import UserError
from competition.infer import TTA_ROTATIONS, bf16_helps, log_loss, predict_proba, rotate, to_input
from competition.model import ReferenceCNN

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


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo (Linux)")
def test_bench_names_the_cpu_that_measured_it() -> None:
    # figures from a 2-core AVX2 EPYC and a 2-core AVX512-BF16 one differ up to 6x: every bench file says which
    info = host()
    assert str(info["cpu_family"]).isdigit() and info["cpus"] == os.cpu_count()
    assert ("avx512_bf16" in info["isa"]) is torch.cpu._is_avx512_bf16_supported()
    assert ("avx512f" in info["isa"]) is (torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX"))


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_only_where_the_cpu_computes_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    # emulated bf16 ran 15x slower than fp32 on an AVX2-only CPU: fp32 there, whatever bf16=True asks
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    cpu = torch.device("cpu")
    assert bf16_helps(cpu) is native
    torch.manual_seed(3)
    model = ReferenceCNN().eval()
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    fp32 = predict_proba(model, images, NOTEBOOK_NORM, device=cpu, bf16=False)
    asked = predict_proba(model, images, NOTEBOOK_NORM, device=cpu, bf16=True)
    assert np.array_equal(asked, fp32) is not native  # bf16 rounding changes the probabilities


def test_normalisation_matches_the_notebook() -> None:
    images = torch.tensor([[[0, 255] * 14] * 28], dtype=torch.uint8)
    x = to_input(images, NOTEBOOK_NORM, torch.device("cpu"))
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
    config = TrainConfig(dropout=0.3, lr=1e-3)
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
    with pytest.raises(UserError, match="not a loadable PyTorch checkpoint"):
        load_checkpoint(evil)
    assert "code ran on load" not in capsys.readouterr().out
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps("hello"))
    with pytest.raises(UserError):
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
    expected = np.mean([predict_proba(model, v, NOTEBOOK_NORM, bf16=False) for v in views], axis=0)
    got = predict_proba(model, images, NOTEBOOK_NORM, bf16=False, tta=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.allclose(got, predict_proba(model, images, NOTEBOOK_NORM, bf16=False))


@pytest.mark.parametrize("tta", [False, True])
def test_the_ensemble_predicts_as_the_checkpoint_says(tmp_path: Path, tta: bool) -> None:
    # OOF accuracy is measured with the config's tta; submit, evaluate, predict and the demo must match it
    torch.manual_seed(6)
    model = ReferenceCNN().eval()
    save_checkpoint(tmp_path / "fold1.pt", model, TrainConfig(tta=tta, bf16=False), fold=1, metrics={}, extra={})
    images = np.random.default_rng(6).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = predict_proba(model, images, NOTEBOOK_NORM, bf16=False, tta=tta)
    np.testing.assert_allclose(Ensemble.load(tmp_path).predict_proba(images), expected, rtol=1e-5, atol=1e-7)
    overridden = predict_proba(model, images, NOTEBOOK_NORM, bf16=False, tta=not tta)  # bench compares both ways
    np.testing.assert_allclose(Ensemble.load(tmp_path).member_probs(images, tta=not tta)[0], overridden, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_log_loss_is_torchs_cross_entropy_with_the_same_label_smoothing(smoothing: float) -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(50, 10), torch.randint(0, 10, (50,))  # no probability under log_loss's 1e-7 floor
    expected = F.cross_entropy(logits, labels, label_smoothing=smoothing).item()
    got = log_loss(logits.softmax(1).numpy(), labels.numpy(), smoothing=smoothing)
    assert got == pytest.approx(expected, rel=1e-5)
