"""The study file: schema, migrations, batched writes and read snapshots.

The only engine module that speaks SQL. One SQLite file in WAL mode so that readers (the TUI,
``hpotui status``, a ``sqlite3`` shell) never block the engine; the engine is the single writer
of metrics and batches them with the log offsets they came from, in one transaction, which is
what makes resume exactly-once: a line is either recorded together with the offset past it,
or re-read after a crash.

SQLite stores NaN as NULL, so a NULL metric value means NaN (every recorded value is numeric).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Sequence

from ..space_file.names import MAX_NAME_LENGTH
from ..trials.liveness import HOSTNAME, engine_alive, process_alive  # noqa: F401  # HOSTNAME re-exported for older imports
from . import store_read
from .command_check import check_command
from .dbfile import (DatabaseDamaged, DatabaseRefused, FileWatch, check_existing, integrity_problem, open_readonly,
                     prepare_new, sidecar, sqlite_uri)
from .records import (ENDED_STATUSES, INVALID_STATUSES, STUDY_ENDED_STATUSES, TERMINAL_STATUSES,  # noqa: F401
                      CommandResult, TrialStatus)  # the status groupings are re-exported for older imports

SCHEMA_VERSION = 4
WAL_SIZE_LIMIT = 32 * 1024 * 1024  # journal_size_limit: what a reset WAL is cut back to
WAL_CHECKPOINT_BYTES = 8 * 1024 * 1024  # a WAL above this is truncated at the next heartbeat readers allow
BUSY_TIMEOUT_MS = 30_000
COMMAND_ACTIONS = ("stop_trial", "stop_study", "pause_launching", "resume_launching", "pause_trial",
                   "resume_trial", "set_max_parallel", "clone_trial")
QUEUED_CLAIM_TTL_S = 120.0


def default_db_path() -> str:
    return os.environ.get("HPOTUI_DB") or "hpotui.db"


# Each migration takes the database from version N-1 to N; never edit one that has shipped.
# Migrations go through sqlite-utils' table API; it is imported only when a file is created or
# migrated, because importing it costs ~0.1 s (~0.5 s where pandas is installed) on every start.
def _sqlite_utils() -> Any:
    """sqlite_utils without the pandas / numpy it imports when they are installed (~0.4 s of CPU).

    Migrations use neither; hiding them for the duration of the import makes sqlite_utils take
    its "not installed" path. Anything imported later in the process sees them as usual.
    """
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` now raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
    return sqlite_utils


def _migration_1(db: Any) -> None:  # db: sqlite_utils.Database
    db["studies"].create({
        "id": int, "name": str, "status": str, "objective_metric": str, "objective_mode": str,
        "space_file": str, "space_yaml": str, "space_json": str, "parent_id": int, "stage": int,
        "created_at": float, "started_at": float, "finished_at": float,
        "engine_pid": int, "engine_host": str, "engine_create_time": float, "engine_heartbeat": float,
        "launching_paused": int, "pause_reason": str, "max_parallel": int, "warnings": str,
        "headless": int,
    }, pk="id", not_null={"name", "status"}, defaults={"stage": 1, "launching_paused": 0, "warnings": "[]",
                                                       "headless": 0})
    db["studies"].create_index(["name"], unique=True)
    db["trials"].create({
        "id": int, "study_id": int, "number": int, "status": str, "params": str, "argv": str,
        "sample_index": int, "rerun_of": int, "seed": int, "trial_dir": str, "stdout_path": str,
        "stderr_path": str, "stdout_offset": int, "stderr_offset": int, "reports": int,
        "pid": int, "pgid": int, "proc_create_time": float, "host": str, "gpus": str, "gpu_fraction": float,
        "git_commit": str, "exit_code": int, "status_reason": str, "paused": int, "bracket": int,
        "created_at": float, "started_at": float, "finished_at": float, "last_step": float,
        "best_value": float, "best_step": float, "peak_gpu_memory": int, "mean_gpu_util": float,
    }, pk="id", foreign_keys=[("study_id", "studies", "id")], not_null={"study_id", "number", "status"},
        defaults={"stdout_offset": 0, "stderr_offset": 0, "reports": 0, "paused": 0})
    db["trials"].create_index(["study_id", "number"], unique=True)
    db["trials"].create_index(["status"])
    db["metrics"].create({"id": int, "trial_id": int, "step": float, "name": str, "value": float, "time": float},
                         pk="id")
    db["metrics"].create_index(["trial_id", "name", "step"])
    db["events"].create({"id": int, "study_id": int, "trial_id": int, "time": float, "kind": str, "level": str,
                         "message": str, "data": str}, pk="id")
    db["events"].create_index(["study_id", "id"])
    db["events"].create_index(["trial_id"])
    db.execute(f"""CREATE TABLE commands (
        id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, trial_number INTEGER,
        action TEXT NOT NULL CHECK (action IN ({', '.join(repr(a) for a in COMMAND_ACTIONS)})),
        args TEXT NOT NULL DEFAULT '{{}}', created_at REAL NOT NULL, acknowledged_at REAL, result TEXT)""")
    db["commands"].create_index(["study_id", "acknowledged_at"])
    db["gpu_samples"].create({"id": int, "time": float, "host": str, "gpu": int, "name": str, "util": float,
                              "memory_used": int, "memory_total": int, "temperature": float, "power": float},
                             pk="id")
    db["gpu_samples"].create_index(["host", "time"])
    db["host_samples"].create({"id": int, "time": float, "host": str, "cpu_percent": float, "ram_used": int,
                               "ram_total": int, "load1": float}, pk="id")
    db["host_samples"].create_index(["host", "time"])


def _migration_2(db: Any) -> None:
    """GPU sharing (issue 17): each trial's claimed GPU memory; per GPU sample, what hpotui claims
    (all engines on the host) and what other users' processes hold."""
    db["trials"].add_column("gpu_memory", int)
    db["gpu_samples"].add_column("claimed_memory", int)
    db["gpu_samples"].add_column("claimed_trials", int)
    db["gpu_samples"].add_column("other_memory", int)


def _migration_3(db: Any) -> None:
    """Clones survive a kill -9 (issue 14 item 15): the queue is a table; a clone is done once a trial
    carries its id (written in the trial's own insert, so it runs exactly once)."""
    db.execute("""CREATE TABLE clones (
        id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, command_id INTEGER UNIQUE, source_number INTEGER,
        params TEXT NOT NULL, note TEXT, created_at REAL NOT NULL)""")
    db["clones"].create_index(["study_id"])
    db["trials"].add_column("clone_id", int)
    db["trials"].create_index(["clone_id"])


def _migration_4(db: Any) -> None:
    """A command's acknowledgement says whether it was done (issue 15): ``commands.ok`` is 1 or 0,
    so the sender never guesses severity from the words. Rows acknowledged before stay NULL (unknown)."""
    if "ok" not in db["commands"].columns_dict:  # idempotent: a half-applied migration is re-run safely
        db["commands"].add_column("ok", int)


MIGRATIONS = {1: _migration_1, 2: _migration_2, 3: _migration_3, 4: _migration_4}


@dataclass(frozen=True)
class StudyRow:
    id: int
    name: str
    status: str
    objective_metric: str
    objective_mode: str
    space_file: str
    space_yaml: str
    parent_id: int | None
    stage: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    engine_pid: int | None
    engine_host: str | None
    engine_create_time: float | None
    engine_heartbeat: float | None
    launching_paused: bool
    pause_reason: str | None
    max_parallel: int | None
    warnings: tuple[str, ...]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "StudyRow":
        return cls(id=row["id"], name=row["name"], status=row["status"], objective_metric=row["objective_metric"],
                   objective_mode=row["objective_mode"], space_file=row["space_file"] or "",
                   space_yaml=row["space_yaml"] or "", parent_id=row["parent_id"], stage=row["stage"] or 1,
                   created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
                   engine_pid=row["engine_pid"], engine_host=row["engine_host"],
                   engine_create_time=row["engine_create_time"], engine_heartbeat=row["engine_heartbeat"],
                   launching_paused=bool(row["launching_paused"]), pause_reason=row["pause_reason"],
                   max_parallel=row["max_parallel"], warnings=tuple(json.loads(row["warnings"] or "[]")))


@dataclass(frozen=True)
class TrialRow:
    id: int
    study_id: int
    number: int
    status: str
    params: dict[str, Any]
    argv: list[str]
    sample_index: int | None
    rerun_of: int | None
    trial_dir: str
    stdout_path: str
    stderr_path: str
    stdout_offset: int
    stderr_offset: int
    reports: int
    pid: int | None
    pgid: int | None
    proc_create_time: float | None
    host: str | None
    gpus: str | None
    gpu_fraction: float | None
    exit_code: int | None
    status_reason: str | None
    paused: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    last_step: float | None
    best_value: float | None
    best_step: float | None
    git_commit: str | None = None
    seed: int | None = None
    bracket: int | None = None
    clone_id: int | None = None  # the queued clone (clones table) this trial runs; None for the search's own

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "TrialRow":
        return cls(id=row["id"], study_id=row["study_id"], number=row["number"], status=row["status"],
                   params=json.loads(row["params"] or "{}"), argv=json.loads(row["argv"] or "[]"),
                   sample_index=row["sample_index"], rerun_of=row["rerun_of"], trial_dir=row["trial_dir"] or "",
                   stdout_path=row["stdout_path"] or "", stderr_path=row["stderr_path"] or "",
                   stdout_offset=row["stdout_offset"] or 0, stderr_offset=row["stderr_offset"] or 0,
                   reports=row["reports"] or 0, pid=row["pid"], pgid=row["pgid"],
                   proc_create_time=row["proc_create_time"], host=row["host"], gpus=row["gpus"],
                   gpu_fraction=row["gpu_fraction"], exit_code=row["exit_code"], status_reason=row["status_reason"],
                   paused=bool(row["paused"]), created_at=row["created_at"], started_at=row["started_at"],
                   finished_at=row["finished_at"], last_step=row["last_step"], best_value=row["best_value"],
                   best_step=row["best_step"], git_commit=row["git_commit"], seed=row["seed"], bracket=row["bracket"],
                   clone_id=row["clone_id"] if "clone_id" in row.keys() else None)


@dataclass(frozen=True)
class MetricRow:
    step: float
    name: str
    value: float
    time: float


@dataclass(frozen=True)
class EventRow:
    id: int
    study_id: int
    trial_id: int | None
    time: float
    kind: str
    level: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CommandRow:
    id: int
    study_id: int
    trial_number: int | None
    action: str
    args: dict[str, Any]
    created_at: float
    problem: str | None = None  # "refused: ..." when the row cannot be applied (engine/database/command_check.py)


def _to_db(value: float) -> float | None:
    """NaN becomes NULL (SQLite's own behaviour, made explicit); infinities are stored as is."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _from_db(value: float | None) -> float:
    return math.nan if value is None else value


def connect(path: str | os.PathLike[str], *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the settings every hpotui process uses (WAL, long busy timeout).

    Read-only connections go through an escaped ``file:`` URI (``#``, ``?``, ``%`` in a path).
    """
    if readonly:
        conn = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False)
    else:
        conn = _plain_connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        _writer_settings(conn)
    return conn


def _plain_connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A writable connection that has not written anything yet (no journal-mode switch)."""
    conn = sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _writer_settings(conn: sqlite3.Connection) -> None:
    """WAL for readers that never block the engine, with the WAL bounded once a checkpoint resets it."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row ``cur`` just inserted. sqlite3 types ``lastrowid`` as Optional (None
    before any INSERT); after an INSERT it is always set, so None here means a broken driver."""
    rowid = cur.lastrowid
    if rowid is None:
        raise sqlite3.DatabaseError("an INSERT returned no row id")
    return rowid


def _may_be_corrupt(exc: BaseException) -> bool:
    """An error that can mean a damaged file (not a full disk or a held lock)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)) \
        or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text


class EngineLocked(Exception):
    """Another live engine holds the study."""


class Store:
    """One process's handle on the study file; the engine's instance buffers metric writes."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> None:
        """Open the study file; raises dbfile.DatabaseRefused (one line, exit 2) for a file hpotui must not use.

        ``create``: a missing (or empty) file becomes a new study database; without it the file
        must already be one. ``readonly`` (status, export): nothing is written, and a finished
        study on read-only storage opens as an immutable snapshot (``self.immutable``).
        Nothing is written to an existing file before it proved to be an hpotui database.
        """
        self.path = Path(path)
        self.damaged: str | None = None  # set once the file was found deleted, replaced, truncated or corrupt
        self.immutable = False
        self.watch: FileWatch | None = None
        self._init_buffers()
        if readonly:
            self._open_readonly()
            return
        created = prepare_new(self.path) if create else False
        if not create and not self.path.is_file():
            raise DatabaseRefused(f"{self.path}: no study database here; pass --db PATH or set HPOTUI_DB")
        if created:
            # Owner-only from the first byte: the box is shared and params/commands are private.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        fresh = created or (create and self.path.stat().st_size == 0)
        self.conn = _plain_connect(self.path)
        if not fresh:
            check_existing(self.conn, self.path, SCHEMA_VERSION)
        _writer_settings(self.conn)
        self._migrate()
        self.watch = FileWatch(self.path)
        if created:
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.chmod(side, 0o600)

    def _init_buffers(self) -> None:
        self._metric_buffer: list[tuple[int, float, str, float | None, float]] = []
        self._offset_buffer: dict[int, tuple[Any, ...]] = {}
        self._event_buffer: list[tuple[int, int | None, float, str, str, str, str]] = []
        self._params_cache: dict[int, dict[str, Any]] = {}  # trial id -> parsed params (never change)

    def _open_readonly(self) -> None:
        if not self.path.is_file():
            raise DatabaseRefused(f"{self.path}: no study database here; pass --db PATH or set HPOTUI_DB")
        try:
            self.conn, self.immutable = open_readonly(self.path, BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise DatabaseRefused(f"{self.path}: cannot open the study database ({exc}); check --db") from None
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        check_existing(self.conn, self.path, SCHEMA_VERSION)

    # -- schema -----------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DatabaseRefused(f"{self.path}: written by a newer hpotui (schema {version}); upgrade hpotui")
            if version < SCHEMA_VERSION:
                db = _sqlite_utils().Database(self.conn)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[target](db)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    # -- transactions ----------------------------------------------------------------------
    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            elif self.conn.in_transaction:  # SQLite already rolled back on disk full / I/O errors
                self.conn.execute("ROLLBACK")

    def transaction(self) -> "Store._Tx":
        """A write transaction taken up front (BEGIN IMMEDIATE) so it never fails half-way on a lock.

        Refused (DatabaseDamaged) once the file is known to be damaged: nothing is ever written
        over a file that was deleted, replaced or truncated under us.
        """
        self.check_file()
        return Store._Tx(self.conn)

    # -- the file itself (engine/database/dbfile.py) ---------------------------------------------------
    def check_file(self, *, force: bool = False) -> None:
        """Raise DatabaseDamaged if the file is gone, replaced or truncated (looked at twice a second)."""
        if self.damaged is None and self.watch is not None:
            self.damaged = self.watch.problem(force=force)
        if self.damaged is not None:
            raise DatabaseDamaged(self.damaged)

    def diagnose(self, exc: BaseException) -> str | None:
        """After a database error: what is wrong with the file itself, or None when it is sound.

        The file's identity and size are looked at always; SQLite's integrity check runs when
        the error says the file may be damaged. A problem found is kept: no write follows it.
        """
        if self.damaged is None and self.watch is not None:
            self.damaged = self.watch.problem(force=True)
        if self.damaged is None and _may_be_corrupt(exc):
            found = integrity_problem(self.path)
            if found:
                self.damaged = f"the study database {self.path} is damaged ({found})"
        return self.damaged

    def leave_wal(self) -> bool:
        """Back to a rollback journal once no one else has the file open, so that a finished study
        opens read-only from storage where no ``-shm`` can be created; True when it switched."""
        if self.damaged is not None:
            return False
        try:
            self.conn.execute("PRAGMA busy_timeout = 0")
            mode = self.conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        except sqlite3.Error:  # another engine or a reader has it open: it stays WAL (and opens immutable)
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return str(mode).lower() == "delete"

    def checkpoint_if_large(self) -> None:
        """Truncate the WAL once readers let go of it; never waits for them (busy timeout 0)."""
        if self.damaged is not None:
            return
        try:
            size = os.stat(sidecar(self.path, "-wal")).st_size
        except OSError:
            return
        if size < WAL_CHECKPOINT_BYTES:
            return
        try:
            self.conn.execute("PRAGMA busy_timeout = 0")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # (busy, frames, copied)
        except sqlite3.OperationalError:
            pass  # a reader still holds an old snapshot: the next heartbeat tries again
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    # -- studies -----------------------------------------------------------------------------
    def create_study(self, *, name: str, objective_metric: str, objective_mode: str, space_file: str,
                     space_yaml: str, space_json: str, parent_id: int | None, max_parallel: int,
                     headless: bool) -> StudyRow:
        now = time.time()
        stage = 1
        if parent_id is not None:
            parent = self.study_by_id(parent_id)
            stage = (parent.stage if parent else 0) + 1
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO studies (name, status, objective_metric, objective_mode, space_file, space_yaml, "
                "space_json, parent_id, stage, created_at, max_parallel, headless) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, objective_metric, objective_mode, space_file, space_yaml, space_json, parent_id, stage, now,
                 max_parallel, int(headless)))
            study_id = _inserted_id(cur)
        study = self.study_by_id(study_id)
        if study is None:  # the row this connection just committed: only a lost write gets here
            raise sqlite3.DatabaseError(f"study {study_id} was inserted but cannot be read back")
        return study

    def unused_study_name(self, name: str) -> str:
        """``name`` if free, else ``name-2``, ``name-3`` ...: two launches never share trials.

        The base is shortened when the suffix would push the name past names.MAX_NAME_LENGTH.
        """
        taken = {r[0] for r in self.conn.execute("SELECT name FROM studies WHERE name = ? OR name LIKE ?",
                                                 (name, name[:MAX_NAME_LENGTH - 8] + "%"))}
        if name not in taken:
            return name
        n = 2
        while True:
            suffix = f"-{n}"
            candidate = name[:MAX_NAME_LENGTH - len(suffix)] + suffix
            if candidate not in taken:
                return candidate
            n += 1

    def study(self, name: str) -> StudyRow | None:
        row = self.conn.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        return StudyRow.from_row(row) if row else None

    def study_by_id(self, study_id: int) -> StudyRow | None:
        row = self.conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        return StudyRow.from_row(row) if row else None

    def studies(self) -> list[StudyRow]:
        return [StudyRow.from_row(r) for r in self.conn.execute("SELECT * FROM studies ORDER BY id")]

    def space_json(self, study_id: int) -> dict[str, Any]:
        row = self.conn.execute("SELECT space_json FROM studies WHERE id = ?", (study_id,)).fetchone()
        return json.loads(row[0] or "{}") if row else {}

    def set_space_json(self, study_id: int, value: dict[str, Any]) -> None:
        """Where the study's project folder is now (engine/space_file/relocate.py, after it moved)."""
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET space_json = ? WHERE id = ?", (json.dumps(value), study_id))

    def set_study_status(self, study_id: int, status: str) -> None:
        now = time.time()
        finished = now if status in STUDY_ENDED_STATUSES else None
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET status = ?, finished_at = ?, "
                         "started_at = COALESCE(started_at, ?) WHERE id = ?", (status, finished, now, study_id))

    def set_launching_paused(self, study_id: int, paused: bool, reason: str | None = None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET launching_paused = ?, pause_reason = ? WHERE id = ?",
                         (int(paused), reason if paused else None, study_id))

    def set_max_parallel(self, study_id: int, value: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET max_parallel = ? WHERE id = ?", (value, study_id))

    def set_warnings(self, study_id: int, warnings: Sequence[str]) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET warnings = ? WHERE id = ?", (json.dumps(list(warnings)), study_id))

    def children(self, study_id: int) -> list[StudyRow]:
        return [StudyRow.from_row(r) for r in
                self.conn.execute("SELECT * FROM studies WHERE parent_id = ? ORDER BY id", (study_id,))]

    # -- the engine lock -----------------------------------------------------------------------
    def acquire_engine_lock(self, study_id: int, pid: int, create_time: float) -> None:
        """Claim the study for this engine; a dead engine's claim is taken over silently.

        Whether the holder lives is asked of the OS (psutil) before the IMMEDIATE transaction
        opens, so no other writer waits on a process lookup; inside it, the claim is taken only
        if the holder is still the one judged (another engine claiming in between is judged anew).
        """
        while True:
            seen = self.study_by_id(study_id)
            if seen is None:
                raise sqlite3.DatabaseError(f"study {study_id} does not exist")
            locked = bool(seen.engine_pid) and not (seen.engine_pid == pid and seen.engine_host == HOSTNAME) \
                and engine_alive(seen)
            with self.transaction() as conn:
                row = conn.execute("SELECT engine_pid, engine_host, engine_create_time FROM studies WHERE id = ?",
                                   (study_id,)).fetchone()
                if tuple(row) != (seen.engine_pid, seen.engine_host, seen.engine_create_time):
                    continue  # claimed by another engine since the look: judge that one
                if locked:
                    raise EngineLocked(f"study {seen.name!r} is already run by engine pid {seen.engine_pid} on "
                                       f"{seen.engine_host}; watch it with `hpotui` or stop it with "
                                       f"`hpotui stop {seen.name}`")
                conn.execute("UPDATE studies SET engine_pid = ?, engine_host = ?, engine_create_time = ?, "
                             "engine_heartbeat = ? WHERE id = ?", (pid, HOSTNAME, create_time, time.time(), study_id))
                return

    def heartbeat(self, study_id: int) -> None:
        """The engine's sign of life every few seconds; also where the WAL is cut back (checkpoint_if_large)."""
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET engine_heartbeat = ? WHERE id = ?", (time.time(), study_id))
        self.checkpoint_if_large()

    def release_engine_lock(self, study_id: int, pid: int) -> None:
        """The engine lets go of the study; the file leaves WAL when nobody else has it open (leave_wal)."""
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET engine_pid = NULL, engine_heartbeat = NULL "
                         "WHERE id = ? AND engine_pid = ?", (study_id, pid))
        self.leave_wal()

    # -- trials ----------------------------------------------------------------------------------
    def add_trial(self, *, study_id: int, params: dict[str, Any], argv: list[str], trial_dir: str,
                  stdout_path: str, stderr_path: str, sample_index: int | None, rerun_of: int | None,
                  seed: int | None, number: int | None = None, bracket: int | None = None,
                  gpu_picker: Callable[[list[tuple[str, float]]], tuple[str, float] | None] | None = None,
                  clone_id: int | None = None) -> TrialRow | None:
        """Insert a queued trial; with ``gpu_picker``, only if it finds GPUs.

        The picker sees every GPU claim on this host (any study, any engine) and the chosen GPUs
        are written in the same IMMEDIATE transaction, so two engines placing at once can never
        both take the last free GPU. Returns None when the picker found no room.
        """
        now = time.time()
        gpus, fraction = None, None
        dead = self._dead_claimants(HOSTNAME) if gpu_picker is not None else frozenset()  # psutil, before the lock
        with self.transaction() as conn:
            if gpu_picker is not None:
                picked = gpu_picker(self._gpu_claims(conn, HOSTNAME, dead))
                if picked is None:
                    return None
                gpus, fraction = picked
            if number is None:
                number = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM trials WHERE study_id = ?",
                                      (study_id,)).fetchone()[0]
            cur = conn.execute(
                "INSERT INTO trials (study_id, number, status, params, argv, sample_index, rerun_of, seed, "
                "trial_dir, stdout_path, stderr_path, created_at, bracket, host, gpus, gpu_fraction, clone_id) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (study_id, number, json.dumps(params), json.dumps(argv), sample_index, rerun_of, seed, trial_dir,
                 stdout_path, stderr_path, now, bracket, HOSTNAME, gpus, fraction, clone_id))
            trial_id = _inserted_id(cur)
        return self.trial(trial_id)

    # -- clones (a queue that survives the engine) -------------------------------------------------
    def queue_clone(self, study_id: int, *, command_id: int | None, source_number: int, params: dict[str, Any],
                    note: str | None, result: str) -> int | None:
        """Queue a clone and acknowledge its command in one transaction; None if that command queued one already."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO clones (study_id, command_id, source_number, params, note, "
                               "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (study_id, command_id, source_number, json.dumps(params), note, time.time()))
            if command_id is not None:
                conn.execute("UPDATE commands SET acknowledged_at = ?, result = ?, ok = 1 WHERE id = ?",
                             (time.time(), result, command_id))
            return cur.lastrowid if cur.rowcount else None

    def pending_clones(self, study_id: int) -> list[tuple[int, int, dict[str, Any], str | None]]:
        """(clone id, source trial number, params, note) of queued clones no trial runs yet, oldest first."""
        return [(c.clone_id, c.source_number, c.params, c.note) for c in store_read.queued_clones(self.conn, study_id)]

    def clone_note(self, clone_id: int) -> str | None:
        row = self.conn.execute("SELECT note FROM clones WHERE id = ?", (clone_id,)).fetchone()
        return row[0] if row else None

    def next_trial_number(self, study_id: int) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM trials WHERE study_id = ?",
                                 (study_id,)).fetchone()[0]

    def update_trial_argv(self, trial_id: int, argv: list[str]) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET argv = ? WHERE id = ?", (json.dumps(argv), trial_id))

    def mark_running(self, trial_id: int, *, pid: int, pgid: int, proc_create_time: float,
                     git_commit: str | None, host: str = HOSTNAME) -> None:
        self.flush()
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET status = 'running', pid = ?, pgid = ?, proc_create_time = ?, host = ?, "
                         "git_commit = ?, started_at = ? WHERE id = ?",
                         (pid, pgid, proc_create_time, host, git_commit, time.time(), trial_id))

    def set_trial_bracket(self, trial_id: int, bracket: int | None) -> None:
        """The Hyperband bracket the scheduler dealt the trial, written as it starts so resume restores it."""
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET bracket = ? WHERE id = ?", (bracket, trial_id))

    def finish_trial(self, trial_id: int, status: str, *, exit_code: int | None, reason: str | None) -> None:
        """Flushes buffered metrics first, so a finished trial never has reports still in memory."""
        self.flush()
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET status = ?, exit_code = ?, status_reason = ?, finished_at = ?, "
                         "paused = 0 WHERE id = ?", (status, exit_code, reason, time.time(), trial_id))

    def set_trial_paused(self, trial_id: int, paused: bool) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET paused = ? WHERE id = ?", (int(paused), trial_id))

    def set_trial_usage(self, trial_id: int, peak_gpu_memory: int | None, mean_gpu_util: float | None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET peak_gpu_memory = ?, mean_gpu_util = ? WHERE id = ?",
                         (peak_gpu_memory, mean_gpu_util, trial_id))

    def set_trial_gpu_memory(self, trial_id: int, claimed_bytes: int | None) -> None:
        """The GPU memory a ``gpu_memory`` trial claimed (its fraction already holds the same share)."""
        with self.transaction() as conn:
            conn.execute("UPDATE trials SET gpu_memory = ? WHERE id = ?", (claimed_bytes, trial_id))

    def measured_gpu_memory(self, study_id: int) -> list[tuple[dict[str, Any], int]]:
        """(params, peak GPU bytes) of the study's finished trials whose peak was measured (gpu_memory: auto)."""
        marks = ",".join("?" * len(TERMINAL_STATUSES))
        rows = self.conn.execute(f"SELECT params, peak_gpu_memory FROM trials WHERE study_id = ? AND status IN "
                                 f"({marks}) AND status != 'failed' AND peak_gpu_memory > 0",
                                 (study_id, *TERMINAL_STATUSES))
        return [(json.loads(p or "{}"), int(peak)) for p, peak in rows]

    def trial(self, trial_id: int) -> TrialRow | None:
        row = self.conn.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        return TrialRow.from_row(row) if row else None

    def trial_by_number(self, study_id: int, number: int) -> TrialRow | None:
        row = self.conn.execute("SELECT * FROM trials WHERE study_id = ? AND number = ?",
                                (study_id, number)).fetchone()
        return TrialRow.from_row(row) if row else None

    def trials(self, study_id: int, statuses: Iterable[str] | None = None) -> list[TrialRow]:
        if statuses is None:
            rows = self.conn.execute("SELECT * FROM trials WHERE study_id = ? ORDER BY number", (study_id,))
        else:
            statuses = tuple(statuses)
            marks = ",".join("?" * len(statuses))
            rows = self.conn.execute(f"SELECT * FROM trials WHERE study_id = ? AND status IN ({marks}) "
                                     "ORDER BY number", (study_id, *statuses))
        return [TrialRow.from_row(r) for r in rows]

    def ranked_results(self, study_id: int, statuses: Collection[str]) -> list[tuple[dict[str, Any], float]]:
        """(params, best value) of the trials in ``statuses`` with a finite best value, by trial number.

        The engine asks after every finished trial (boundary warnings): two columns and each
        trial's params parsed once per Store, not a full TrialRow per trial per call (that made
        a study quadratic in its trial count).
        """
        marks = ",".join("?" * len(statuses))
        rows = self.conn.execute(f"SELECT id, params, best_value FROM trials WHERE study_id = ? AND status IN "
                                 f"({marks}) AND best_value IS NOT NULL ORDER BY number", (study_id, *statuses))
        results = []
        for trial_id, params, value in rows:
            if not math.isfinite(value):
                continue
            parsed = self._params_cache.get(trial_id)
            if parsed is None:
                parsed = self._params_cache[trial_id] = json.loads(params or "{}")
            results.append((parsed, value))
        return results

    def status_counts(self, study_id: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM trials WHERE study_id = ? GROUP BY status",
                                      (study_id,)).fetchall())

    def data_version(self) -> int:
        """Changes whenever another connection commits: a free check before looking for commands."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def running_gpu_claims(self, host: str = HOSTNAME) -> list[tuple[str, float]]:
        """(gpus, fraction) of every queued or running trial on this host, whatever study or engine owns it."""
        return self._gpu_claims(self.conn, host, self._dead_claimants(host))

    _CLAIMS_SQL = ("SELECT status, gpus, gpu_fraction, pid, proc_create_time, created_at FROM trials "
                   "WHERE status IN ('queued', 'running') AND host = ? AND gpus IS NOT NULL AND gpus != ''")

    def _dead_claimants(self, host: str) -> frozenset[tuple[int | None, float | None]]:
        """(pid, start time) of running GPU trials whose process is gone, asked of the OS outside any transaction.

        A trial that starts running after this look is counted as holding its GPUs: at worst one
        placement waits for a GPU that a dead trial held, never two trials on one GPU.
        """
        rows = self.conn.execute(self._CLAIMS_SQL, (host,)).fetchall()
        return frozenset((pid, create_time) for status, _, _, pid, create_time, _ in rows
                         if status == TrialStatus.RUNNING and not process_alive(pid, create_time))

    @classmethod
    def _gpu_claims(cls, conn: sqlite3.Connection, host: str,
                    dead: Collection[tuple[int | None, float | None]]) -> list[tuple[str, float]]:
        """Claims of live trials only: a crashed engine's trials that died with it (``dead``) hold no GPU."""
        rows = conn.execute(cls._CLAIMS_SQL, (host,))
        now = time.time()
        claims = []
        for status, gpus, fraction, pid, create_time, created_at in rows:
            if status == TrialStatus.RUNNING and (pid, create_time) in dead:
                continue
            if status == TrialStatus.QUEUED and now - (created_at or now) > QUEUED_CLAIM_TTL_S:
                continue  # its engine died between the insert and the start
            claims.append((gpus, fraction if fraction is not None else 1.0))
        return claims

    # -- metrics (buffered) -----------------------------------------------------------------------
    def buffer_metrics(self, trial_id: int, step: float, values: dict[str, float], at: float) -> None:
        for name, value in values.items():
            self._metric_buffer.append((trial_id, step, name, _to_db(value), at))

    def buffer_progress(self, trial_id: int, *, stdout_offset: int, stderr_offset: int, reports: int,
                        last_step: float | None, best_value: float | None, best_step: float | None) -> None:
        """Log offsets are written in the same transaction as the metrics read before them."""
        self._offset_buffer[trial_id] = (stdout_offset, stderr_offset, reports, last_step,
                                         None if best_value is None else _to_db(best_value), best_step)

    def buffer_event(self, study_id: int, trial_id: int | None, kind: str, message: str, *, level: str = "info",
                     data: dict[str, Any] | None = None) -> None:
        self._event_buffer.append((study_id, trial_id, time.time(), kind, level, message,
                                   json.dumps(data or {}, allow_nan=True)))

    def pending_writes(self) -> int:
        return len(self._metric_buffer) + len(self._event_buffer) + len(self._offset_buffer)

    def flush(self) -> int:
        """Write everything buffered in one transaction; the buffers survive a failed commit."""
        if not (self._metric_buffer or self._offset_buffer or self._event_buffer):
            return 0
        metrics, offsets, events = self._metric_buffer, self._offset_buffer, self._event_buffer
        with self.transaction() as conn:
            if metrics:
                conn.executemany("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                                 metrics)
            if offsets:
                conn.executemany("UPDATE trials SET stdout_offset = ?, stderr_offset = ?, reports = ?, "
                                 "last_step = COALESCE(?, last_step), best_value = COALESCE(?, best_value), "
                                 "best_step = COALESCE(?, best_step) WHERE id = ?",
                                 [(*v, k) for k, v in offsets.items()])
            if events:
                conn.executemany("INSERT INTO events (study_id, trial_id, time, kind, level, message, data) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        self._metric_buffer, self._offset_buffer, self._event_buffer = [], {}, []
        return len(metrics)

    def metrics(self, trial_id: int, name: str | None = None) -> list[MetricRow]:
        if name is None:
            rows = self.conn.execute("SELECT step, name, value, time FROM metrics WHERE trial_id = ? ORDER BY id",
                                     (trial_id,))
        else:
            rows = self.conn.execute("SELECT step, name, value, time FROM metrics WHERE trial_id = ? AND name = ? "
                                     "ORDER BY id", (trial_id, name))
        return [MetricRow(r[0], r[1], _from_db(r[2]), r[3]) for r in rows]

    def first_values(self, study_id: int, names: Iterable[str]) -> Iterator[tuple[int, str, float]]:
        """(trial_id, name, value): each trial's first recorded value of each of ``names`` (health's
        study-level reference when a study resumes); one pass over the index, not the whole table."""
        names = tuple(dict.fromkeys(names))
        if not names:
            return
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            f"SELECT m.trial_id, m.name, m.value, MIN(m.id) FROM metrics m WHERE m.name IN ({marks}) AND m.trial_id IN "
            "(SELECT id FROM trials WHERE study_id = ?) GROUP BY m.trial_id, m.name", (*names, study_id))
        for trial_id, name, value, _ in rows:
            yield trial_id, name, _from_db(value)

    def metric_history(self, study_id: int, name: str) -> Iterator[tuple[int, float, float]]:
        """(trial_id, step, value) of one metric over a whole study in recording order (scheduler replay)."""
        rows = self.conn.execute("SELECT m.trial_id, m.step, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id "
                                 "WHERE t.study_id = ? AND m.name = ? ORDER BY m.id", (study_id, name))
        for trial_id, step, value in rows:
            yield trial_id, step, _from_db(value)

    def metric_counts(self, trial_id: int) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, COUNT(*) FROM metrics WHERE trial_id = ? GROUP BY name",
                                      (trial_id,)).fetchall())

    def last_values(self, trial_id: int) -> dict[str, float]:
        rows = self.conn.execute(
            "SELECT name, value FROM metrics WHERE id IN (SELECT MAX(id) FROM metrics WHERE trial_id = ? GROUP BY name)",
            (trial_id,))
        return {r[0]: _from_db(r[1]) for r in rows}

    def metric_count(self, study_id: int | None = None) -> int:
        if study_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id "
                                 "WHERE t.study_id = ?", (study_id,)).fetchone()[0]

    # -- events ------------------------------------------------------------------------------------
    def add_event(self, study_id: int, trial_id: int | None, kind: str, message: str, *, level: str = "info",
                  data: dict[str, Any] | None = None) -> None:
        self.buffer_event(study_id, trial_id, kind, message, level=level, data=data)
        self.flush()

    def events(self, study_id: int, *, trial_id: int | None = None, kinds: Sequence[str] | None = None,
               after_id: int = 0) -> list[EventRow]:
        sql = "SELECT * FROM events WHERE study_id = ? AND id > ?"
        args: list[Any] = [study_id, after_id]
        if trial_id is not None:
            sql += " AND trial_id = ?"
            args.append(trial_id)
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        rows = self.conn.execute(sql + " ORDER BY id", args)
        return [EventRow(r["id"], r["study_id"], r["trial_id"], r["time"], r["kind"], r["level"], r["message"],
                         json.loads(r["data"] or "{}")) for r in rows]

    # -- commands -----------------------------------------------------------------------------------
    def send_command(self, study_id: int, action: str, *, trial_number: int | None = None,
                     args: dict[str, Any] | None = None) -> int:
        """Ask the study's engine to act; only the fixed COMMAND_ACTIONS exist (the table enforces it)."""
        if action not in COMMAND_ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO commands (study_id, trial_number, action, args, created_at) "
                               "VALUES (?, ?, ?, ?, ?)", (study_id, trial_number, action, json.dumps(args or {}),
                                                         time.time()))
            return _inserted_id(cur)

    def pending_commands(self, study_id: int) -> list[CommandRow]:
        """Unacknowledged commands, each checked: a malformed row comes back with its ``problem`` set."""
        rows = self.conn.execute("SELECT * FROM commands WHERE study_id = ? AND acknowledged_at IS NULL ORDER BY id",
                                 (study_id,))
        commands = []
        for r in rows:
            checked = check_command(r["action"], r["trial_number"], r["args"], COMMAND_ACTIONS)
            commands.append(CommandRow(r["id"], r["study_id"], r["trial_number"], str(r["action"]), checked.args,
                                       r["created_at"], checked.problem))
        return commands

    def acknowledge_command(self, command_id: int, result: str | CommandResult) -> None:
        """Record the engine's answer; plain text counts as done (a refusal passes a CommandResult)."""
        answer = result if isinstance(result, CommandResult) else CommandResult.done(result)
        with self.transaction() as conn:
            conn.execute("UPDATE commands SET acknowledged_at = ?, result = ?, ok = ? WHERE id = ?",
                         (time.time(), answer.message, None if answer.ok is None else int(answer.ok), command_id))

    def command_outcome(self, command_id: int) -> CommandResult | None:
        """The acknowledgement as a CommandResult, or None while the engine has not answered."""
        row = self.conn.execute("SELECT acknowledged_at, result, ok FROM commands WHERE id = ?",
                                (command_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return CommandResult(None if row[2] is None else bool(row[2]), row[1] or "done")

    def command_result(self, command_id: int) -> tuple[float | None, str | None]:
        row = self.conn.execute("SELECT acknowledged_at, result FROM commands WHERE id = ?", (command_id,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    # -- resource samples ------------------------------------------------------------------------
    def add_resource_samples(self, gpu_rows: Sequence[dict[str, Any]], host_row: dict[str, Any] | None,
                             keep_seconds: float = 3600.0) -> None:
        """Readings with bounded retention: older than ``keep_seconds`` are dropped in the same write."""
        now = time.time()
        with self.transaction() as conn:
            if gpu_rows:
                gpu_rows = [{"claimed_memory": None, "claimed_trials": None, "other_memory": None, **r} for r in gpu_rows]
                conn.executemany("INSERT INTO gpu_samples (time, host, gpu, name, util, memory_used, memory_total, "
                                 "temperature, power, claimed_memory, claimed_trials, other_memory) VALUES (:time, "
                                 ":host, :gpu, :name, :util, :memory_used, :memory_total, :temperature, :power, "
                                 ":claimed_memory, :claimed_trials, :other_memory)", gpu_rows)
            if host_row:
                conn.execute("INSERT INTO host_samples (time, host, cpu_percent, ram_used, ram_total, load1) "
                             "VALUES (:time, :host, :cpu_percent, :ram_used, :ram_total, :load1)", host_row)
            conn.execute("DELETE FROM gpu_samples WHERE time < ?", (now - keep_seconds,))
            conn.execute("DELETE FROM host_samples WHERE time < ?", (now - keep_seconds,))
