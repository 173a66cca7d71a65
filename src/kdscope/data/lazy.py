"""Arrays read on demand: an ImageSet's pixels (and masks) can be a `LazyArray`, so that an audit of 50,000 images
decodes or renders only the batch it is working on. Indexing reads exactly the images asked for and returns a
plain numpy array; `take` makes a view (a subset, a relabelling) without reading anything."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

Reader = Callable[[np.ndarray], np.ndarray]


class LazyArray:
    """(N, ...) array-like whose rows `read(indices)` produces: indices are positions in the source, in any order,
    and `read` returns their rows in that order. `shape` and `dtype` are known without reading; `source` names
    the data (a generator's spec, files with their sizes and times) so that a cache can be keyed without reading
    every image, and `fingerprint` adds which rows this view holds."""

    ndim: int

    def __init__(self, read: Reader, shape: tuple[int, ...], dtype: np.dtype, *, source: str,
                 index: np.ndarray | None = None) -> None:
        self._read, self._row_shape, self.dtype, self.source = read, tuple(shape[1:]), np.dtype(dtype), source
        self._index = np.arange(shape[0]) if index is None else np.asarray(index, dtype=np.int64)
        self.ndim = 1 + len(self._row_shape)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.source.encode() + self._index.astype("<i8").tobytes()).hexdigest()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._index), *self._row_shape)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, key: int | slice | np.ndarray | list) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._fetch(self._index[[int(key)]])[0]
        return self._fetch(self._index[key])

    def take(self, key: slice | np.ndarray) -> LazyArray:
        """A view of the rows at `key` (positions in this array), read only when indexed."""
        return LazyArray(self._read, (0, *self._row_shape), self.dtype, source=self.source, index=self._index[key])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """Every row at once: only for code that needs the whole set (training), never the audit."""
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)

    def _fetch(self, positions: np.ndarray) -> np.ndarray:
        rows = np.asarray(self._read(positions))
        if rows.shape != (len(positions), *self._row_shape) or rows.dtype != self.dtype:
            raise RuntimeError(f"a lazy reader gave {rows.dtype} {rows.shape} for {len(positions)} rows of "
                               f"{self.dtype} {self._row_shape}")
        return rows


def mapped(array: np.ndarray, source: str) -> LazyArray:
    """A lazy view of an array that is already addressable without reading it whole (a memory map)."""
    return LazyArray(lambda index: np.asarray(array[index]), array.shape, array.dtype, source=source)


def file_identity(*paths: str | Path) -> str:
    """Names, sizes and modification times of files: what identifies their contents without reading them."""
    return json.dumps([[str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths])


def take_rows(array: np.ndarray | LazyArray, key: slice | np.ndarray) -> np.ndarray | LazyArray:
    """The rows at `key`: a view for a lazy array (nothing read), a copy for an in-memory one."""
    return array.take(key) if isinstance(array, LazyArray) else array[key].copy()


class RowCache:
    """Remembers the last read, so that pixels and masks drawn by one rendering call for the same rows are
    rendered once."""

    def __init__(self, render: Callable[[np.ndarray], tuple[np.ndarray, ...]]) -> None:
        self._render = render
        self._last: tuple[bytes, tuple[np.ndarray, ...]] | None = None

    def part(self, which: int) -> Reader:
        def read(positions: np.ndarray) -> np.ndarray:
            key = np.asarray(positions, dtype=np.int64).tobytes()
            if self._last is None or self._last[0] != key:
                self._last = (key, self._render(positions))
            return self._last[1][which]

        return read


def npz_member(path: str | Path, key: str) -> np.ndarray:
    """One array of an .npz file, memory-mapped rather than read: a stored (uncompressed, `np.savez`) member maps
    in place; a compressed one is first inflated, in pieces, to a temporary file that is mapped and unlinked.
    Object arrays are refused, as `np.load(allow_pickle=False)` refuses them."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as file:
                file.seek(info.header_offset)
                name_length, extra_length = struct.unpack("<HH", file.read(30)[26:30])
                file.seek(info.header_offset + 30 + name_length + extra_length)
                shape, fortran, dtype = _npy_header(file, f"{path}:{key}")
                offset = file.tell()
            return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")
        with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as copy, archive.open(info) as member:
            shutil.copyfileobj(member, copy, 1 << 22)
    try:
        with open(copy.name, "rb") as file:
            _npy_header(file, f"{path}:{key}")
        return np.load(copy.name, mmap_mode="r", allow_pickle=False)
    finally:
        os.unlink(copy.name)


def _npy_header(file: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(file)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(file)
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects, which cannot be read without running code; save plain "
                         "numeric arrays")
    return shape, fortran, dtype
