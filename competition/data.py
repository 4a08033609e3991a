"""Kaggle Digit Recognizer files -> validated uint8 arrays, read once; and the K-fold split of them.

Accepts `train.csv` / `test.csv`, their `.gz`, Kaggle's `digit-recognizer.zip`, or a folder holding
any of these. Every problem is a UserError naming the file, the line/column and what is wrong.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .errors import UserError

SIDE = 28
PIXELS = [f"pixel{i}" for i in range(SIDE * SIDE)]
DATA_DIR = Path("data")
SAMPLE_DIR = DATA_DIR / "sample"
KAGGLE_INPUT = Path("/kaggle/input/digit-recognizer")  # where a Kaggle Notebook finds the competition's files


@dataclass(frozen=True)
class Digits:
    images: np.ndarray  # (N, 28, 28) uint8, white digit on black
    labels: np.ndarray | None  # (N,) int64 in 0..9, None for test files
    source: str  # where they came from, for messages and logs

    def __len__(self) -> int:
        return len(self.images)


def default_data_dir() -> Path:
    """`data/` once `make data` has filled it, else the competition's data in a Kaggle Notebook, else the bundled sample."""
    for folder in (DATA_DIR, KAGGLE_INPUT):
        if any((folder / name).exists() for name in ("train.csv", "train.csv.gz", "digit-recognizer.zip")):
            return folder
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


def max_bytes() -> int:
    """The largest CSV text read, decompressed: far above Kaggle's files (train.csv is about 73 MB), far below
    what would exhaust memory. COMPETITION_MAX_CSV_MB raises it."""
    try:
        return int(float(os.environ.get("COMPETITION_MAX_CSV_MB", "256")) * 2**20)
    except ValueError as exc:
        raise UserError(f"COMPETITION_MAX_CSV_MB={os.environ['COMPETITION_MAX_CSV_MB']!r} is not a number of MB") from exc


def _read_capped(stream: IO[bytes], limit: int, where: str) -> bytearray:
    """Everything `stream` yields (decompressing as it goes), refusing to hold more than `limit` bytes."""
    text = bytearray()
    while chunk := stream.read(1 << 20):
        text += chunk
        if len(text) > limit:
            raise UserError(f"{where}: over {limit / 2**20:,.0f} MB of CSV text (Kaggle's train.csv is about 73 MB); "
                            f"if this file is meant to be that large, set COMPETITION_MAX_CSV_MB higher")
    return text


def _read_text(file: Path, member: str | None, where: str) -> bytearray:
    """The file's CSV text, decompressed, within max_bytes(); errors name the file."""
    limit = max_bytes()
    try:
        with contextlib.ExitStack() as stack:
            if member is None:
                stream: IO[bytes] = stack.enter_context(file.open("rb"))
                name = file.name
            else:
                archive = stack.enter_context(zipfile.ZipFile(file))
                stream, name = stack.enter_context(archive.open(member)), member
            if name.endswith(".gz"):
                stream = stack.enter_context(gzip.GzipFile(fileobj=stream))  # type: ignore[arg-type]
            return _read_capped(stream, limit, where)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"{where}: cannot read ({exc})") from exc


def _split_lines(raw: bytearray, where: str) -> tuple[list[str], list[bytearray]]:
    """(column names, data lines). Every line is checked for length and field count before any parsing, so a
    row of the wrong width is refused by line number, not guessed at (pandas would make extra fields an index)."""
    lines = [line.rstrip(b"\r") for line in raw.split(b"\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise UserError(f"{where}: empty file")
    longest = 4 * (SIDE * SIDE + 1) + 64  # "255," per field, and some slack for spaces
    if len(lines[0]) > 16 * longest:
        raise UserError(f"{where}: line 1 is {len(lines[0]):,} bytes long: not a Kaggle digits header")
    header = lines[0].decode("utf-8", errors="replace")
    if header.count(",") < 1 and any(sep in header for sep in (";", "\t", "|")):
        sep = next(sep for sep in (";", "\t", "|") if sep in header)
        raise UserError(f"{where}: the columns are separated by {sep!r}, not commas; save it as a comma-separated file")
    columns = [name.strip().strip('"') for name in header.split(",")]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.count(b",") + 1
        if fields != len(columns):
            hint = " (a trailing comma?)" if fields == len(columns) + 1 and line.endswith(b",") else ""
            raise UserError(f"{where}: line {number} has {fields:,} fields, the header has {len(columns)}{hint}")
        if len(line) > longest:
            raise UserError(f"{where}: line {number} is {len(line):,} bytes long, more than a row of "
                            f"{len(columns)} values can be")
    return columns, lines[1:]


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
    extra = columns[len(expected)]
    hint = " (a trailing comma?)" if extra == "" else ""
    raise UserError(f"{where}: {len(columns)} columns, expected {len(expected)} (extra column {extra!r}){hint}")


def _first_bad(frame: pd.DataFrame, mask: np.ndarray) -> tuple[int, str]:
    """(line number in the file, column name) of the first True in a row-major mask; the frame's index holds
    each row's line number."""
    row, col = np.argwhere(mask)[0]
    return int(frame.index[row]), str(frame.columns[col])


def _to_uint8(frame: pd.DataFrame, where: str, *, high: int = 255, what: str = "an integer in 0..255") -> np.ndarray:
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in text}) if text else frame
    values = numeric.to_numpy(dtype=np.float64)
    bad_text = numeric.isna().to_numpy() & frame.notna().to_numpy()
    if bad_text.any():
        line, column = _first_bad(frame, bad_text)
        cell = frame.loc[line, column]
        raise UserError(f"{where}: line {line}, column {column}: {cell!r} is not a number")
    missing = np.isnan(values)
    if missing.any():
        line, column = _first_bad(frame, missing)
        raise UserError(f"{where}: line {line}, column {column}: missing value (an empty cell)")
    outside = (values < 0) | (values > high) | (values != np.round(values))
    if outside.any():
        line, column = _first_bad(frame, outside)
        value = values[frame.index.get_loc(line), frame.columns.get_loc(column)]
        raise UserError(f"{where}: line {line}, column {column}: {value:g} is not {what}")
    return values.astype(np.uint8)


def _parse(columns: list[str], lines: list[bytearray], kind: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 pixels (N, 784), int64 labels (N,) or None), parsed and validated a block of rows at a time, so memory
    beyond the arrays stays one block's worth."""
    images = np.empty((len(lines), SIDE * SIDE), np.uint8)
    labels = np.empty(len(lines), np.int64) if kind == "train" else None
    block = 16_384  # rows per parse: large enough to keep pandas fast, small enough to keep memory bounded
    for start in range(0, len(lines), block):
        text = b"\n".join(lines[start:start + block])
        try:
            frame = pd.read_csv(io.BytesIO(text), header=None, names=columns, index_col=False, low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"{where}: malformed CSV near line {start + 2}: {str(exc).strip()}") from exc
        frame.index = np.arange(start + 2, start + 2 + len(frame))  # line numbers in the file
        if labels is not None:
            label = frame[["label"]]
            values = _to_uint8(label, where, high=9, what="a digit 0..9")
            labels[start:start + len(frame)] = values[:, 0]
            frame = frame.drop(columns="label")
        images[start:start + len(frame)] = _to_uint8(frame, where)
    return images, labels


def read_digits(path: str | Path, kind: str) -> Digits:
    """Read and validate a Kaggle train ('train') or test ('test') file."""
    file, member = _locate(Path(path), kind)
    where = f"{file}:{member}" if member else str(file)
    columns, lines = _split_lines(_read_text(file, member, where), where)
    _check_columns(columns, kind, where)
    if not lines:
        raise UserError(f"{where}: header only, no rows")
    images, labels = _parse(columns, lines, kind, where)
    return Digits(images=images.reshape(-1, SIDE, SIDE), labels=labels, source=where)


def fold_indices(labels: np.ndarray, *, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, validation) row indices per fold; the same for the same labels and seed."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)[np.unique(labels)]
    if counts.min() < folds:
        raise UserError(f"{folds} folds need at least {folds} rows of every digit present; the rarest has {counts.min()}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def read_train(path: str | Path) -> Digits:
    return read_digits(path, "train")


def read_test(path: str | Path) -> Digits:
    return read_digits(path, "test")
