"""Read a trial's log file incrementally, one complete line at a time, and keep it small on disk.

The offset only ever advances past complete lines, and it is committed with the metrics those
lines produced, so a restarted engine re-reads exactly what was not yet recorded. A line longer
than the limit is cut (its rest skipped up to the next newline) so that a trial printing 100 MB
without a newline cannot make the engine hold it all in memory.

Disk use is capped without breaking those offsets: the trial writes its log directly (so the log
survives an engine crash), and once a part of the file is recorded in the database the engine
punches a hole in it (``fallocate(FALLOC_FL_PUNCH_HOLE)``). The file keeps its length, so every
offset stays valid and ``tail -f`` works, but only the newest ``keep_bytes`` of recorded output
(plus whatever is not read yet) occupy disk blocks; the punched part reads back as NUL bytes.
Rotating or truncating would move offsets under a trial that holds the file open in append mode.

Progress bars rewrite one line with carriage returns; each segment is a piece of its own, so a
bar that runs for hours never makes a line longer than the cap, and the segment a bar leaves
on screen (no terminator yet) is handed out as soon as it has stayed unchanged for one read,
marked ``partial``, without moving the offset: it is handed out again once it ends. The cap
bounds what is held in memory, never what is read: an over-long piece is handed out in
``max_line_bytes`` parts (marked ``cut``) that overlap a little, so a pattern still matches.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import sys
from pathlib import Path

from ..trials.trial_files import ForeignFile, open_own_log

READ_CHUNK = 1 << 20
MIN_KEEP_BYTES = 64 * 1024  # the failed-trial event quotes the last 2000 bytes: never punch those
PUNCH_GRANULE = 1 << 20  # punch in steps of at least 1 MiB (or the cap, if smaller): few system calls

CUT_OVERLAP = 512  # bytes of an over-long piece repeated at the start of its next part
_TERMINATOR = re.compile(rb"\r?\n|\r")

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def _load_fallocate():  # type: ignore[no-untyped-def]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fallocate.restype = ctypes.c_int
    return fallocate


_fallocate = _load_fallocate()


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the disk blocks of ``[offset, offset + length)`` keeping the file size; False where unsupported."""
    if _fallocate is None or length <= 0:
        return False
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.EBADF, errno.EACCES, errno.EROFS):
        return False
    raise OSError(err, os.strerror(err))


# A line or carriage-return segment of a trial's output, as a plain tuple (millions are made):
# (text, offset just past it (a partial piece: where it starts, nothing consumed), ends_line (a
# newline ended it; False for a carriage return, a cut part or a partial tail), partial (a bar's
# unterminated segment as it stands, handed out again once it ends), cut (a part of a piece
# longer than max_line_bytes)).
Piece = tuple[str, int, bool, bool, bool]


class LogTail:
    def __init__(self, path: Path, offset: int = 0, max_line_bytes: int = 64 * 1024,
                 keep_bytes: int | None = None) -> None:
        self.path = path
        self.offset = offset  # just past the last complete line handed out (or skipped)
        self.max_line_bytes = max_line_bytes
        self.keep_bytes = None if keep_bytes is None else max(keep_bytes, MIN_KEEP_BYTES)
        self.at_eof = False  # the last read reached the end of what the trial has written so far
        self._fd: int | None = None
        self._pending = b""  # bytes read past ``offset`` that do not yet end a line
        self._overlap = b""  # the end of the last part of an over-long piece, repeated in the next
        self._tail_seen = -1  # length of the unterminated tail at the last read
        self._tail_handed = False  # that tail was handed out as a partial piece
        self._handed_out = offset  # just past the last line handed out: recorded once the caller commits
        self._punched = 0  # everything before this has been punched already
        self._punch_fd: int | None = None
        self._punch_ok = keep_bytes is not None
        self._final_size: int | None = None
        self.refused: str | None = None  # why the file is not read (a link, another user's file)
        self.refusal_recorded = False

    def _open(self) -> int | None:
        if self._fd is None and self.refused is None:
            try:
                self._fd = open_own_log(self.path)  # never through a link, never another user's file
            except FileNotFoundError:
                return None
            except OSError as exc:  # a planted link (ELOOP) or a foreign file: not this trial's output
                if not isinstance(exc, ForeignFile) and exc.errno != errno.ELOOP:
                    raise
                self.refused = f"{self.path} not read: {exc.strerror or exc}"
        return self._fd

    def read_lines(self, *, final: bool = False, budget: int = 4 * READ_CHUNK) -> list[tuple[str, int]]:
        """Complete pieces (lines and carriage-return segments) with the offset just past each."""
        return [(p[0], p[1]) for p in self.read_pieces(final=final, budget=budget) if not p[3]]

    def read_pieces(self, *, final: bool = False, budget: int = 4 * READ_CHUNK) -> list[Piece]:
        """New pieces with the offset just past each, at most ``budget`` bytes' worth per call.

        ``final`` (the trial has exited) also returns an unterminated last piece, once the end of
        the file is reached; a caller draining a finished trial calls again until ``at_eof``.
        """
        fd = self._open()
        self.at_eof = False
        if fd is None:
            self.at_eof = True
            return []
        pieces: list[Piece] = []
        if final and self._final_size is None:
            # The trial has exited: read what it wrote, not what a leftover grandchild keeps adding.
            self._final_size = os.fstat(fd).st_size
        self._read_chunks(fd, budget, pieces)
        if final and self.at_eof and self._pending:
            self.offset += len(self._pending)
            pieces.append(self._piece(self._pending, ends_line=True))
            self._pending, self._tail_seen = b"", -1
        elif not final:
            self._hand_out_still_tail(pieces)
        if pieces:
            self._handed_out = self.offset
        return pieces

    def _read_chunks(self, fd: int, budget: int, pieces: list[Piece]) -> None:
        """Read on from the end of what is pending, at most ``budget`` bytes, splitting as it goes."""
        read_pos = self.offset + len(self._pending)
        while True:
            if self._final_size is not None:
                budget = min(budget, self._final_size - read_pos)
            if budget <= 0:
                self.at_eof = self._final_size is not None and read_pos >= self._final_size
                return
            chunk = os.pread(fd, min(READ_CHUNK, budget), read_pos)
            if not chunk:
                self.at_eof = True
                return
            read_pos += len(chunk)
            budget -= len(chunk)
            self._split(self._pending + chunk, pieces)

    def _split(self, data: bytes, pieces: list[Piece]) -> None:
        """Cut ``data`` (pending bytes + a new chunk) at newlines and lone carriage returns."""
        start = 0
        if b"\r" not in data and not self._overlap:  # the common case, as fast as before: newlines only
            append, find = pieces.append, data.find
            while (newline := find(b"\n", start)) >= 0:
                self.offset += newline + 1 - start
                append((_decode(data[start:newline]), self.offset, True, False, False))
                start = newline + 1
        else:
            for match in _TERMINATOR.finditer(data):
                self.offset += match.end() - start
                pieces.append(self._piece(data[start:match.start()], ends_line=match.group() != b"\r"))
                start = match.end()
        self._pending = data[start:]
        if start:
            self._tail_seen = -1
        while len(self._pending) > self.max_line_bytes:
            # Over-long piece: hand it out in parts (memory stays bounded), overlapping a little.
            part = self._pending[: self.max_line_bytes]
            self.offset += len(part)
            pieces.append(self._piece(self._overlap + part, ends_line=False, cut=True))
            self._overlap = part[-CUT_OVERLAP:]
            self._pending = self._pending[self.max_line_bytes:]
            self._tail_seen = -1

    def _piece(self, raw: bytes, *, ends_line: bool, cut: bool = False) -> Piece:
        if self._overlap and not cut:  # the last part of an over-long piece
            raw, cut = self._overlap + raw, True
            self._overlap = b""
        return (_decode(raw), self.offset, ends_line, False, cut)

    def _hand_out_still_tail(self, pieces: list[Piece]) -> None:
        """The unterminated last segment, once it stayed the same for a whole read: a bar's last word."""
        if not self._pending or self._overlap:
            return
        if len(self._pending) == self._tail_seen:
            if not self._tail_handed:
                pieces.append((_decode(self._pending), self.offset, False, True, False))
                self._tail_handed = True
        else:
            self._tail_seen, self._tail_handed = len(self._pending), False

    def trim(self) -> int:
        """Punch out recorded output older than the newest ``keep_bytes``; returns the bytes freed.

        Call only right after the caller committed what it read: everything handed out so far is
        then in the database, and a restarted engine never reads before the committed offset.
        """
        if not self._punch_ok or self.keep_bytes is None:
            return 0
        limit = self._handed_out - self.keep_bytes
        limit -= limit % 4096  # whole file-system blocks: a partial block is zeroed but not freed
        if limit - self._punched < min(PUNCH_GRANULE, self.keep_bytes):
            return 0
        try:
            if self._punch_fd is None:
                self._punch_fd = open_own_log(self.path, os.O_WRONLY)
            if not punch_hole(self._punch_fd, self._punched, limit - self._punched):
                self._punch_ok = False  # this file system cannot: the log simply keeps growing
                return 0
        except OSError:
            self._punch_ok = False
            return 0
        finally:
            if self._fd is None and self._punch_fd is not None:  # trimmed after close: leave no fd behind
                os.close(self._punch_fd)
                self._punch_fd = None
        freed = limit - self._punched
        self._punched = limit
        return freed

    def tail_text(self, max_bytes: int = 2000) -> str:
        """The last bytes of the file, for a failed trial's event."""
        try:
            with open(open_own_log(self.path), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - max_bytes))
                return _decode(f.read()).lstrip("\x00")
        except OSError:
            return ""

    def close(self) -> None:
        for fd in (self._fd, self._punch_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._punch_fd = None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")
