"""Opening a study file for reading, whoever owns it and wherever it lies.

Why its own module: a colleague opens a finished study from their own account, in a folder they
cannot write, after SQLite removed ``-wal`` and ``-shm``. A plain ``mode=ro`` open then fails,
because a reader of a WAL database must create the ``-shm`` index beside it. SQLite's answer is
``immutable=1``: read the file as it is, with no locking and no shared memory; safe exactly
when nobody writes it any more, which is the case when the folder is not writable for us and
the engine's side files are gone. The URI is built with :meth:`pathlib.Path.as_uri`, so ``#``,
``?`` and ``%`` in a path stay part of the path instead of becoming URI syntax.

A file that is not an hpotui database (a YAML file passed to ``--db``) is refused here with one
line naming the file and the fix; the caller prints it and exits 2.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..engine.database.store import BUSY_TIMEOUT_MS

# SQLite's (primary) result codes for a file no snapshot will read either: not a database, damaged.
_UNREADABLE = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


class NotAStudyDatabase(Exception):
    """The file cannot be read as an hpotui study database; the message is the one line to show."""


@dataclass(frozen=True)
class OpenedDatabase:
    conn: sqlite3.Connection
    immutable: bool  # opened as a frozen snapshot: no -shm could be made, nobody is writing


def readonly_uri(path: str | os.PathLike[str], *, immutable: bool = False) -> str:
    """``file:`` URI of ``path`` with every special character escaped, read-only."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def _connect(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _has_studies(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone() is not None


def open_readonly(path: str | os.PathLike[str]) -> OpenedDatabase:
    """A read-only connection on ``path``; falls back to an immutable snapshot when ``mode=ro`` cannot open.

    Raises :class:`NotAStudyDatabase` for a missing file, a file that is not SQLite, or a SQLite
    file without hpotui's tables.
    """
    shown = os.fspath(path)
    if not Path(path).is_file():
        raise NotAStudyDatabase(f"{shown}: no study database here; start a study with `hpotui launch SPACE` "
                                "or pass --db PATH")
    problem: Exception | None = None
    for immutable in (False, True):
        try:
            conn = _connect(readonly_uri(path, immutable=immutable))
        except sqlite3.Error as exc:
            problem = exc
            continue
        try:
            if _has_studies(conn):
                return OpenedDatabase(conn, immutable)
            conn.close()
            raise NotAStudyDatabase(f"{shown}: a SQLite file without hpotui's tables; pass --db the hpotui.db "
                                    "that `hpotui launch` wrote")
        except sqlite3.DatabaseError as exc:
            conn.close()
            problem = exc
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _UNREADABLE:
                break  # no snapshot will read it either
    raise NotAStudyDatabase(f"{shown}: not a readable hpotui study database ({problem}); pass --db the hpotui.db "
                            "that `hpotui launch` wrote")
