"""The study file as a file: which one we opened, whether it is ours, and whether it is still there.

Why its own module: the store speaks SQL, but several of its promises are about the file
itself.

* Another application's SQLite file passed to ``--db`` is never written: hpotui adds its tables
  and switches to WAL only in a file it creates, or one that already holds an hpotui study
  (:func:`check_existing`). A path under a regular file, a file that is not a database and a
  file of a newer hpotui are each one line and exit 2 (:class:`DatabaseRefused`).
* A running engine notices when its file is deleted, replaced or truncated under it
  (:class:`FileWatch`: the file's ``(st_dev, st_ino)`` and size, looked at every half second
  of writing), and when SQLite reports damage, an integrity check says what is wrong
  (:func:`integrity_problem`). A damaged file is never written again.
* A finished study on read-only storage still opens: :func:`open_readonly` falls back to an
  immutable snapshot when ``mode=ro`` cannot create the ``-shm`` index beside a WAL file.
* Every URI is built by :func:`sqlite_uri`, so ``#``, ``?`` and ``%`` in a path stay path.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path
from urllib.parse import quote

from ..errors import UserError

WATCH_INTERVAL_S = 0.5
HPOTUI_TABLES = ("studies", "trials", "metrics", "events", "commands")


class DatabaseRefused(UserError):
    """``--db`` names something hpotui must not open or write: one line, exit 2."""


class DatabaseDamaged(sqlite3.OperationalError):
    """The study file was deleted, replaced or truncated while in use, or fails its integrity check.

    An OperationalError so that every place that already stops for an unwritable database
    (disk full) stops for this too; the store refuses every later write.
    """


def sqlite_uri(path: str | os.PathLike[str], **params: str | int) -> str:
    """``file:`` URI of ``path`` (made absolute) with ``?``, ``#``, ``%`` and spaces escaped."""
    absolute = os.path.abspath(os.fspath(path))
    uri = "file:" + quote(absolute, safe="/")
    if params:
        uri += "?" + "&".join(f"{key}={quote(str(value), safe='')}" for key, value in params.items())
    return uri


def sidecar(path: Path, suffix: str) -> Path:
    return Path(str(path) + suffix)


def prepare_new(path: Path) -> bool:
    """Make sure ``path`` can become a new study file; True when it does not exist yet.

    An existing empty file counts as new (``mktemp``), unless something says it held a study a
    moment ago: a ``-wal`` with content beside it, or an ``hpotui_runs`` folder next to it.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        _make_parent(path)
        return True
    except NotADirectoryError:
        raise DatabaseRefused(f"{path}: a folder on this path is a regular file; pass --db a path inside "
                              "a folder") from None
    _check_regular(path, info)
    if info.st_size == 0:
        wal = sidecar(path, "-wal")
        if (wal.exists() and wal.stat().st_size > 0) or (path.parent / "hpotui_runs").is_dir():
            raise DatabaseRefused(f"{path}: the file is empty, but " + (
                f"{wal.name} beside it holds writes" if wal.exists() and wal.stat().st_size > 0
                else "hpotui_runs/ beside it holds studies") + ": it looks like a study database that was "
                "truncated; restore it from a backup, or delete it to start a new one")
    return False


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DatabaseRefused(f"{path}: {_first_file_on(path.parent)} is a regular file, not a folder; "
                              "pass --db a path inside a folder") from None
    except OSError as exc:
        raise DatabaseRefused(f"{path}: cannot create its folder ({exc.strerror or exc}); "
                              "pass --db a path you can write") from None


def _first_file_on(folder: Path) -> Path:
    for parent in reversed((folder, *folder.parents)):
        if parent.exists() and not parent.is_dir():
            return parent
    return folder


def _check_regular(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise DatabaseRefused(f"{path}: is a folder; pass --db the study file (e.g. {path / 'hpotui.db'})")
    if not stat.S_ISREG(info.st_mode):
        raise DatabaseRefused(f"{path}: not a regular file; pass --db the study's hpotui.db")


def check_existing(conn: sqlite3.Connection, path: Path, schema_version: int) -> int:
    """The schema version of an existing file, after making sure it is an hpotui database.

    Only reads: nothing is written to a file that fails here (no tables added, no WAL switch).
    """
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(f"{path}: not an hpotui study database ({exc}); pass --db the hpotui.db "
                              "that `hpotui launch` wrote") from None
    if version > schema_version:
        raise DatabaseRefused(f"{path}: written by a newer hpotui (schema {version}, this one reads up to "
                              f"{schema_version}); upgrade hpotui (pip install -U hpotui)")
    missing = [t for t in HPOTUI_TABLES if t not in tables]
    if version < 1 or missing:
        if not tables and version == 0:
            what = "an empty SQLite database (no tables)"
        else:
            what = "a SQLite file of another application" if version < 1 or len(missing) == len(HPOTUI_TABLES) \
                else f"a damaged hpotui database (missing tables: {', '.join(missing)})"
        raise DatabaseRefused(f"{path}: {what}, not an hpotui study database; hpotui leaves it untouched. "
                              "Pass --db the hpotui.db that `hpotui launch` wrote, or a new path")
    return version


def open_readonly(path: Path, timeout_s: float) -> tuple[sqlite3.Connection, bool]:
    """(connection, immutable): ``mode=ro``, or an immutable snapshot where read-only storage forbids ``-shm``."""
    problem: sqlite3.Error | None = None
    for immutable in (False, True):
        params: dict[str, str | int] = {"mode": "ro"}
        if immutable:
            params["immutable"] = 1
        try:
            conn = sqlite3.connect(sqlite_uri(path, **params), uri=True, timeout=timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # WAL's -shm is made (or not) here
            return conn, immutable
        except sqlite3.OperationalError as exc:  # "unable to open database file": no -shm on read-only storage
            problem = exc
    assert problem is not None
    raise problem


def integrity_problem(path: Path) -> str | None:
    """What SQLite's quick_check finds wrong with the file (first lines), or None when it is sound."""
    try:
        conn, _immutable = open_readonly(path, 5.0)
    except sqlite3.Error as exc:
        return f"it cannot be opened ({exc})"
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        return f"quick_check failed: {exc}"
    finally:
        conn.close()
    return None if rows == ["ok"] else "quick_check: " + "; ".join(str(r) for r in rows)[:300]


class FileWatch:
    """Remembers which file the store opened and how big it has been; says when that stops being so.

    SQLite never shrinks a database file unless it is vacuumed (hpotui never is), so a file
    smaller than it has been was truncated by someone else; another inode at the path means it
    was replaced (restored, copied over); no file means it was deleted, and everything written
    since goes to an unlinked inode that vanishes with the engine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        info = os.stat(path)
        self.identity = (info.st_dev, info.st_ino)
        self.largest = info.st_size
        self._next_look = 0.0

    def problem(self, *, force: bool = False) -> str | None:
        now = time.monotonic()
        if not force and now < self._next_look:
            return None
        self._next_look = now + WATCH_INTERVAL_S
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return f"the study database {self.path} was deleted while in use"
        except OSError as exc:
            return f"the study database {self.path} can no longer be looked at ({exc.strerror or exc})"
        if (info.st_dev, info.st_ino) != self.identity:
            return f"the study database {self.path} was replaced by another file while in use"
        if info.st_size < self.largest:
            return (f"the study database {self.path} was truncated while in use "
                    f"(it was {self.largest:,} bytes, now {info.st_size:,})")
        self.largest = info.st_size
        return None


def explain_error(path: Path, exc: BaseException) -> tuple[str, bool]:
    """(one line for the user, whether the file is damaged) after a database error outside the loop.

    Only a file that is still there, still the same and passes SQLite's integrity check earns
    "nothing recorded is lost"; anything else says what is wrong instead.
    """
    if isinstance(exc, DatabaseDamaged):
        return f"{exc}; nothing more was written to it: restore it from a backup", True
    if not path.exists():
        return f"the study database {path} is gone ({exc}); nothing could be recorded: restore it or pass --db", True
    problem = integrity_problem(path)
    if problem:
        return (f"the study database {path} is damaged ({problem}); hpotui does not write to it: restore it from "
                "a backup"), True
    return (f"database error on {path}: {exc}; free disk space or check the file, then run the command again "
            "(the file passed its integrity check: nothing recorded is lost)"), False
