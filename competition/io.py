"""Small file helpers: atomic writes, and the versions and commit a result was made with."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


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
