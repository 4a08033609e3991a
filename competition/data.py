"""Kaggle Digit Recognizer files -> validated uint8 arrays, read once.

Accepts `train.csv` / `test.csv`, their `.gz`, Kaggle's `digit-recognizer.zip`, or a folder holding
any of these. Every problem is a UserError naming the file, the line/column and what is wrong.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError

SIDE = 28
PIXELS = [f"pixel{i}" for i in range(SIDE * SIDE)]
DATA_DIR = Path("data")
SAMPLE_DIR = DATA_DIR / "sample"


@dataclass(frozen=True)
class Digits:
    images: np.ndarray  # (N, 28, 28) uint8, white digit on black
    labels: np.ndarray | None  # (N,) int64 in 0..9, None for test files
    source: str  # where they came from, for messages and logs

    def __len__(self) -> int:
        return len(self.images)


def default_data_dir() -> Path:
    """`data/` once `make data` has filled it, else the bundled sample."""
    if any((DATA_DIR / name).exists() for name in ("train.csv", "train.csv.gz", "digit-recognizer.zip")):
        return DATA_DIR
    return SAMPLE_DIR


def is_sample(source: str | Path) -> bool:
    """Whether a data path or a Digits.source (maybe with a zip member or a row limit after it) is the bundled sample."""
    path = Path(source)
    return SAMPLE_DIR.resolve() in (path.resolve(), path.parent.resolve())


def _locate(path: Path, kind: str) -> tuple[Path, str | None]:
    """Resolve a user path to (file, zip member or None) for kind 'train' or 'test'."""
    if path.is_dir():
        for name in (f"{kind}.csv", f"{kind}.csv.gz", "digit-recognizer.zip"):
            if (path / name).exists():
                return _locate(path / name, kind)
        raise UserError(f"{path}: no {kind}.csv, {kind}.csv.gz or digit-recognizer.zip in this folder")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if n.endswith((".csv", ".csv.gz"))]
        except zipfile.BadZipFile as exc:
            raise UserError(f"{path}: not a readable zip file ({exc})") from exc
        named = [n for n in members if Path(n).name in (f"{kind}.csv", f"{kind}.csv.gz")]
        if named:
            return path, named[0]
        if len(members) == 1:
            return path, members[0]
        raise UserError(f"{path}: no {kind}.csv inside (members: {', '.join(members) or 'none'})")
    return path, None


def _read_frame(file: Path, member: str | None, where: str) -> pd.DataFrame:
    try:
        if member is None:
            raw = file.read_bytes()
            name = file.name
        else:
            with zipfile.ZipFile(file) as zf:
                raw = zf.read(member)
            name = member
        if name.endswith(".gz"):
            import gzip

            raw = gzip.decompress(raw)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{where}: cannot read ({exc})") from exc
    if not raw.strip():
        raise UserError(f"{where}: empty file")
    try:
        return pd.read_csv(io.BytesIO(raw), low_memory=False)
    except pd.errors.ParserError as exc:  # e.g. a row with more fields than the header
        raise UserError(f"{where}: malformed CSV: {exc}".strip()) from exc
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: not a CSV file ({exc})") from exc


def _check_columns(columns: list[str], kind: str, where: str) -> None:
    has_label = "label" in columns
    if kind == "test" and has_label:
        raise UserError(f"{where}: has a 'label' column, so it looks like a training file, not test data")
    if kind == "train" and not has_label:
        raise UserError(f"{where}: no 'label' column, so it looks like test data, not a training file")
    expected = (["label"] if kind == "train" else []) + PIXELS
    if columns == expected:
        return
    for i, (got, want) in enumerate(zip(columns, expected)):
        if got != want:
            if got in expected:
                raise UserError(f"{where}: column {i + 1} is {got!r}, expected {want!r} (columns out of order)")
            raise UserError(f"{where}: column {i + 1} is {got!r}, expected {want!r}")
    if len(columns) < len(expected):
        raise UserError(f"{where}: {len(columns)} columns, expected {len(expected)} (missing {expected[len(columns)]!r} on)")
    raise UserError(f"{where}: {len(columns)} columns, expected {len(expected)} (extra column {columns[len(expected)]!r})")


def _first_bad(frame: pd.DataFrame, mask: np.ndarray) -> tuple[int, str]:
    """(line number in the file, column name) of the first True in a row-major mask."""
    row, col = np.argwhere(mask)[0]
    return int(row) + 2, str(frame.columns[col])  # +1 for the header, +1 for 1-based lines


def _to_uint8(frame: pd.DataFrame, where: str) -> np.ndarray:
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in text}) if text else frame
    values = numeric.to_numpy(dtype=np.float64)
    bad_text = numeric.isna().to_numpy() & frame.notna().to_numpy()
    if bad_text.any():
        line, column = _first_bad(frame, bad_text)
        cell = frame.iloc[line - 2][column]
        raise UserError(f"{where}: line {line}, column {column}: {cell!r} is not a number")
    missing = np.isnan(values)
    if missing.any():
        line, column = _first_bad(frame, missing)
        raise UserError(f"{where}: line {line}, column {column}: missing value (short row or empty cell)")
    outside = (values < 0) | (values > 255) | (values != np.round(values))
    if outside.any():
        line, column = _first_bad(frame, outside)
        value = values[line - 2, frame.columns.get_loc(column)]
        raise UserError(f"{where}: line {line}, column {column}: {value:g} is not an integer in 0..255")
    return values.astype(np.uint8)


def read_digits(path: str | Path, kind: str) -> Digits:
    """Read and validate a Kaggle train ('train') or test ('test') file."""
    file, member = _locate(Path(path), kind)
    where = f"{file}:{member}" if member else str(file)
    frame = _read_frame(file, member, where)
    _check_columns([str(c) for c in frame.columns], kind, where)
    if frame.empty:
        raise UserError(f"{where}: header only, no rows")
    values = _to_uint8(frame, where)
    labels = None
    if kind == "train":
        labels = values[:, 0].astype(np.int64)
        if (labels > 9).any():
            line = int(np.argmax(labels > 9)) + 2
            raise UserError(f"{where}: line {line}, column label: {labels[line - 2]} is not a digit 0..9")
        values = values[:, 1:]
    images = np.ascontiguousarray(values.reshape(-1, SIDE, SIDE))
    return Digits(images=images, labels=labels, source=where)


def read_train(path: str | Path) -> Digits:
    return read_digits(path, "train")


def read_test(path: str | Path) -> Digits:
    return read_digits(path, "test")
