"""`make bench DATA=...`: the figures of docs/benchmarks.md, measured as a user runs them (CLI subprocesses, wall clock).

python benchmarks/bench.py --data ../shared/data/digit-recognizer [--part PART] [--work bench]; PART is one of:
  cv    `cv` with the default recipe on the given train file (K folds): OOF accuracy, wall time, images/s per
        fold, peak memory (largest process RSS); then `submit` on a 28,000-row test file (Kaggle's size);
  tta   every finished cv run in --work on this train file, with and without test-time augmentation: OOF
        accuracy (each row predicted by the model that never saw it), inference time on 28,000 rows, and the
        errors of fold 1's model on sketchpad-like canvases of 1,000 of its validation rows (`arch`'s rows);
  step  one training step (forward, backward, fused Adam) on random data, images/s: the reference CNN in fp32 and
        bf16 autocast, batch 128 and 256; every architecture at batch 128; then the reference CNN in fp32 at batch
        128, eager vs torch.compile, 3 pairs;
  arch  fold 1 of K of every architecture's own recipe (seed 42, split 42) and of the reference CNN with seed 43
        on the given train file: the validation errors and log loss of each and of every equal-weight blend of them,
        and their accuracy on sketchpad-like canvases of 1,000 of the fold's validation rows (the demo's path);
  plan  `best` with a plan (--plan, default the shipped competition/best.json) into WORK/arch, reusing the folds
        `arch` trained there: each run's and the blend's OOF errors and log loss, in all and per fold, fold times;
        with test-time augmentation (each run, and the blend with the same weights); and the equal-weight blend of
        every subset of two or more runs, picked by the selection or not;
  folds runs (--runs, finished or not) of one fold split compared fold by fold on the folds all of them have: each
        run's errors, log loss, best epoch and speed per fold, and the equal-weight blend of every subset, from the
        fold checkpoints' OOF predictions (no training);
  misses where the blend of runs (--runs, weighed as `blend` weighs; per fold split, runs grouped by theirs) errs: its OOF errors
        counted by how many of the runs err on the row too, and a picture of the rows wrong in every split (no
        training);
  subsets the equal-weight blend of every subset of two or more runs (--runs, the same names in each fold split): OOF
        errors per split, mean and per fold, fewest first (no training);
  weights `blend`'s weightings on runs (--runs; per fold split, runs grouped by theirs): OOF errors of equal weights,
        of greedy selection on the rows it selected on and cross-validated (weights selected on four fifths of the
        rows, errors counted on the fifth left out), and the weighting `blend` chooses, its errors per fold (no training);
  serve what using a run or blend costs (--models, default WORK/arch/blend, `best`'s): `submit` of a 28,000-row
        test file (wall time, peak memory), and the demo's server-side time per drawing (preprocess + every model)
        on 500 sketchpad-like canvases of test rows;
  stroke fold 1 of the reference CNN's recipe on the bundled sample with and without stroke augmentation (--stroke 0.5),
        seeds 42 and 43: errors on the fold's validation rows as they are and with the pen a pixel narrower or wider,
        and on 2,000 full-data rows it never saw, as they are and drawn as sketchpad-like canvases (and the share
        of those the demo marks unsure);
  smoothing the same with and without label smoothing (--label-smoothing 0 and 0.1), seeds 42 and 43;
  redraw fold 1 of the reference CNN's recipe on the given train file with and without --redraw 0.5, seeds 42 and 43: errors
        on all the fold's validation rows as they are, drawn as sketchpad-like canvases, and as canvases of their own
        strokes upscaled (not redrawn: what the preprocessing alone costs);
  deskew `poolres` (seed = split, splits 42-44) trained on the digits deskewed (sheared upright by their moments):
        alone, as a fifth member of `make best`'s four and in place of its `poolres`, equal weights (the four from
        `plan` in WORK/arch and WORK/sS/arch);
  neighbours k nearest neighbours and an RBF SVM on deskewed digits (PCA 40), OOF on the four's folds: alone and as a
        fifth member of `make best`'s four (seconds, no network training);
  neighbour-settings `knn`'s k, components and blur chosen per fold by leave-one-out on the fold's training rows,
        then alone and in place of the `knn` run beside the networks of `make best` (minutes, no network training);
  neighbour-variants other non-network members beside the networks of `make best`: an RBF SVM, `knn` with each query
        moved up to a pixel, `knn` on digits not deskewed; and the plan's `knn` with other k and vote weightings
        (minutes, no network training);
  read  fold 1's model of each run (--runs, one fold split) on all the fold's validation rows: as they are, drawn as
        sketchpad-like canvases, and as canvases of their own strokes upscaled (`redraw`'s readings);
  unsure the demo's "unsure" mark: fold 1's model of each run (--runs, one fold split) reads sketchpad-like canvases
        of all its validation rows, of letters no digit resembles and of random scribbles; per threshold, the
        share of each marked unsure and the digits misread with and without the mark;
  best  `best` with a plan (--plan, default the shipped one) as a user runs it, on a GPU its runs side by side:
        wall time, peak memory, each run's and the blend's OOF and time; then `submit` of 28,000 rows with the blend
        (on a GPU, `--part cv` after it gives the default `cv` alone);
  demo  the draw-a-digit path: a K-fold run on the bundled sample (train rows 0..9,999), read back from
        sketchpad-like canvases of train rows 40,000..41,999 it never saw, per style, against the same digits
        as plain 28x28 images; server-side latency per drawing; 32 concurrent gradio_client users x 20 drawings
        (answered and failed); and 20 draw -> clear -> wait 0-3 s -> draw cycles on the page in Chromium.
Each part writes benchmarks/results/PART-HOST-torchVERSION.json (HOST: the CPU, or the GPU where training used one);
runs and scratch files go to --work. A lab tool: it drives the installed package and is not part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the canvas renderer and browser driver the demo tests use
from canvas import STYLES, random_canvas

from competition.blend import RunOOF, load_run
from competition.checkpoint import Checkpoint, load_checkpoint
from competition.config import TrainConfig
from competition.data import SAMPLE_DIR, Digits, read_test, read_train
from competition.ensemble import Ensemble
from competition.infer import TTA_ROTATIONS, autocast_dtype, predict_proba
from competition.metrics import log_loss
from competition.model import ARCHS, NearestNeighbours, build_model
from competition.recognize import Reading, recognize

RESULTS = ROOT / "benchmarks" / "results"


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a CLI command; (wall seconds, peak RSS in GB of the largest process it started)."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: command failed: {' '.join(cmd)}")
    return time.perf_counter() - start, usage.ru_maxrss / 1e6  # ru_maxrss is in KiB on Linux


def host() -> dict[str, object]:
    """Which machine gave these figures: the project's 2-core hosts differ several-fold in training speed between CPU
    generations (AVX2 only; AVX512-BF16), so a figure without its host cannot be compared."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else []):
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())  # the first processor's entry; all cores are alike
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name", platform.processor() or platform.machine()),
            "cpu_family": info.get("cpu family"), "cpu_model": info.get("model"), "cpus": os.cpu_count(),
            "isa": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def result_name(part: str, info: dict[str, object]) -> str:
    """PART-HOST-torchVERSION.json, HOST a short slug of the GPU, or of the CPU model, its family and model numbers
    (one model name covers CPU generations of several-fold different speed) and its bf16 support. Files written
    before the numbers were added name the BF16 host (family 26, model 2) amd-epyc-bf16."""
    machine = str(info["gpu"] or info["cpu"])
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")[:40]
    if not info["gpu"]:
        slug += f"-f{info['cpu_family']}m{info['cpu_model']}" if info["cpu_family"] else ""
        slug += "-bf16" if "avx512_bf16" in info["isa"] else "-avx2"  # type: ignore[operator]
    return f"{part}-{slug}-torch{str(info['torch']).split('+')[0]}.json"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def bench_demo(data: Path, out: Path, folds: int, rows: int = 2000) -> dict[str, object]:
    run = out / "sample"
    if not (run / "cv_report.json").exists():
        timed([sys.executable, "-m", "competition", "cv", "--data", str(ROOT / SAMPLE_DIR), "--out", str(run),
               "--folds", str(folds)])
    full = read_train(data)
    assert full.labels is not None
    images, labels = full.images[40_000:40_000 + rows], full.labels[40_000:40_000 + rows]  # not in the sample
    ensemble = Ensemble.load(run)
    plain = float((ensemble.predict_proba(images).argmax(1) == labels).mean())
    rng = np.random.default_rng(0)
    styles = [STYLES[i % len(STYLES)] for i in range(rows)]
    right: dict[str, list[bool]] = {style: [] for style in STYLES}
    latency: list[float] = []
    for img, label, style in zip(images, labels, styles):
        reading, seconds = read_drawing(img, style, rng, ensemble)
        latency.append(seconds)
        right[style].append(reading.main is not None and reading.main.label == label)
    per_style = {style: float(np.mean(hits)) for style, hits in right.items()}
    canvas_acc = float(np.mean([h for hits in right.values() for h in hits]))
    with demo_server(run, out) as url:
        concurrent = load(url, images, rng, out, users=32, per_user=20)
        cycles = page_cycles(url, cycles=20)
    return {"models": str(run), "held_out_rows": "train rows 40000..41999", "plain_28x28_accuracy": plain,
            "canvas_accuracy": canvas_acc, "per_style": per_style, "server_side_latency": percentiles(latency),
            "concurrent_clients": concurrent, "page_clear_cycles": cycles}


def read_drawing(image: np.ndarray, style: str, rng: np.random.Generator, ensemble: Ensemble) -> tuple[Reading, float]:
    """`image` (28, 28) drawn on a sketchpad-like canvas in `style`, read as the demo reads it: the reading and the
    seconds `recognize` took."""
    canvas = random_canvas(image, rng, style=style)
    value = canvas if canvas.shape[2] == 3 else {"background": None, "layers": [canvas], "composite": None}
    start = time.perf_counter()
    reading = recognize(value, ensemble)
    return reading, time.perf_counter() - start


def bench_serve(data: Path, out: Path, folds: int, *, models: Path | None, drawings: int = 500) -> dict[str, object]:
    """What using `models` (a run or a blend; default `best`'s blend in OUT/arch) costs: `submit` of 28,000 rows, and
    the demo's server-side time per drawing."""
    models = models or out / "arch" / "blend"
    ensemble = Ensemble.load(models)
    rng = np.random.default_rng(0)
    test = read_test(data).images[:drawings]
    latency = [read_drawing(img, STYLES[i % len(STYLES)], rng, ensemble)[1] for i, img in enumerate(test)]
    return {"models": str(models), "networks": len(ensemble.members), "server_side_latency": percentiles(latency),
            "submit_28k": submit_28k(data, models, out, len(ensemble.members))}


@contextmanager
def demo_server(run: Path, out: Path, port: int = 7899) -> Iterator[str]:
    """`competition demo` on `run`; its output goes to OUT/demo-server.log (the server's side of any failed request)."""
    from gradio_client import Client

    with (out / "demo-server.log").open("w") as server_log:
        server = subprocess.Popen([sys.executable, "-m", "competition", "demo", "--models", str(run), "--port", str(port)],
                                  stdout=server_log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(120):
                try:
                    Client(url, verbose=False)
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(1)
            yield url
        finally:
            server.terminate()
            server.wait()


def load(url: str, images: np.ndarray, rng: np.random.Generator, out: Path, *, users: int, per_user: int) -> dict[str, object]:
    """`users` gradio_client users at once, each sending `per_user` drawings of its own; every failure is counted."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file
    from PIL import Image

    canvases = out / "demo-canvases"
    canvases.mkdir(exist_ok=True)
    files = []
    for i in range(users * per_user):
        path = canvases / f"layer{i}.png"
        Image.fromarray(random_canvas(images[i % len(images)], rng, style="black-on-transparent")).save(path)
        files.append(path)

    def user(k: int) -> tuple[list[float], list[str]]:
        client = Client(url, verbose=False)
        times, failures = [], []
        for j in range(per_user):
            path = files[k * per_user + j]
            value = {"background": None, "layers": [handle_file(str(path))], "composite": handle_file(str(path))}
            start = time.perf_counter()
            try:
                client.predict(value, api_name="/predict")
                times.append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - counted, and the first few kept for the report
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
        return times, failures

    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(user, range(users)))
    times = [t for ts, _ in results for t in ts]
    failures = [f for _, fs in results for f in fs]
    return {"users": users, "per_user": per_user, "sent": users * per_user, "answered": len(times), "failed": len(failures),
            "first_failures": failures[:5], **(percentiles(times) if times else {})}


def page_cycles(url: str, *, cycles: int, seed: int = 0) -> dict[str, object]:
    """Draw, clear (the page's button or the toolbar's, alternately), wait 0-3 s, draw another digit: is it read?"""
    from browser import clear, draw, page, wait_for_answer

    rng = np.random.default_rng(seed)
    rows = []
    with page(url) as tab:
        draw(tab, [1])
        wait_for_answer(tab, "1")
        for k in range(cycles):
            toolbar, delay, digit = bool(k % 2), float(rng.uniform(0, 3)), (7, 1)[k % 2]
            clear(tab, toolbar=toolbar)
            tab.wait_for_timeout(delay * 1000)
            draw(tab, [digit])
            got = wait_for_answer(tab, str(digit), timeout=15)
            rows.append({"clear": "toolbar" if toolbar else "button", "delay_s": round(delay, 2), "drew": digit, "read": got})
    return {"cycles": cycles, "read_right": sum(r["read"] == str(r["drew"]) for r in rows), "rows": rows}


def step_rate(*, batch: int, bf16: bool, compiled: bool = False, arch: str = "reference") -> dict[str, object]:
    """Training-step images/s of the reference CNN on random data (no augmentation, no loading), after 5 warm-up steps.

    compiled: the model under torch.compile (inductor); its compilation falls in the warm-up steps.
    """
    torch.manual_seed(0)
    model = build_model(arch, dropout=TrainConfig().dropout).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    if compiled:
        model = torch.compile(model)  # type: ignore[assignment]
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    emulated = bf16 and autocast_dtype(torch.device("cpu")) is None
    steps = 3 if emulated else max(3, 4096 // batch)  # emulated bf16 is many times slower: a few steps tell
    for i in range(5 + steps):
        if i == 5:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"arch": arch, "batch": batch, "bf16": bf16, "compiled": compiled,
            "steps": steps, "images_per_s": steps * batch / (time.perf_counter() - start)}


# Multiply-adds of one forward pass: conv1 28*28*32*9, conv2 14*14*64*32*9, conv3 14*14*128*64*9, fc1 6272*128,
# fc2 128*10. A training step costs ~3 forwards (input and weight gradients; conv1 needs no input gradient).
FORWARD_MACS = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 14 * 14 * 128 * 64 * 9 + 6272 * 128 + 128 * 10
TRAIN_MFLOP_PER_IMAGE = 2 * (3 * FORWARD_MACS - 28 * 28 * 32 * 9) / 1e6


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matrix product: what this CPU's cores can do at best, for scale."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


# fold 1's runs of `--part arch`: (name, arch, seed) on split 42; a second seed of the reference CNN is the control
# that asks whether another architecture adds more to a blend than another seed does
ARCH_RUNS = (("reference", "reference", 42), ("resnet", "resnet", 42), ("reference-seed43", "reference", 43),
             ("bncnn", "bncnn", 42))


def canvas_digits(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 28, 28): each image drawn on a sketchpad-like canvas (the styles in turn) and brought back as the demo
    brings it: the main digit (the most ink) of the segmented canvas."""
    from competition.preprocess import segment

    rng = np.random.default_rng(seed)
    read = []
    for i, image in enumerate(images):
        canvas = random_canvas(image, rng, style=STYLES[i % len(STYLES)])
        digits = segment(canvas if canvas.shape[2] == 3 else {"background": None, "layers": [canvas], "composite": None})
        read.append(max(digits, key=lambda d: d.mass).image if digits else np.zeros((28, 28), np.uint8))
    return np.stack(read)


CANVAS_ROWS = 1000  # validation rows drawn as canvases per fold model: segmenting them is the slow part


def fold_canvases(checkpoint: Checkpoint, images: np.ndarray, rows: int | None = CANVAS_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, their canvas readings (rows, 28, 28)): the first `rows` (None: all) validation rows of the
    checkpoint's fold, drawn as the demo reads drawings; the same rows for every run of one fold split."""
    picked = np.asarray(checkpoint.extra["oof_index"])[:rows]
    return picked, canvas_digits(images[picked])


def sample_pairs(data: Path, out: Path, folds: int, *, flag: str, values: tuple[float, float],
                 seeds: tuple[int, ...], rows: int = 2000) -> dict[str, object]:
    """Fold 1 of K of the default recipe on the bundled sample with `--FLAG` at each of `values`, for each seed (split
    42): errors on the fold's validation rows as they are, with the pen a pixel narrower and a pixel wider (2x2 grey
    erosion, dilation), on full-data rows 40,000.. (never trained on) as they are and drawn as canvases; and the
    share of those canvases the demo would mark unsure."""
    import cv2

    from competition.recognize import UNSURE_BELOW

    full, sample = read_train(data), read_train(ROOT / SAMPLE_DIR)
    assert full.labels is not None and sample.labels is not None
    held = np.arange(40_000, 40_000 + rows)  # not in the sample
    canvases = canvas_digits(full.images[held])
    square = np.ones((2, 2), np.uint8)
    runs = {}
    for seed in seeds:
        for value in values:
            run = out / flag / f"{flag}{value:g}-seed{seed}"
            if not (run / "fold1.pt").exists():
                timed([sys.executable, "-m", "competition", "cv", "--data", str(ROOT / SAMPLE_DIR), "--recipe", "reference",
                       "--seed", str(seed), "--split-seed", "42", f"--{flag}", str(value), "--folds", str(folds), "--fold", "1", "--out", str(run)])
            ensemble = Ensemble.load(run / "fold1.pt")
            val = np.asarray(ensemble.members[0].extra["oof_index"])
            images, labels = sample.images[val], sample.labels[val]
            variants = {"validation": (images, labels),
                        "eroded": (np.stack([cv2.erode(x, square) for x in images]), labels),
                        "dilated": (np.stack([cv2.dilate(x, square) for x in images]), labels),
                        "held_out": (full.images[held], full.labels[held]), "canvas": (canvases, full.labels[held])}
            probs = {name: ensemble.predict_proba(x) for name, (x, _) in variants.items()}
            runs[run.name] = {"seed": seed, flag: value, **ensemble.members[0].metrics,
                              **{f"{name}_errors": errors(probs[name], y) for name, (_, y) in variants.items()},
                              "canvas_unsure": float((probs["canvas"].max(1) < UNSURE_BELOW).mean())}
            print(run.name, runs[run.name], flush=True)
    return {"validation_rows": len(val), "held_out_rows": f"train rows 40000..{40_000 + rows - 1}", "runs": runs}


def upscaled_canvas(image: np.ndarray, side: int = 800) -> np.ndarray:
    """A digit's own strokes, not redrawn: upscaled to half the canvas, cut at mid-grey, black on white."""
    big = np.asarray(Image.fromarray(image).resize((side // 2, side // 2), Image.Resampling.BILINEAR))
    canvas = np.full((side, side), 255, np.uint8)
    canvas[side // 4:side // 4 + side // 2, side // 4:side // 4 + side // 2] = np.where(big > 127, 0, 255)
    return np.repeat(canvas[..., None], 3, axis=2)


def bench_redraw(data: Path, out: Path, folds: int, *, share: float = 0.5, seeds: tuple[int, ...] = (42, 43)) -> dict[str, object]:
    """Fold 1 of the reference CNN's recipe (split 42) with and without `--redraw SHARE`, for each seed, each read
    as `fold_readings` reads it."""
    full = read_train(data)
    runs: dict[str, dict[str, object]] = {}
    readings: dict[str, np.ndarray] = {}
    for seed in seeds:
        for value in (0.0, share):
            run = out / "redraw" / f"redraw{value:g}-seed{seed}"
            if not (run / "fold1.pt").exists():
                timed([sys.executable, "-m", "competition", "cv", "--data", str(data), "--recipe", "reference", "--seed",
                       str(seed), "--split-seed", "42", "--redraw", str(value), "--folds", str(folds), "--fold", "1", "--out", str(run)])
            runs[run.name] = {"seed": seed, "redraw": value, **fold_readings(run, full, readings)}
            print(run.name, runs[run.name], flush=True)
    return {"fold": 1, "split_seed": 42, "validation_rows": len(readings["validation"]), "runs": runs}


def fold_readings(run: Path, full: Digits, readings: dict[str, np.ndarray],
                  kept: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, object]:
    """Fold 1's model of `run`: its architecture, metrics and errors on all the fold's validation rows as they are, drawn as
    sketchpad-like canvases (the demo's path) and as canvases of their own strokes upscaled (no redrawing: what the
    page's preprocessing alone costs). `readings` caches those images for the next run of the same fold split; `kept`,
    if given, gets the run's probabilities by reading and run."""
    from competition.preprocess import preprocess

    assert full.labels is not None
    ensemble = Ensemble.load(run / "fold1.pt")
    member = ensemble.members[0]
    val = np.asarray(member.extra["oof_index"])
    if not readings:
        readings.update({"index": val, "validation": full.images[val], "canvas": canvas_digits(full.images[val]),
                         "upscaled": np.stack([preprocess(upscaled_canvas(image)) for image in full.images[val]])})
    if not np.array_equal(readings["index"], val):
        sys.exit(f"bench: {run} has another fold split than the runs before it; compare runs of one split")
    probs = {name: ensemble.predict_proba(readings[name]) for name in ("validation", "canvas", "upscaled")}
    for name, p in probs.items():
        if kept is not None:
            kept.setdefault(name, {})[str(run)] = p
    return {"arch": member.config.arch, **member.metrics,
            **{f"{name}_errors": errors(p, full.labels[val]) for name, p in probs.items()}}


def bench_read(data: Path, out: Path, folds: int, *, runs: list[Path]) -> dict[str, object]:
    """Fold 1's model of each of `runs` (one fold split) read as `fold_readings` reads it, alone and in equal-weight
    blends of two or more: architectures and blends on the demo's path."""
    full = read_train(data)
    assert full.labels is not None
    readings: dict[str, np.ndarray] = {}
    kept: dict[str, dict[str, np.ndarray]] = {}
    rows = {}
    for run in runs:
        rows[str(run)] = fold_readings(run, full, readings, kept)
        print(run, rows[str(run)], flush=True)
    labels = full.labels[readings["index"]]
    blends = {name: equal_weight_blends(probs, labels) for name, probs in kept.items()}
    return {"fold": 1, "validation_rows": len(readings["index"]), "runs": rows, "equal_weight_blends": blends}


def bench_arch(data: Path, out: Path, folds: int, fold: int = 1, canvas_rows: int = CANVAS_ROWS) -> dict[str, object]:
    trained, ensembles = {}, {}
    for name, arch, seed in ARCH_RUNS:
        run = out / "arch" / name
        if not (run / f"fold{fold}.pt").exists():
            timed([sys.executable, "-m", "competition", "cv", "--data", str(data), "--arch", arch, "--seed", str(seed),
                   "--split-seed", "42", "--folds", str(folds), "--fold", str(fold), "--out", str(run)])
        ensembles[name] = Ensemble.load(run / f"fold{fold}.pt")
        trained[name] = ensembles[name].members[0]
    full = read_train(data)
    assert full.labels is not None
    val = np.asarray(trained["reference"].extra["oof_index"])
    assert all(np.array_equal(np.asarray(ck.extra["oof_index"]), val) for ck in trained.values()), "one split for all"
    rows, canvases = fold_canvases(trained["reference"], full.images, canvas_rows)  # read by every run's model
    probs = {name: np.asarray(ck.extra["oof_probs"], dtype=np.float32) for name, ck in trained.items()}
    canvas_probs = {name: ensemble.predict_proba(canvases) for name, ensemble in ensembles.items()}
    blends = {}
    for size in range(1, len(trained) + 1):
        for names in combinations(trained, size):
            mean = np.mean([probs[name] for name in names], axis=0)
            on_canvas = np.mean([canvas_probs[name] for name in names], axis=0)
            blends[" + ".join(names)] = {"errors": errors(mean, full.labels[val]),
                                         "log_loss": log_loss(mean, full.labels[val]),
                                         "canvas_accuracy": float((on_canvas.argmax(1) == full.labels[rows]).mean())}
    return {"fold": fold, "split_seed": 42, "validation_rows": len(val), "canvas_rows": len(rows),
            "runs": {name: {"seed": ck.config.seed, "recipe": ck.config.to_dict(), **ck.metrics} for name, ck in trained.items()},
            "equal_weight_blends": blends}


def timed_best(data: Path, plan: Path, runs: Path, submission: Path, *flags: str) -> tuple[float, float, dict[str, Any]]:
    """`best` with `plan` into `runs`: (wall seconds, peak RSS in GB, its blend.json)."""
    wall, rss = timed([sys.executable, "-m", "competition", "best", "--data", str(data), "--plan", str(plan),
                       "--out", str(runs), "--submission", str(submission), *flags])
    return wall, rss, json.loads((runs / "blend" / "blend.json").read_text())


def bench_plan(data: Path, out: Path, folds: int, *, plan: Path) -> dict[str, object]:
    """`best` with `plan` into OUT/arch, so that the folds `--part arch` trained there (runs of the same names) are
    reused; then each run's and the blend's OOF errors and log loss, in all and per fold. Fold times come from the
    checkpoints (the wall clock of a resumed `best` says nothing)."""
    from competition.blend import mix

    wall, rss, blend = timed_best(data, plan, out / "arch", out / "arch" / "submission.csv")
    train = read_train(data)
    labels = train.labels
    assert labels is not None
    runs: dict[str, object] = {}
    with_tta = []  # each member's OOF with test-time augmentation, for the blend with the same weights
    plain: dict[str, np.ndarray] = {}  # each member's OOF, for the equal-weight blends of every subset
    for member in blend["members"]:
        run = Path(member["run"])
        report = json.loads((run / "cv_report.json").read_text())
        checkpoints = [load_checkpoint(path) for path in sorted(run.glob("fold*.pt"))]
        per_fold = []
        for ck in checkpoints:
            rows, probs = np.asarray(ck.extra["oof_index"]), np.asarray(ck.extra["oof_probs"], dtype=np.float32)
            per_fold.append({"fold": ck.fold, "errors": errors(probs, labels[rows]),
                             "log_loss": log_loss(probs, labels[rows]), "best_epoch": ck.metrics["best_epoch"],
                             "seconds": ck.metrics["seconds"], "images_per_s": ck.metrics["images_per_s"]})
        with_tta.append(oof_probs(Ensemble(members=checkpoints, source=run), train.images, tta=True))
        plain[run.name] = load_run(run).probs
        runs[run.name] = {"config": report["config"], "oof_errors": member["oof_errors"], "oof_loss": member["oof_loss"],
                          "tta": errors_and_loss(with_tta[-1], labels),
                          "train_seconds": report["train_seconds"], "folds": per_fold}
    tta_blend = mix(with_tta, [member["weight"] for member in blend["members"]])
    return {"plan": json.loads(plan.read_text()), "best_wall_seconds": wall, "best_peak_rss_gb": rss, "runs": runs,
            "blend": {key: blend[key] for key in ("members", "oof_errors", "oof_accuracy", "oof_loss", "method")},
            "blend_tta": errors_and_loss(tta_blend, labels),
            "equal_weight_blends": equal_weight_blends(plain, labels)}


def equal_weight_blends(probs: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, object]:
    """Errors and log loss of the equal-weight blend of every subset of two or more of `probs` (name -> (N, 10))."""
    return {" + ".join(names): errors_and_loss(np.mean([probs[n] for n in names], axis=0), labels)
            for size in range(2, len(probs) + 1) for names in combinations(probs, size)}


def bench_folds(data: Path, out: Path, folds: int, *, runs: list[Path]) -> dict[str, object]:
    """Runs compared fold by fold where all have the fold: a run still training can be paired with finished ones."""
    labels = read_train(data).labels
    assert labels is not None
    shared = [k for k in range(1, folds + 1) if all((run / f"fold{k}.pt").exists() for run in runs)]
    if not shared:
        raise SystemExit(f"no fold 1..{folds} that all of {', '.join(map(str, runs))} have")
    configs: dict[str, object] = {}
    per_fold: dict[str, list[dict[str, object]]] = {str(run): [] for run in runs}
    blends = {}
    for k in shared:
        checkpoints = {str(run): load_checkpoint(run / f"fold{k}.pt") for run in runs}
        rows = [np.asarray(ck.extra["oof_index"]) for ck in checkpoints.values()]
        if not all(np.array_equal(r, rows[0]) for r in rows):
            raise SystemExit(f"fold {k}: the runs' validation rows differ (another fold split)")
        truth = labels[rows[0]]
        probs = {name: np.asarray(ck.extra["oof_probs"], dtype=np.float32) for name, ck in checkpoints.items()}
        for name, ck in checkpoints.items():
            configs[name] = ck.config.to_dict()
            per_fold[name].append({"fold": k, **errors_and_loss(probs[name], truth), **ck.metrics})
        blends[f"fold {k}"] = equal_weight_blends(probs, truth)
    return {"folds": shared, "runs": {name: {"config": configs[name], "folds": per_fold[name]} for name in per_fold},
            "equal_weight_blends": blends}


def runs_by_split(runs: list[Path]) -> list[list[RunOOF]]:
    """`runs`' OOF predictions, grouped by fold split in the order the splits first appear."""
    groups: dict[str, list[RunOOF]] = {}  # split (as JSON) -> its runs
    for run in runs:
        member = load_run(run)
        groups.setdefault(json.dumps(member.split, sort_keys=True), []).append(member)
    return list(groups.values())


def bench_weights(data: Path, out: Path, folds: int, *, runs: list[Path]) -> dict[str, object]:
    """`blend`'s contest of weightings on the runs of each fold split (no training): OOF errors of equal weights and
    of greedy selection, the latter both on the rows it selected on and cross-validated, and the weighting chosen, its
    errors in all and per fold (the folds' rows from the first run's checkpoints)."""
    from competition.blend import choose_weights, mix

    report = []
    for members in runs_by_split(runs):
        probs, labels = [m.probs for m in members], members[0].labels
        chosen = choose_weights(probs, labels)
        wrong = mix(probs, chosen.weights).argmax(1) != labels
        rows = [load_checkpoint(members[0].path / f"fold{k}.pt").extra["oof_index"] for k in range(1, folds + 1)]
        report.append({"split": members[0].split, "runs": [str(m.path) for m in members],
                       "member_errors": [errors(p, labels) for p in probs],
                       "equal_errors": chosen.cross_validated_errors["equal"],
                       "greedy_picks": chosen.picks.tolist(), "greedy_errors_on_its_rows": errors(mix(probs, chosen.picks), labels),
                       "greedy_errors_cross_validated": chosen.cross_validated_errors["greedy"],
                       "chosen": chosen.method, "chosen_errors": int(wrong.sum()),
                       "chosen_errors_per_fold": [int(wrong[np.asarray(r)].sum()) for r in rows]})
    return {"splits": report, "mean_chosen_errors": float(np.mean([r["chosen_errors"] for r in report]))}


def bench_misses(data: Path, out: Path, folds: int, *, runs: list[Path]) -> dict[str, object]:
    """Where the blend of `runs` (weighed as `blend` weighs) errs, per fold split (runs grouped by theirs): its OOF
    errors counted by how many members err on the row too, with those rows (train file row numbers). Rows every member
    gets wrong no weighting of these members can fix; those wrong in every split are drawn to OUT/misses-every-split.png."""
    from competition.blend import choose_weights, mix
    from competition.plots import worst_mistakes

    groups = runs_by_split(runs)
    report, blends = [], []
    for members in groups:
        labels = members[0].labels
        weights = choose_weights([m.probs for m in members], labels).weights
        blends.append(mix([m.probs for m in members], weights))
        wrong = blends[-1].argmax(1) != labels
        members_wrong = np.sum([m.probs.argmax(1) != labels for m in members], axis=0)  # (N,) how many members err
        rows = {str(k): np.flatnonzero(wrong & (members_wrong == k)).tolist() for k in range(len(members), -1, -1)}
        report.append({"split": members[0].split, "runs": [str(m.path) for m in members],
                       "weights": weights.tolist(), "blend_errors": int(wrong.sum()),
                       "rows_any_member_wrong": int((members_wrong > 0).sum()),
                       "blend_errors_by_members_wrong": {k: len(r) for k, r in rows.items()}, "rows": rows})
    every = sorted(set.intersection(*[set(group["rows"][str(len(group["runs"]))]) for group in report]))
    labels = groups[0][0].labels  # the picture shows the first split's blend's answers
    worst_mistakes(read_train(data).images, labels, blends[0], out / "misses-every-split.png",
                   count=len(every), among=np.asarray(every, dtype=np.int64))
    return {"splits": report, "every_member_wrong_in_every_split": every}


NOT_DIGITS = "ACEFHKMNPRUVWXaehkmnruvwx"  # letters that no digit resembles (no O, I, S, Z, B, G, q, ...)
UNSURE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def glyph(char: str, rng: np.random.Generator) -> np.ndarray:
    """(64, 64) uint8: `char` white on black in Pillow's own font (no system fonts), turned up to 15 degrees; the
    canvas renderer keeps only its centre line and draws it with a pen, as it does a digit."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).text((32, 32), char, fill=255, font=ImageFont.load_default(size=40), anchor="mm")
    return np.asarray(image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR))


def scribble(rng: np.random.Generator) -> np.ndarray:
    """(64, 64) uint8: one random pen stroke through 4-7 points, white on black."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (64, 64))
    points = [tuple(xy) for xy in rng.uniform(8, 56, size=(rng.integers(4, 8), 2))]
    ImageDraw.Draw(image).line(points, fill=255, width=4, joint="curve")
    return np.asarray(image)


def bench_unsure(data: Path, out: Path, folds: int, *, runs: list[Path], count: int = 500) -> dict[str, object]:
    """Digits, letters and scribbles drawn as canvases, read by fold 1's model of each run: how often each is marked
    unsure (the top probability below a threshold), and how many digits are misread with and without the mark."""
    full = read_train(data)
    assert full.labels is not None
    ensembles = {str(run): Ensemble.load(run / "fold1.pt") for run in runs}  # as the page loads models
    first = next(iter(ensembles.values())).members[0]
    if not all(np.array_equal(e.members[0].extra["oof_index"], first.extra["oof_index"]) for e in ensembles.values()):
        raise SystemExit("the runs' fold 1 validation rows differ (another fold split)")
    rows, digits = fold_canvases(first, full.images, rows=None)  # all: misreadings are rare
    rng = np.random.default_rng(0)
    others = {"letters": canvas_digits(np.stack([glyph(NOT_DIGITS[i % len(NOT_DIGITS)], rng) for i in range(count)])),
              "scribbles": canvas_digits(np.stack([scribble(rng) for _ in range(count)]))}
    results: dict[str, object] = {}
    for name, ensemble in ensembles.items():
        ck, probs = ensemble.members[0], ensemble.predict_proba(digits)
        wrong, confidence = probs.argmax(1) != full.labels[rows], probs.max(1)
        other = {kind: ensemble.predict_proba(images).max(1) for kind, images in others.items()}
        as_images = np.asarray(ck.extra["oof_probs"]).argmax(1) != full.labels[rows]  # the same digits, 28x28
        results[name] = {"label_smoothing": ck.config.label_smoothing, "validation_errors": int(as_images.sum()),
                         "canvas_errors": int(wrong.sum()),
                         "digit_confidence_quartiles": np.percentile(confidence, [25, 50, 75]).round(4).tolist(),
                         **{f"{kind}_confidence_quartiles": np.percentile(c, [25, 50, 75]).round(4).tolist()
                            for kind, c in other.items()},
                         "thresholds": {str(t): {"digits_unsure": float((confidence < t).mean()),
                                                 "errors_marked": int((wrong & (confidence < t)).sum()),
                                                 "errors_unmarked": int((wrong & (confidence >= t)).sum()),
                                                 **{f"{kind}_unsure": float((c < t).mean()) for kind, c in other.items()}}
                                        for t in UNSURE_THRESHOLDS}}
        print(name, results[name], flush=True)
    return {"digit_rows": len(rows), "letters": NOT_DIGITS, "others": count, "runs": results}


def errors(probs: np.ndarray, labels: np.ndarray) -> int:
    """Rows whose most probable class is not the label; probs (N, 10), labels (N,)."""
    return int((probs.argmax(1) != labels).sum())


def errors_and_loss(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"oof_errors": errors(probs, labels), "oof_loss": log_loss(probs, labels)}


def bench_step(data: Path, out: Path, folds: int) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for batch in (128, 256):
        for bf16 in (False, True):
            rows.append(step_rate(batch=batch, bf16=bf16))
            print(rows[-1], flush=True)
    for arch in sorted(a for a in ARCHS if a != "knn"):  # each network's cost per training image (knn has no step)
        for bf16 in (False, True):
            rows.append(step_rate(batch=128, bf16=bf16, arch=arch))
            print(rows[-1], flush=True)
    # torch.compile against eager, in alternating pairs: this host's speed drifts by up to 1.5x within minutes
    for _ in range(3):
        for compiled in (False, True):
            rows.append(step_rate(batch=128, bf16=False, compiled=compiled))
            print(rows[-1], flush=True)
    return {"native_bf16": autocast_dtype(torch.device("cpu")) is not None,
            "threads": torch.get_num_threads(), "fp32_matmul_gflops": matmul_gflops(),
            "train_mflop_per_image": TRAIN_MFLOP_PER_IMAGE, "steps": rows}


def kaggle_sized_test(data: Path) -> np.ndarray:
    """The test file's images repeated to 28,000 rows, Kaggle's test.csv size: (28000, 28, 28) uint8."""
    test = read_test(data)
    return test.images[np.resize(np.arange(len(test)), 28_000)]


def bench_tta(data: Path, out: Path, folds: int) -> dict[str, dict[str, object]]:
    train, test = read_train(data), kaggle_sized_test(data)
    assert train.labels is not None
    runs = sorted(p.parent for p in out.glob("*/cv_report.json") if json.loads(p.read_text())["rows"] == len(train))
    if not runs:
        sys.exit(f"bench: no finished cv run on {len(train):,} rows in {out}; run --part cv first")
    return {run.name: tta_effect(run, train.images, train.labels, test) for run in runs}


MAKE_BEST_FOUR = ("reference", "resnet", "poolres", "poolres-wide15")  # `make best`'s runs, as `--part plan` names them


def deskew(images: np.ndarray) -> np.ndarray:
    """(N, 784) uint8 -> the same digits sheared so that their principal axis stands upright and centred on their
    centre of mass (the classic moment-based deskew of MNIST)."""
    from scipy.ndimage import affine_transform

    rows, cols = np.mgrid[:28, :28]
    out = np.empty((len(images), 28, 28))
    for i, image in enumerate(images.reshape(-1, 28, 28).astype(np.float64)):
        ink = image.sum()
        r, c = (rows * image).sum() / ink, (cols * image).sum() / ink
        slant = ((rows - r) * (cols - c) * image).sum() / ((rows - r) ** 2 * image).sum()
        shear = np.array([[1.0, 0.0], [slant, 1.0]])
        out[i] = affine_transform(image, shear, offset=np.array([r, c]) - shear @ np.array([14.0, 14.0]), order=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(len(images), 784)


def bench_deskew(data: Path, out: Path, folds: int, *, splits: tuple[int, ...] = (42, 43, 44)) -> dict[str, object]:
    """`poolres` (the default recipe, seed = split) trained on deskewed digits, beside `make best`'s four of the same
    split (WORK/arch for 42, WORK/sS/arch for S, from `--part plan`): alone, as a fifth member and in place of
    `poolres`, with equal weights; errors in all and per fold."""
    full = read_train(data)
    assert full.labels is not None
    skewless = deskewed_file(full, out)
    report: dict[str, dict[str, object]] = {}
    for split in splits:
        run = out / f"deskew-s{split}"
        if not (run / "cv_report.json").exists():  # cv keeps finished folds: an interrupted part goes on
            timed([sys.executable, "-m", "competition", "cv", "--data", str(skewless), "--out", str(run), "--seed", str(split),
                   "--split-seed", str(split), "--folds", str(folds)])
        probs, rows = the_four(out, split, folds)
        probs["deskew"] = load_run(run).probs
        assert all(np.array_equal(r, load_checkpoint(run / f"fold{k}.pt").extra["oof_index"])
                   for k, r in enumerate(rows, start=1)), "the deskewed run's folds differ from the four's"
        labels = full.labels
        blends = {"deskew": ["deskew"], "poolres": ["poolres"], "the four": list(MAKE_BEST_FOUR),
                  "the four + deskew": [*MAKE_BEST_FOUR, "deskew"],
                  "deskew for poolres": [n if n != "poolres" else "deskew" for n in MAKE_BEST_FOUR]}
        report[str(split)] = beside_the_four(probs, labels, rows, blends, newcomer="deskew")
        print(split, report[str(split)], flush=True)
    return {"splits": report}


def deskewed_file(full: Digits, out: Path) -> Path:
    """OUT/deskew-data/train.csv: `full` deskewed, written once; returns its folder."""
    assert full.labels is not None
    skewless = out / "deskew-data"
    if not (skewless / "train.csv").exists():
        skewless.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(deskew(full.images.reshape(len(full), -1)), columns=[f"pixel{k}" for k in range(784)])
        frame.insert(0, "label", full.labels)
        frame.to_csv(skewless / "train.csv", index=False)
    return skewless


def split_work(out: Path, split: int) -> Path:
    """Where `--part plan` put a split's runs: WORK/arch for 42, WORK/sS/arch for S."""
    return out / "arch" if split == 42 else out / f"s{split}" / "arch"


def the_four(out: Path, split: int, folds: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """OOF probabilities of `make best`'s four runs of `split` (from `--part plan`, in `split_work`) by run name, and
    each fold's validation rows."""
    work = split_work(out, split)
    rows = [np.asarray(load_checkpoint(work / "poolres" / f"fold{k}.pt").extra["oof_index"]) for k in range(1, folds + 1)]
    return {name: load_run(work / name).probs for name in MAKE_BEST_FOUR}, rows


def beside_the_four(probs: Mapping[str, np.ndarray], labels: np.ndarray, rows: list[np.ndarray],
                    blends: Mapping[str, list[str]], *, newcomer: str) -> dict[str, object]:
    """Errors in all and per fold of each equal-weight blend of `probs` named in `blends`, and how many of the rows
    all four get wrong `newcomer` gets right."""
    every_wrong = np.all([probs[n].argmax(1) != labels for n in MAKE_BEST_FOUR], axis=0)
    report: dict[str, object] = {"rows_all_four_wrong": int(every_wrong.sum()),
                                 f"of_those_{newcomer}_right": int((every_wrong & (probs[newcomer].argmax(1) == labels)).sum())}
    for name, members in blends.items():
        wrong = np.mean([probs[m] for m in members], axis=0).argmax(1) != labels
        report[name] = {"errors": int(wrong.sum()), "per_fold": [int(wrong[r].sum()) for r in rows]}
    return report


NEIGHBOURS = {"components": 40, "k": 6}  # the first setting tried, kept: tuning it on these rows would flatter it


def svm_probs(learn: np.ndarray, labels: np.ndarray, held: np.ndarray) -> np.ndarray:
    """An RBF SVM (C 10) fitted on `learn` (N, D) with `labels`, reading `held` (M, D): its one-vs-rest decision
    values through a softmax of temperature 0.5 (M, 10). The first setting tried, not tuned on OOF rows."""
    from sklearn.svm import SVC

    decision = SVC(C=10, gamma="scale").fit(learn, labels).decision_function(held)
    odds = np.exp((decision - decision.max(1, keepdims=True)) / 0.5)
    return odds / odds.sum(1, keepdims=True)


def bench_neighbours(data: Path, out: Path, folds: int, *, splits: tuple[int, ...] = (42, 43, 44)) -> dict[str, object]:
    """Two classic non-neural models on deskewed digits (PCA to 40 components, fitted on each fold's training rows):
    k nearest neighbours (distance-weighted) and an RBF support-vector machine (C 10, its one-vs-rest decision values
    through a softmax of temperature 0.5 as probabilities), OOF on the four's folds; beside `make best`'s four: alone,
    as a fifth member with equal weights, and the contest `blend` holds on the five."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    from competition.blend import choose_weights

    full = read_train(data)
    assert full.labels is not None
    labels = full.labels
    images = read_train(deskewed_file(full, out)).images.reshape(len(full), -1).astype(np.float32) / 255
    report: dict[str, dict[str, object]] = {}
    for split in splits:
        probs, rows = the_four(out, split, folds)
        knn, svm = np.zeros((len(labels), 10), np.float32), np.zeros((len(labels), 10), np.float32)
        seconds = {"knn": 0.0, "svm": 0.0}
        for held in rows:
            learn = np.setdiff1d(np.arange(len(labels)), held)
            started = time.perf_counter()
            pca = PCA(NEIGHBOURS["components"], random_state=0).fit(images[learn])
            a, b = pca.transform(images[learn]), pca.transform(images[held])
            knn[held] = KNeighborsClassifier(NEIGHBOURS["k"], weights="distance").fit(a, labels[learn]).predict_proba(b)
            seconds["knn"] += time.perf_counter() - started
            started = time.perf_counter()
            svm[held] = svm_probs(a, labels[learn], b)
            seconds["svm"] += time.perf_counter() - started
        probs |= {"knn": knn, "svm": svm}
        blends = {"knn": ["knn"], "svm": ["svm"], "the four": list(MAKE_BEST_FOUR), "the four + knn": [*MAKE_BEST_FOUR, "knn"],
                  "the four + svm": [*MAKE_BEST_FOUR, "svm"]}
        report[str(split)] = {**beside_the_four(probs, labels, rows, blends, newcomer="knn"), "seconds_5_folds": seconds}
        contest = choose_weights([probs[n] for n in [*MAKE_BEST_FOUR, "knn"]], labels)
        report[str(split)]["blend_contest_four_plus_knn"] = {"chosen": contest.method, **contest.cross_validated_errors}
        print(split, report[str(split)], flush=True)
    return {"setting": NEIGHBOURS, "splits": report}


# settings `--part neighbour-settings` chooses among by leave-one-out on each fold's training rows: principal
# components kept, a Gaussian blur's standard deviation before projecting (px, 0 = none), neighbours that vote
NEIGHBOUR_COMPONENTS, NEIGHBOUR_BLURS, NEIGHBOUR_KS = (40, 60, 80, 100), (0.0, 1.0), tuple(range(1, 13))


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, 28, 28) through a 7-tap Gaussian of `sigma` px along each axis (0: as they are)."""
    if sigma == 0:
        return x
    taps = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / (2 * sigma**2))
    taps = taps / taps.sum()
    return F.conv2d(F.conv2d(x, taps.view(1, 1, 1, 7), padding=(0, 3)), taps.view(1, 1, 7, 1), padding=(3, 0))


View = TypeVar("View", float, str)  # how `neighbours_chosen` names a view of the digits


def neighbours_chosen(views: Mapping[View, torch.Tensor], truth: torch.Tensor, learn: np.ndarray, held: np.ndarray, *,
                      shifted: torch.Tensor | None = None) -> tuple[np.ndarray, dict[str, object]]:
    """`knn` with its setting chosen by leave-one-out on the `learn` rows: every view (name -> (N, 784) digits) x
    NEIGHBOUR_COMPONENTS x NEIGHBOUR_KS reads each training digit by its neighbours among the others, and the most
    accurate setting reads the `held` rows: their probabilities (M, 10) and the pick. `shifted` (9, N, 784), one view
    moved by up to a pixel each way: a query's distance to each of its 32 nearest points becomes the least over its
    nine shifts (the training digits stay as they are), before the k nearest vote."""
    from competition.model import nearest, votes

    def neighbours(flat: torch.Tensor, queries: np.ndarray, mean: torch.Tensor, basis: torch.Tensor, points: torch.Tensor,
                   k: int, themselves: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        distance, index = nearest((flat[queries] - mean) @ basis, points, 32 if shifted is not None else k, themselves=themselves)
        if shifted is not None:  # (9, Q, 32) distances to the same candidates, the least over the shifts
            moved = (shifted[:, queries] - mean) @ basis
            distance = torch.cat([(moved[:, s:s + 1024, None] - points[index[s:s + 1024]][None]).norm(dim=-1).amin(0)
                                  for s in range(0, len(queries), 1024)])
            distance, order = distance.sort(1)
            index = index.gather(1, order)
        return distance[:, :k], index[:, :k]

    best: tuple[float, View, int, int] | None = None
    axes = {}  # view -> (mean, principal axes) of the fold's training digits
    for view, flat in views.items():
        mean = flat[learn].mean(0)
        axes[view] = mean, torch.linalg.svd(flat[learn] - mean, full_matrices=False)[2]
        for components in NEIGHBOUR_COMPONENTS:
            basis = axes[view][1][:components].T
            distance, index = neighbours(flat, learn, mean, basis, (flat[learn] - mean) @ basis, max(NEIGHBOUR_KS), True)
            for k in NEIGHBOUR_KS:
                accuracy = float((votes(distance[:, :k], truth[learn][index[:, :k]]).argmax(1) == truth[learn]).float().mean())
                if best is None or accuracy > best[0]:
                    best = (accuracy, view, components, k)
    assert best is not None
    accuracy, view, components, k = best
    flat, (mean, basis) = views[view], axes[view]
    basis = basis[:components].T
    distance, index = neighbours(flat, held, mean, basis, (flat[learn] - mean) @ basis, k)
    return votes(distance, truth[learn][index]).numpy(), {"leave_one_out_accuracy": accuracy, "view": view,
                                                           "components": components, "k": k}


def bench_neighbour_settings(data: Path, out: Path, folds: int, *, splits: tuple[int, ...] = (42, 43, 44)) -> dict[str, object]:
    """`knn`'s settings chosen honestly: on each fold's training rows, every setting of the NEIGHBOUR_ grid reads each
    training digit by its neighbours among the others (leave-one-out) and the most accurate setting reads the fold's
    held-out rows. Beside the runs of `make best` from `--part plan` (WORK/arch for 42, WORK/sS/arch for S): the
    chosen `knn` alone and in place of their `knn` run (when measured, one with the first setting, k 6 and 40
    components), equal weights, in all and per fold."""
    from competition.model import deskew as deskew_digits

    full = read_train(data)
    assert full.labels is not None
    labels, truth = full.labels, torch.as_tensor(full.labels).long()
    skewless = deskew_digits(torch.as_tensor(full.images).float().reshape(-1, 1, 28, 28))
    views = {sigma: blurred(skewless, sigma).flatten(1) for sigma in NEIGHBOUR_BLURS}
    report: dict[str, object] = {}
    for split in splits:
        probs, rows = the_four(out, split, folds)
        probs["knn"] = load_run(split_work(out, split) / "knn").probs
        chosen, picks = np.zeros((len(labels), 10), np.float32), []
        for held in rows:
            chosen[held], pick = neighbours_chosen(views, truth, np.setdiff1d(np.arange(len(labels)), held), held)
            pick["blur"] = pick.pop("view")
            picks.append(pick)
            print(split, picks[-1], flush=True)
        probs["chosen"] = chosen
        lean = [n for n in MAKE_BEST_FOUR if n != "reference"]
        blends = {"knn": ["knn"], "chosen": ["chosen"], "the five": [*MAKE_BEST_FOUR, "knn"],
                  "the five, knn chosen": [*MAKE_BEST_FOUR, "chosen"], "without the reference CNN": [*lean, "knn"],
                  "without the reference CNN, knn chosen": [*lean, "chosen"]}
        report[str(split)] = {"picks": picks, **beside_the_four(probs, labels, rows, blends, newcomer="chosen")}
        print(split, report[str(split)], flush=True)
    return {"grid": {"components": NEIGHBOUR_COMPONENTS, "blur": NEIGHBOUR_BLURS, "k": NEIGHBOUR_KS}, "splits": report}


NEIGHBOUR_VOTE_POWERS = (0, 1, 2, 4)  # `--part neighbour-variants`: votes weighted by 1 / distance^p (the package's: 1)


def bench_neighbour_variants(data: Path, out: Path, folds: int, *, splits: tuple[int, ...] = (42, 43, 44)) -> dict[str, object]:
    """Other non-network members beside the three networks of `make best` (the shipped plan's runs from `--part
    plan`, WORK/arch for 42, WORK/sS/arch for S), none tuned on the OOF rows: an RBF SVM on the deskewed digits (PCA
    40, `svm_probs`) and `knn` chosen by leave-one-out (`neighbours_chosen`) on the deskewed digits, on them with each
    query moved up to a pixel, and on the digits as they are, with and without the moves; each alone, in place of the
    plan's `knn` and beside it, equal weights, in all and per fold. Then the plan's `knn` itself (its fold checkpoints)
    with each k of NEIGHBOUR_KS and vote weighting of NEIGHBOUR_VOTE_POWERS in its place: how the blend answers them."""
    from sklearn.decomposition import PCA

    from competition.infer import to_input
    from competition.model import deskew as deskew_digits
    from competition.model import nearest

    full = read_train(data)
    assert full.labels is not None
    labels, truth = full.labels, torch.as_tensor(full.labels).long()
    plain = torch.as_tensor(full.images).float().reshape(-1, 1, 28, 28) / 255
    skewless = torch.cat([deskew_digits(plain[s:s + 4096]) for s in range(0, len(plain), 4096)])

    def moves(x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 28) -> (9, N, 784): moved by -1, 0, +1 px per axis
        padded = F.pad(x, (1, 1, 1, 1))
        return torch.stack([padded[:, 0, 1 + dy:29 + dy, 1 + dx:29 + dx].flatten(1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])

    variants = {"knn deskewed": ("deskewed", skewless, False), "knn deskewed, moved": ("deskewed", skewless, True),
                "knn as they are": ("as they are", plain, False), "knn as they are, moved": ("as they are", plain, True)}
    flat = skewless.flatten(1).numpy()  # the SVM's digits
    networks = [n for n in MAKE_BEST_FOUR if n != "reference"]
    report: dict[str, dict[str, object]] = {}
    for split in splits:
        work = split_work(out, split)
        probs, rows = the_four(out, split, folds)
        probs["knn"] = load_run(work / "knn").probs
        started, seconds = time.perf_counter(), {}
        probs["svm"] = np.zeros((len(labels), 10), np.float32)
        for held in rows:
            learn = np.setdiff1d(np.arange(len(labels)), held)
            pca = PCA(40, random_state=0).fit(flat[learn])
            probs["svm"][held] = svm_probs(pca.transform(flat[learn]), labels[learn], pca.transform(flat[held]))
        seconds["svm"] = time.perf_counter() - started
        picks: dict[str, list[dict[str, object]]] = {}
        for name, (view, images, moved) in variants.items():
            started, probs[name], picks[name] = time.perf_counter(), np.zeros((len(labels), 10), np.float32), []
            shifted = moves(images) if moved else None  # once for all folds: (9, 42000, 784) floats
            for held in rows:
                probs[name][held], pick = neighbours_chosen({view: images.flatten(1)}, truth, np.setdiff1d(np.arange(len(labels)), held),
                                                            held, shifted=shifted)
                picks[name].append(pick)
            seconds[name] = time.perf_counter() - started
            print(split, name, picks[name], flush=True)
        newcomers = ["svm", *variants]
        blends = {"the plan": [*networks, "knn"], **{f"{n} alone": [n] for n in newcomers},
                  **{f"{n} in place of knn": [*networks, n] for n in newcomers},
                  **{f"{n} beside knn": [*networks, "knn", n] for n in newcomers}}
        grid = {f"k {k}, 1/distance^{p}": np.zeros((len(labels), 10), np.float32) for k in NEIGHBOUR_KS for p in NEIGHBOUR_VOTE_POWERS}
        for fold, held in enumerate(rows, 1):
            knn = load_checkpoint(work / "knn" / f"fold{fold}.pt")
            with torch.no_grad():
                model = cast(NearestNeighbours, knn.model)
                distance, index = nearest(model.features(to_input(torch.as_tensor(full.images[held]), knn.normalize, torch.device("cpu"))),
                                          model.points, max(NEIGHBOUR_KS))
            for k in NEIGHBOUR_KS:
                for p in NEIGHBOUR_VOTE_POWERS:
                    weights = torch.zeros(len(held), 10).scatter_add_(1, model.labels[index[:, :k]], distance[:, :k].clamp_min(1e-6) ** -p)
                    grid[f"k {k}, 1/distance^{p}"][held] = (weights / weights.sum(1, keepdim=True)).numpy()
        probs |= grid
        blends |= {f"{n} in place of knn": [*networks, n] for n in grid}
        report[str(split)] = {"picks": picks, "seconds_5_folds": seconds,
                              "alone": {name: errors(probs[name], labels) for name in ["knn", *newcomers, *grid]},
                              **beside_the_four(probs, labels, rows, blends, newcomer="knn")}
        print(split, {k: v for k, v in report[str(split)].items() if k != "picks"}, flush=True)
    return {"splits": report}


def bench_subsets(data: Path, out: Path, folds: int, *, runs: list[Path]) -> dict[str, object]:
    """The equal-weight blend of every subset of two or more of `runs` (the same run names in each fold split; no
    training): OOF errors per split, their mean and errors per fold, fewest first. A subset picked from this table is
    picked on the rows it is scored on: it bounds what these runs can do together, it does not estimate it."""
    groups = runs_by_split(runs)
    names = [member.path.name for member in groups[0]]
    if any([member.path.name for member in group] != names for group in groups):
        sys.exit("bench: --part subsets needs the same run names, in the same order, in each fold split")
    fold_rows = [[np.asarray(load_checkpoint(group[0].path / f"fold{k}.pt").extra["oof_index"]) for k in range(1, folds + 1)]
                 for group in groups]
    table: list[tuple[float, dict[str, object]]] = []
    for size in range(2, len(names) + 1):
        for subset in combinations(range(len(names)), size):
            per_fold = []
            for group, rows in zip(groups, fold_rows):
                wrong = np.mean([group[i].probs for i in subset], axis=0).argmax(1) != group[0].labels
                per_fold.append([int(wrong[r].sum()) for r in rows])
            mean = float(np.mean([sum(f) for f in per_fold]))
            table.append((mean, {"runs": " + ".join(names[i] for i in subset), "errors": [sum(f) for f in per_fold],
                                 "mean_errors": mean, "per_fold": per_fold}))
    return {"splits": [group[0].split for group in groups], "blends": [row for _, row in sorted(table, key=lambda t: t[0])]}


def oof_probs(ensemble: Ensemble, images: np.ndarray, *, tta: bool) -> np.ndarray:
    """(N, 10): each row predicted by the fold model that never saw it, with or without test-time augmentation."""
    oof = np.zeros((len(images), 10), np.float32)
    for ck in ensemble.members:
        rows = np.asarray(ck.extra["oof_index"])
        oof[rows] = predict_proba(ck.model, images[rows], ck.normalize, bf16=ck.config.bf16, tta=tta)
    return oof


def tta_effect(run: Path, images: np.ndarray, labels: np.ndarray, test: np.ndarray) -> dict[str, object]:
    ensemble = Ensemble.load(run)  # as submit runs it
    first = next(ck for ck in ensemble.members if ck.fold == 1)
    rows, canvases = fold_canvases(first, images)
    report: dict[str, object] = {"models": str(run), "rows": len(images), "tta_views": 1 + len(TTA_ROTATIONS),
                                 "config": first.config.to_dict(), "canvas_rows": len(rows)}
    for tta in (False, True):
        oof = oof_probs(ensemble, images, tta=tta)
        start = time.perf_counter()
        for ck in ensemble.members:  # as submit predicts, with this TTA setting
            predict_proba(ck.model, test, ck.normalize, bf16=ck.config.bf16, tta=tta)
        seconds = time.perf_counter() - start
        on_canvas = predict_proba(first.model, canvases, first.normalize, bf16=first.config.bf16, tta=tta)
        scores = errors_and_loss(oof, labels)
        report["tta" if tta else "plain"] = {"oof_accuracy": 1 - scores["oof_errors"] / len(images), **scores,
                                             "predict_28k_seconds": seconds,
                                             "canvas_errors": errors(on_canvas, labels[rows])}
        print(report, flush=True)
    return report


def cv_run(data: Path, run: Path, folds: int, *flags: str) -> dict[str, object]:
    """One `cv --force` as a user runs it: wall time, peak memory, OOF, per-fold throughput."""
    wall, rss = timed([sys.executable, "-m", "competition", "cv", "--data", str(data), "--out", str(run), "--folds",
                       str(folds), "--force", *flags])
    cv = json.loads((run / "cv_report.json").read_text())
    return {"flags": list(flags), "wall_seconds": wall, "peak_rss_gb": rss, "fold_acc_mean": cv["fold_acc_mean"],
            "fold_acc_std": cv["fold_acc_std"], **run_summary(cv)}


def run_summary(cv: dict[str, Any]) -> dict[str, object]:
    """A cv_report's OOF accuracy, and per fold its accuracy, epochs, time and throughput."""
    return {"oof_accuracy": cv["oof_accuracy"],
            "folds": [{k: f[k] for k in ("fold", "val_acc", "epochs", "seconds", "images_per_s")} for f in cv["folds"]]}


def submit_28k(data: Path, run: Path, out: Path, folds: int) -> dict[str, object]:
    """`submit` of a Kaggle-sized (28,000-row) test file with the run's models: wall time and peak memory."""
    big = out / "test28k.csv"
    if not big.exists():
        frame = pd.DataFrame(kaggle_sized_test(data).reshape(28_000, -1), columns=[f"pixel{i}" for i in range(784)])
        frame.to_csv(big, index=False)
    wall, rss = timed([sys.executable, "-m", "competition", "submit", "--models", str(run), "--data", str(big),
                       "--out", str(out / "submission.csv")])
    return {"wall_seconds": wall, "peak_rss_gb": rss, "models": folds}


def bench_cv(data: Path, out: Path, folds: int) -> dict[str, object]:
    return {"cv_default": cv_run(data, out / "default", folds), "submit_28k": submit_28k(data, out / "default", out, folds)}


def bench_best(data: Path, out: Path, folds: int, plan: Path) -> dict[str, object]:
    """`best` with the plan as a user runs it (on a GPU its runs side by side): wall time, peak memory, each run's OOF,
    time and images/s, the blend's OOF; then `submit` of 28,000 rows with the blend."""
    runs_dir = out / f"best-{plan.stem}"
    wall, rss, blend = timed_best(data, plan, runs_dir, out / "best-submission.csv", "--force")
    runs = {}
    for member in blend["members"]:
        cv = json.loads((Path(member["run"]) / "cv_report.json").read_text())
        runs[Path(member["run"]).name] = {"wall_seconds": cv["wall_seconds"], **run_summary(cv)}
    return {"plan": str(plan), "best": {"wall_seconds": wall, "peak_rss_gb": rss, "blend": blend, "runs": runs},
            "submit_28k": submit_28k(data, runs_dir / "blend", out, len(blend["members"]) * folds)}


EVERY_TIME = ("cv", "tta", "step", "demo")
# hours of training, a GPU or runs
ON_DEMAND = ("arch", "plan", "folds", "misses", "weights", "subsets", "serve", "read", "unsure", "stroke", "smoothing",
             "redraw", "deskew", "neighbours", "neighbour-settings", "neighbour-variants", "best")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with the full train and test files")
    parser.add_argument("--work", type=Path, default=Path("bench"), help="runs and scratch files (default bench/)")
    parser.add_argument("--folds", type=int, default=5, help="K of the cv runs (default 5)")
    parser.add_argument("--part", choices=["all", *EVERY_TIME, *ON_DEMAND], default="all",
                        help=f"what to measure (all: {', '.join(EVERY_TIME)})")
    parser.add_argument("--plan", type=Path, default=ROOT / "competition" / "best.json",
                        help="the plan of --part plan and best (default: the shipped one)")
    parser.add_argument("--models", type=Path, help="the run or blend of --part serve (default: WORK/arch/blend)")
    parser.add_argument("--runs", type=Path, nargs="+", default=[],
                        help="the run folders of --part folds, misses, read, unsure, weights and subsets")
    args = parser.parse_args()
    if args.part in ("folds", "misses", "unsure", "read", "weights", "subsets") and not args.runs:
        parser.error(f"--part {args.part} compares the runs named by --runs RUN [RUN ...]")
    args.work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Callable[[Path, Path, int], Mapping[str, object]]] = {
        "cv": bench_cv, "tta": bench_tta, "step": bench_step, "demo": bench_demo, "arch": bench_arch,
        "plan": partial(bench_plan, plan=args.plan), "folds": partial(bench_folds, runs=args.runs),
        "misses": partial(bench_misses, runs=args.runs), "weights": partial(bench_weights, runs=args.runs),
        "subsets": partial(bench_subsets, runs=args.runs),
        "serve": partial(bench_serve, models=args.models), "read": partial(bench_read, runs=args.runs),
        "unsure": partial(bench_unsure, runs=args.runs),
        "stroke": partial(sample_pairs, flag="stroke", values=(0.0, 0.5), seeds=(42, 43)),
        "smoothing": partial(sample_pairs, flag="label-smoothing", values=(0.0, 0.1), seeds=(42, 43)),
        "redraw": bench_redraw, "deskew": bench_deskew, "neighbours": bench_neighbours,
        "neighbour-settings": bench_neighbour_settings, "neighbour-variants": bench_neighbour_variants,
        "best": partial(bench_best, plan=args.plan)}
    info = host()
    for part, bench in parts.items():
        if args.part == part or (args.part == "all" and part in EVERY_TIME):
            text = json.dumps({"host": info, "command": " ".join(sys.argv), **bench(args.data, args.work, args.folds)}, indent=2)
            last_run = args.runs[-1].name if args.runs else ""
            plan = args.plan.stem.removeprefix("plan-")
            name = {"plan": f"plan-{plan}", "best": f"best-{plan}".removesuffix("-best"),  # one per plan, per compared run
                    "folds": f"folds-{last_run}", "misses": f"misses-{last_run}", "subsets": f"subsets-{last_run}",
                    "weights": "weights-" + "+".join(dict.fromkeys(run.name for run in args.runs)),
                    "unsure": f"unsure-{last_run}", "read": f"read-{last_run}",
                    "serve": f"serve-{args.models.name}" if args.models else "serve"}.get(part, part)
            (RESULTS / result_name(name, info)).write_text(text)
            print(text)


if __name__ == "__main__":
    main()
