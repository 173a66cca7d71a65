"""Progress for long loops: a live tqdm bar on a terminal; elsewhere (a file, a CI log) one plain line when a loop
ends, because a redrawn bar written to a file is thousands of carriage-return lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, desc: str = "", total: int | None = None, disable: bool = False,
                 leave: bool = True, stream: TextIO | None = None) -> Iterable[T]:
    """tqdm's bar when `stream` (stderr by default) is a terminal or a notebook; otherwise a loop that writes
    '{desc}: {count} in {seconds} s ({rate}/s)' once it ends, or nothing when `leave=False` (a bar that would
    vanish). Both take `set_postfix(...)`."""
    stream = stream or sys.stderr
    if disable or _live(stream):
        return tqdm(iterable, desc=desc, total=total, disable=disable, leave=leave, file=stream)
    return _LineWhenDone(iterable, desc, stream if leave else None)


def progress_line(text: str, *, stream: TextIO | None = None) -> None:
    """One line of progress (an epoch's metrics, a stage starting) that does not break a live bar."""
    stream = stream or sys.stderr
    if _live(stream):
        tqdm.write(text, file=stream)
    else:
        print(text, file=stream, flush=True)


def _live(stream: TextIO) -> bool:
    """A bar redrawn in place only makes sense where a person watches it: a terminal, or Jupyter's widgets."""
    return stream.isatty() or "ipykernel" in sys.modules


class _LineWhenDone(Generic[T]):
    """Iterates like a bar and counts, then writes a single plain line (to `stream`, if any) when the loop ends."""

    def __init__(self, iterable: Iterable[T], desc: str, stream: TextIO | None) -> None:
        self.iterable, self.desc, self.stream, self.postfix = iterable, desc, stream, ""

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def __iter__(self) -> Iterator[T]:
        count, started = 0, time.perf_counter()
        for item in self.iterable:
            yield item
            count += 1
        if self.stream is not None:
            seconds = time.perf_counter() - started
            rate = f"{count / seconds:.2f}/s" if seconds > 0 else "-"
            line = f"{self.desc}: {count} in {seconds:.1f} s ({rate})" + (f", {self.postfix}" if self.postfix else "")
            print(line, file=self.stream, flush=True)


class ImageProgress:
    """Progress of a pass over images, with images/s: tqdm's bar on a terminal or in a notebook; elsewhere one line
    '{desc}: {count} images in {seconds} s ({rate} images/s)' when it closes."""

    def __init__(self, total: int, desc: str, *, disable: bool = False, stream: TextIO | None = None) -> None:
        self.stream, self.desc, self.disable = stream or sys.stderr, desc, disable
        self.count, self.started = 0, time.perf_counter()
        self.bar = (tqdm(total=total, desc=desc, unit="img", file=self.stream)
                    if not disable and _live(self.stream) else None)

    def update(self, images: int) -> None:
        self.count += images
        if self.bar is not None:
            self.bar.update(images)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.disable:
            seconds = time.perf_counter() - self.started
            rate = f"{self.count / seconds:.1f}" if seconds > 0 else "-"
            print(f"{self.desc}: {self.count} images in {seconds:.1f} s ({rate} images/s)", file=self.stream,
                  flush=True)
