"""Read a trial's log file incrementally, one complete line at a time.

The offset only ever advances past complete lines, and it is committed with the metrics those
lines produced, so a restarted engine re-reads exactly what was not yet recorded. A line longer
than the limit is cut (its rest skipped up to the next newline) so that a trial printing 100 MB
without a newline cannot make the engine hold it all in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

READ_CHUNK = 1 << 20


class LogTail:
    def __init__(self, path: Path, offset: int = 0, max_line_bytes: int = 64 * 1024) -> None:
        self.path = path
        self.offset = offset  # just past the last complete line handed out
        self.max_line_bytes = max_line_bytes
        self._fd: int | None = None
        self._pending = b""  # bytes read past ``offset`` that do not yet end a line
        self._skipping = False  # inside the rest of an over-long line

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fd

    def read_lines(self, *, final: bool = False, budget: int = 4 * READ_CHUNK) -> list[tuple[str, int]]:
        """New complete lines with the offset just past each; ``final`` also returns an unterminated tail."""
        fd = self._open()
        if fd is None:
            return []
        lines: list[tuple[str, int]] = []
        read_pos = self.offset + len(self._pending)
        while budget > 0:
            chunk = os.pread(fd, min(READ_CHUNK, budget), read_pos)
            if not chunk:
                break
            read_pos += len(chunk)
            budget -= len(chunk)
            data = self._pending + chunk
            start = 0
            while True:
                newline = data.find(b"\n", start)
                if newline < 0:
                    break
                raw = data[start:newline]
                self.offset += newline + 1 - start
                if self._skipping:
                    self._skipping = False
                else:
                    lines.append((_decode(raw), self.offset))
                start = newline + 1
            self._pending = data[start:]
            if len(self._pending) > self.max_line_bytes:
                # Over-long line: hand out its head once, then skip to the next newline.
                if not self._skipping:
                    lines.append((_decode(self._pending[: self.max_line_bytes]), self.offset + len(self._pending)))
                self._skipping = True
                self.offset += len(self._pending)
                self._pending = b""
        if final and self._pending:
            self.offset += len(self._pending)
            if not self._skipping:
                lines.append((_decode(self._pending), self.offset))
            self._pending = b""
        return lines

    def tail_text(self, max_bytes: int = 2000) -> str:
        """The last bytes of the file, for a failed trial's event."""
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                f.seek(max(0, size - max_bytes))
                return _decode(f.read())
        except OSError:
            return ""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")
