"""Shared fixtures: tiny Kaggle-format files and one tiny trained run, made once per session."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


# Tests that need a trained run, a running demo or a database are `slow`: `make test-fast` leaves them out.
SLOW_FIXTURES = {"tiny_run", "small_run", "demo_server", "postgres", "runs"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m competition ...` as a user does; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "competition", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


PIXELS = [f"pixel{i}" for i in range(784)]


@pytest.fixture
def good_rows() -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [[d] + rng.integers(0, 256, 784).tolist() for d in range(10)]


@pytest.fixture(scope="session")
def sample_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the sample's first 300 train and 40 test rows: quick to predict, real digits."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("sample-head")
    for name, rows in (("train", 300), ("test", 40)):
        with gzip.open(SAMPLE / f"{name}.csv.gz", "rt") as handle:
            pd.read_csv(handle, nrows=rows).to_csv(folder / f"{name}.csv", index=False)
    return folder


# 2 folds x 4 epochs on 1,000 sample rows with the notebook's recipe (Adam at a constant 0.001), 64 steps per fold:
# enough to learn well clear of chance, and stable from run to run. The default recipe's learning rate is a
# one-cycle peak meant for full runs; at this size it is far less stable (docs/training.md).
TINY_CV = ("--data", str(SAMPLE), "--recipe", "seed", "--folds", "2", "--epochs", "4", "--limit", "1000",
           "--batch-size", "32")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY_CV trained through the CLI."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_cli("cv", *TINY_CV, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 folds x 2 epochs on the 10k sample: good enough to read clear drawings."""
    out = tmp_path_factory.mktemp("runs") / "small"
    proc = run_cli("cv", "--data", str(SAMPLE), "--out", str(out), "--folds", "2", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo_server(small_run: Path) -> Iterator[str]:
    """`python -m competition demo` on a free local port; yields its URL."""
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "competition", "demo", "--models", str(small_run), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("demo did not answer within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
