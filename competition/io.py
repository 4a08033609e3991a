"""Small file helpers: atomic writes, and the versions and commit a result was made with."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd


def atomic_write(path: Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file.

    The file gets the permissions any new file of the user gets (mkstemp's are owner-only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, *, what: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in `path`, holding `keys`; a one-line UserError naming the file when it is not one."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file (a {what})") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # truncated, edited, not text
        raise UserError(f"{path}: not a {what}: not JSON ({exc})") from exc
    missing = [key for key in keys if key not in value] if isinstance(value, dict) else list(keys)
    if not isinstance(value, dict) or missing:
        raise UserError(f"{path}: not a {what}: no {', '.join(missing) or 'object'}")
    return value


def read_csv(path: Path, *, what: str, columns: tuple[str, ...], **options: Any) -> pd.DataFrame:
    """The table in `path` (pandas.read_csv with `options`), holding `columns`; a one-line UserError naming the file
    when it is missing, not a table, or lacks a column."""
    import pandas as pd  # late: most users of this module need no pandas

    try:
        table = pd.read_csv(path, **options)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file (a {what})") from exc
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise UserError(f"{path}: not a {what} ({exc})") from exc
    missing = [column for column in columns if column not in table]
    if missing:
        raise UserError(f"{path}: not a {what}: no column {', '.join(missing)}")
    return table


def versions() -> dict[str, str]:
    """The library versions a checkpoint was written with (for the reader of a checkpoint, not for loading)."""
    import numpy
    import torch

    return {"torch": str(torch.__version__), "numpy": numpy.__version__, "python": platform.python_version()}


def git_commit() -> str:
    """The short commit of the working tree, or "" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
