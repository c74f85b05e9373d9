"""A trial's stdout or stderr: the tail of the file, then new lines as they arrive (follow).

Only the last :data:`TAIL_BYTES` are read on open, whatever the file's size, and following
reads from the last offset, so a trial that printed a gigabyte costs the same as one that
printed a page. Reading happens in a worker thread; the widget only appends lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from textual.widgets import Log

TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class Chunk:
    lines: tuple[str, ...]
    offset: int
    missing: str | None = None


def read_tail(path: str, max_bytes: int = TAIL_BYTES) -> Chunk:
    """The last whole lines of ``path`` within ``max_bytes``, and the offset after them."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(size - start)
    except OSError as exc:
        return Chunk((), 0, f"{path}: {exc.strerror or exc}")
    if start > 0:
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", errors="replace")
    return Chunk(tuple(text.splitlines()), size - (len(data) - end))


def read_more(path: str, offset: int, max_bytes: int = TAIL_BYTES) -> Chunk:
    """Whole lines written after ``offset``; a file that shrank (rotated) is read from its tail again."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return Chunk((), offset, f"{path}: {exc.strerror or exc}")
    if size < offset or size - offset > max_bytes:
        return read_tail(path, max_bytes)
    if size == offset:
        return Chunk((), offset)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size - offset)
    end = data.rfind(b"\n") + 1
    return Chunk(tuple(data[:end].decode("utf-8", errors="replace").splitlines()), offset + end)


class LogView(Log):
    """Textual's Log (virtual, fast on long text) with the offset it has shown up to."""

    DEFAULT_CSS = "LogView { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_lines=20_000, **kwargs)  # type: ignore[arg-type]
        self.file_offset = 0

    def add(self, chunk: Chunk, *, replace: bool = False) -> None:
        if replace:
            self.clear()
        if chunk.missing:
            self.write_line(chunk.missing)
        if chunk.lines:
            self.write_lines(chunk.lines)
        self.file_offset = chunk.offset
