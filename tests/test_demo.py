"""`predict` on files, the demo through gradio_client, and the page in a real browser."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import CHROMIUM, clear, draw, page, wait_for_answer
from canvas import render
from conftest import ROOT, SAMPLE, run_cli
from PIL import Image
from torch import nn

from competition.data import read_train

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def canvases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """Clear drawings of sample digits, as files: name -> (path, true label)."""
    data = read_train(SAMPLE)
    assert data.labels is not None
    folder = tmp_path_factory.mktemp("canvases")
    out = {}
    for digit, style in ((0, "black-on-white"), (1, "white-on-black"), (7, "black-on-transparent"), (3, "black-on-white")):
        row = int(np.flatnonzero(data.labels == digit)[2])
        path = folder / f"digit{digit}.png"
        Image.fromarray(render(data.images[row], height=0.6, pen=24, style=style)).save(path)
        out[f"digit{digit}"] = (path, digit)
    number = np.full((300, 1200, 3), 255, np.uint8)
    for slot, digit in enumerate((2, 0, 2, 5)):
        row = int(np.flatnonzero(data.labels == digit)[0])
        number[:, slot * 300:(slot + 1) * 300] = render(data.images[row], side=300, height=0.6, pen=12)
    Image.fromarray(number).save(folder / "number.png")
    out["number"] = (folder / "number.png", 2025)
    Image.fromarray(np.full((400, 400, 3), 255, np.uint8)).save(folder / "blank.png")
    out["blank"] = (folder / "blank.png", -1)
    return out


def test_predict_cli_json_lines(small_run: Path, canvases: dict[str, tuple[Path, int]]) -> None:
    files = [canvases[name][0] for name in ("digit0", "digit1", "digit7", "digit3", "number", "blank")]
    proc = run_cli("predict", "--models", str(small_run), "--json", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    assert len(lines) == len(files)
    for line, path in zip(lines, files):
        assert {"file", "label", "top", "number"} <= set(line) and line["file"] == str(path)
    for line, digit in zip(lines[:4], (0, 1, 7, 3)):
        assert line["label"] == digit and line["number"] == str(digit)
        assert len(line["top"]) == 3 and set(line["top"][0]) == {"label", "prob"}
        assert line["top"][0]["label"] == digit and line["top"][0]["prob"] >= line["top"][1]["prob"]
    assert lines[4]["number"] == "2025" and len(lines[4]["digits"]) == 4
    assert lines[5]["label"] is None and lines[5]["number"] == "" and lines[5]["top"] == []


def test_predict_cli_bad_files_fail_one_by_one(small_run: Path, canvases: dict[str, tuple[Path, int]], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "zero.png").write_bytes(b"")
    good = canvases["digit1"][0]
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    proc = run_cli("predict", "--models", str(small_run), "--json", str(tmp_path / "notes.txt"), str(good),
                   str(tmp_path / "zero.png"), str(tmp_path / "cut.png"), str(tmp_path / "missing.png"))
    assert proc.returncode == 1
    assert [json.loads(line)["label"] for line in proc.stdout.strip().splitlines()] == [1]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and "Traceback" not in proc.stderr  # 4 files + the summary line
    assert any("notes.txt: not a readable image" in e for e in errors)
    assert any("zero.png: empty file" in e for e in errors)


def test_python_api_reads_arrays(small_run: Path, canvases: dict[str, tuple[Path, int]]) -> None:
    from competition import Ensemble, preprocess, recognize

    ensemble = Ensemble.load(small_run)
    reading = recognize(np.asarray(Image.open(canvases["digit7"][0])), ensemble)
    assert reading.number == "7" and reading.main is not None and reading.main.agree >= 1
    assert preprocess(canvases["digit7"][0]).shape == (28, 28)


class Constant(nn.Module):
    """A "network" that answers `label` with probability `top` whatever it is shown, the rest spread evenly."""

    def __init__(self, label: int, top: float) -> None:
        super().__init__()
        probs = torch.full((10,), (1 - top) / 9)
        probs[label] = top
        self.logits = nn.Parameter(probs.log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), 10)


@pytest.mark.parametrize("margin", [-0.02, 0.02])
def test_a_digit_is_marked_unsure_exactly_below_the_threshold(margin: float) -> None:
    from competition import Ensemble, recognize
    from competition.checkpoint import Checkpoint
    from competition.config import TrainConfig
    from competition.model import NORMALIZE
    from competition.recognize import UNSURE_BELOW

    members = [Checkpoint(model=Constant(3, UNSURE_BELOW + margin), config=TrainConfig(bf16=False), normalize=NORMALIZE,
                          path=Path(f"constant{k}")) for k in range(2)]
    image = render(read_train(SAMPLE).images[0], height=0.6, pen=24)
    main = recognize(image, Ensemble(members=members, source=Path("constant"))).main
    assert main is not None and main.label == 3 and main.agree == 2
    assert main.top[0][1] == pytest.approx(UNSURE_BELOW + margin, abs=1e-4)
    assert main.unsure is (margin < 0)


def test_app_answers_through_gradio_client(demo_server: str, canvases: dict[str, tuple[Path, int]], tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    path, digit = canvases["digit3"]
    layer = np.zeros((800, 800, 4), np.uint8)
    layer[..., 3] = 255 - np.asarray(Image.open(path).convert("L"))  # the strokes as Gradio's layer holds them
    Image.fromarray(layer).save(tmp_path / "layer.png")
    dark_bg = np.zeros((800, 800, 4), np.uint8)
    dark_bg[:] = (0x33, 0x33, 0x33, 255)  # dark theme canvas
    Image.fromarray(dark_bg).save(tmp_path / "bg.png")
    client = Client(demo_server, verbose=False)
    value = {"background": handle_file(str(tmp_path / "bg.png")), "layers": [handle_file(str(tmp_path / "layer.png"))],
             "composite": handle_file(str(tmp_path / "bg.png"))}
    shown, detail, reading = client.predict(value, api_name="/predict")
    assert f'<div class="number">{digit}' in shown and "models agree" in detail and "data:image/png;base64," in detail
    assert reading["number"] == str(digit) and reading["top"][0]["label"] == digit  # what `predict --json` prints


def test_the_demo_refuses_to_read_files_a_client_names(demo_server: str, tmp_path: Path) -> None:
    """A sketchpad value naming a server-side file (a raw API call, as a remote client sends it: gradio_client
    would upload a local file first) is refused before Gradio reads or caches the file."""
    import glob
    import urllib.error
    import urllib.request

    secret = tmp_path / "secret.png"
    Image.fromarray(np.random.default_rng().integers(0, 256, (28, 28), dtype=np.uint8)).save(secret)  # unlike any other file
    marker = secret.read_bytes()
    for path in (str(secret), "/etc/passwd", "http://127.0.0.1:9/x.png", f"{tempfile.gettempdir()}/gradio/../../etc/passwd"):
        named = {"path": path, "meta": {"_type": "gradio.FileData"}}
        body = json.dumps({"data": [{"background": named, "layers": [named], "composite": named}]}).encode()
        request = urllib.request.Request(f"{demo_server}gradio_api/call/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == 400 and b"only files uploaded to this server" in info.value.read()
    cached = [p for p in glob.glob(f"{tempfile.gettempdir()}/gradio/**/*", recursive=True) if Path(p).is_file()]
    assert not any(Path(p).read_bytes() == marker for p in cached) and not any(p.endswith("passwd") for p in cached)


# The toolbar's clear with the page's brush re-selection switched off: the sketchpad is left with no tool, as it is
# for the moment between a clear and the deferred re-selection.
CLEAR_LEAVING_NO_TOOL = """() => {
  window.selectBrush = () => {};
  document.querySelector('#sketchpad button[aria-label="Clear canvas"]').click();
}"""
BRUSH_UNSELECTED = """() => !document.querySelector('#sketchpad button[aria-label="Brush"]').classList.contains('highlight')"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_drawing_clearing_and_drawing_again_in_a_real_browser(demo_server: str) -> None:
    """Draw, clear (the page's button or the toolbar's), wait, draw another: the new digit is read every time, even
    when the stroke begins before the brush is selected again."""
    ARTIFACTS.mkdir(exist_ok=True)
    seen, expected = [], []

    def read(name: str, digits: str) -> None:
        seen.append((name, wait_for_answer(tab, digits)))
        expected.append((name, digits))

    with page(demo_server) as tab:
        draw(tab, [1])
        read("first", "1")
        # no wait and a long one after each kind of clear (the benchmark's page part does 20 random waits)
        for cycle, (toolbar, delay) in enumerate(((False, 0.0), (False, 3.0), (True, 0.0), (True, 1.0))):
            clear(tab, toolbar=toolbar)
            tab.wait_for_timeout(delay * 1000)
            digit = (7, 1)[cycle % 2]
            draw(tab, [digit])
            read(f"{'toolbar' if toolbar else 'button'} clear, {delay} s", str(digit))
            if cycle == 0:
                tab.screenshot(path=str(ARTIFACTS / "demo-after-clear.png"))
        tab.evaluate(CLEAR_LEAVING_NO_TOOL)
        tab.wait_for_function(BRUSH_UNSELECTED, timeout=10_000)
        draw(tab, [7])
        read("a stroke begun with no tool selected", "7")
        clear(tab, toolbar=False)
        draw(tab, [1, 7])
        read("two digits", "17")
        tab.screenshot(path=str(ARTIFACTS / "demo-17.png"))
        assert tab.locator("#detail img").count() == 2  # what the models saw, per digit
    assert seen == expected


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_on_a_phone_shows_canvas_then_answer_without_scrolling(demo_server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with page(demo_server, width=390, height=844) as tab:
        draw(tab, [7])
        assert wait_for_answer(tab, "7") == "7"
        tab.screenshot(path=str(ARTIFACTS / "demo-phone.png"))
        pad = tab.locator("#sketchpad").bounding_box()
        shown = tab.locator("#answer").bounding_box()
        assert pad is not None and shown is not None
        assert shown["y"] + shown["height"] <= 844 and pad["x"] + pad["width"] <= 390  # both within the first screen
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone


def test_demo_without_models_is_a_clear_message(tmp_path: Path) -> None:
    proc = run_cli("demo", cwd=tmp_path)
    assert proc.returncode == 1 and "no trained models under models/" in proc.stderr


def test_demo_on_a_taken_or_impossible_port_is_a_clear_message(small_run: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("demo", "--models", str(small_run), "--port", str(port), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in proc.stderr and "choose another with --port" in proc.stderr
    proc = run_cli("demo", "--models", str(small_run), "--port", "70000")
    assert proc.returncode == 2 and "a port is 1..65535" in proc.stderr


