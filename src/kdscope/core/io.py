"""Atomic file writes, without torch: results and reports use them too, and they never import torch."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]


def atomic_write(path: Path, write: Writer) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    atomic_write_all({Path(path): write})


def atomic_write_all(writers: Mapping[Path, Writer]) -> None:
    """Write several files all or none: every one is written in full beside its target before any is renamed into
    place, so a full disk leaves the old files rather than one new file without its companion."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writers.items():
            staged.append((_staged(Path(path), write), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _staged(path: Path, write: Writer) -> Path:
    """A finished temporary file beside `path` (removed again if writing it fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)
