"""The audit's stage cache: one JSON file per finished stage (its record's plain data), keyed by everything that
changes its result.

An entry is used only when it is whole and consistent: readable JSON with the expected key, a digest that matches
its result, and a result that reads as the stage's record. A truncated, garbled or hand-edited entry is treated as
missing and recomputed, with a warning that says so, never shown as a result and never a reason to stop the
audit."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kdscope.core.io import atomic_write

T = TypeVar("T")


class StaleCacheWarning(UserWarning):
    """A cache entry could not be used and its stage is being recomputed."""


def read_cached_stage(path: Path, key: str, decode: Callable[[object], T]) -> T | None:
    """The cached result for `key` as `decode` reads its plain data, or None (missing, made for other inputs, or
    damaged: then with a warning)."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        if stored.get("key") != key:
            return None
        result = stored["result"]
        if stored.get("digest") != _digest(key, result):
            raise ValueError("its result does not match its digest (edited or damaged)")
        return decode(result)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"the cached stage {path} cannot be used ({error}); recomputing it", StaleCacheWarning,
                      stacklevel=2)
        return None


def write_cached_stage(path: Path, key: str, result: object) -> None:
    """Write `result` (plain JSON data) atomically, so an interrupted run leaves either the old entry or the new
    one, never half of one."""
    record = json.dumps({"key": key, "digest": _digest(key, result), "result": result}).encode()
    atomic_write(path, lambda f: f.write(record))


def _digest(key: str, result: object) -> str:
    return hashlib.sha256((key + json.dumps(result, sort_keys=True)).encode()).hexdigest()
