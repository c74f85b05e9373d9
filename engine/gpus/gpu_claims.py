"""Host-wide GPU claims: what every hpotui engine on this machine holds, whatever its database or user.

Why a folder and not the database: two studies launched from two folders have two database
files, and two users on one server have two of everything. What they share is the machine, so
the claims live on it: one small JSON file per placed trial in a folder every engine reads
before it places a trial. A trial that has just started has not touched its GPU yet; its claim
is what keeps the next engine off that GPU.

Layout and permissions (the README explains them to users)::

    /dev/shm/hpotui-gpu-claims/       drwxrwxrwt  any owner: mode 1777, like /tmp
        placement.lock                -rw-r--r--  flock'ed around read-claims-then-write-claim
        user-1000/                    drwxr-xr-x  owned by uid 1000: only it can add or remove files
            3f2a...-t17.json          -rw-r--r--  one trial's claim, readable by everyone
        user-1001/ ...

- Everyone may create their own ``user-<uid>`` folder (the top folder is writable by all) and
  nobody may delete or rename another user's entries in it (the sticky bit), so a claim can only
  be removed by its owner (or root).
- Inside ``user-<uid>`` only that user can create, change or remove files: another user cannot
  drop a claim there, and a file's owner is what says whose claim it is. A claim whose
  recorded uid, folder owner, file owner and claiming process's owner do not all agree is
  ignored as forged.
- Nothing here is followed through a symbolic link (``O_NOFOLLOW``, ``lstat``); a FIFO or device
  planted under a claim's name is skipped, never opened for reading with blocking.

A claim is live while its engine (pid + start time) or its trial process (pid + start time) is:
an engine killed with ``--keep-trials`` leaves trials that still hold their GPU. Dead claims are
ignored by everyone and deleted by their owner the next time it reads. ``/dev/shm`` empties on
reboot, which is when every claim is dead anyway.

Placement takes an exclusive ``flock`` on ``placement.lock`` around reading the claims and
writing its own, so two engines (any users) cannot both take the last free GPU. The kernel
releases the lock when its holder dies.

If the folder cannot be used (a symlink, a file, wrong mode owned by someone else, not
writable, a full ``/dev/shm``), :meth:`ClaimRegistry.open` returns the reason and the engine
falls back to per-database claims with a one-line warning.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import psutil

from ..trials.liveness import live_process

ENV = "HPOTUI_CLAIMS_DIR"
DEFAULT_ROOTS = (Path("/dev/shm/hpotui-gpu-claims"), Path("/tmp/hpotui-gpu-claims"))
LOCK_NAME = "placement.lock"
LOCK_TIMEOUT_S = 10.0
MAX_CLAIM_BYTES = 64 * 1024
FORMAT = 1
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RegistryUnusable(Exception):
    """The claims folder cannot be used (the message says why and what to do)."""


class RegistryBusy(Exception):
    """Another engine held the placement lock for longer than :data:`LOCK_TIMEOUT_S`."""


@dataclass(frozen=True)
class ClaimedGpu:
    index: int
    uuid: str | None = None


@dataclass(frozen=True)
class ClaimRecord:
    """One trial's claim as written to (and read back from) its file."""

    key: str                      # unique on the host: the database file and the trial id
    uid: int
    user: str
    db: str
    study: str
    trial_id: int
    trial_number: int
    gpus: tuple[ClaimedGpu, ...]
    fraction: float               # per GPU; a gpu_memory trial's share of the GPU
    memory_bytes: int | None      # gpu_memory trials: bytes asked for, per GPU
    engine_pid: int
    engine_start: float
    trial_pid: int | None = None
    trial_start: float | None = None
    created: float = field(default_factory=time.time)
    format: int = FORMAT

    @property
    def label(self) -> str:
        return f"{self.study}#{self.trial_number}"

    def to_json(self) -> str:
        data = asdict(self)
        data["gpus"] = [asdict(g) for g in self.gpus]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "ClaimRecord":
        data = json.loads(text)
        data["gpus"] = tuple(ClaimedGpu(int(g["index"]), g.get("uuid")) for g in data["gpus"])
        return cls(**data)


def trial_key(db_path: str | os.PathLike[str], trial_id: int) -> str:
    """A host-wide name for one trial: the same trial of the same database file is the same claim."""
    digest = hashlib.sha256(os.path.realpath(os.fspath(db_path)).encode()).hexdigest()[:16]
    return f"{digest}-t{int(trial_id)}"


def default_root() -> Path:
    """``HPOTUI_CLAIMS_DIR``, else ``/dev/shm/hpotui-gpu-claims`` (emptied at boot), else under ``/tmp``."""
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    for root in DEFAULT_ROOTS:
        if root.parent.is_dir():
            return root
    return DEFAULT_ROOTS[-1]


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _process_owner(pid: int | None, start: float | None) -> int | None:
    """The real uid of ``pid`` if it is alive and started at ``start``, else None."""
    proc = live_process(pid, start)
    if proc is None:
        return None
    try:
        return int(proc.uids().real)
    except (psutil.Error, OSError):
        return None


def _mkdir(path: Path, mode: int) -> bool:
    """Create ``path``; False when it was already there (whatever it is: checked after)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    os.chmod(path, mode)  # the umask took bits off
    return True


def _make_shared_root(root: Path) -> None:
    """Create the shared folder already at mode 1777: made aside, then renamed into place.

    A plain mkdir + chmod leaves a moment at the umask's mode in which another user's engine
    would find a folder it cannot write and fall back. The rename never replaces a folder that
    has entries or belongs to someone else (sticky parent), so losing the race is harmless.
    """
    if os.path.lexists(root):
        return
    aside = tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent)
    try:
        os.chmod(aside, 0o1777)
        os.rename(aside, root)
    except OSError:
        os.rmdir(aside)


class ClaimRegistry:
    """This user's handle on the host's claims folder; see the module docstring."""

    def __init__(self, root: Path, uid: int, own: Path, lock_fd: int) -> None:
        self.root, self.uid, self.own = root, uid, own
        self.user = _user_name(uid)
        self._lock_fd = lock_fd

    # -- opening, with every check that makes the folder trustworthy ------------------------------
    @classmethod
    def open(cls, root: Path | None = None) -> "ClaimRegistry":
        """The registry at ``root`` (default :func:`default_root`); raises :class:`RegistryUnusable`."""
        root = root or default_root()
        uid = os.geteuid()
        try:
            _make_shared_root(root)
            cls._check_root(root, uid)
            own = root / f"user-{uid}"
            _mkdir(own, 0o755)
            cls._check_own(own, uid)
            lock_fd = cls._open_lock(root / LOCK_NAME)
        except OSError as exc:
            raise RegistryUnusable(f"{root}: {exc.strerror or exc}") from None
        return cls(root, uid, own, lock_fd)

    @staticmethod
    def _check_root(root: Path, uid: int) -> None:
        st = os.lstat(root)
        if stat.S_ISLNK(st.st_mode):
            raise RegistryUnusable(f"{root} is a symbolic link; remove it (hpotui recreates it with mode 1777)")
        if not stat.S_ISDIR(st.st_mode):
            raise RegistryUnusable(f"{root} is not a folder; remove it (hpotui recreates it with mode 1777)")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o1777 != 0o1777:
            if st.st_uid != uid:
                raise RegistryUnusable(f"{root} has mode {mode:o}, not 1777 (sticky, writable by all); "
                                       f"its owner {_user_name(st.st_uid)} can fix it: chmod 1777 {root}")
            os.chmod(root, 0o1777)  # our own folder: repair it

    @staticmethod
    def _check_own(own: Path, uid: int) -> None:
        st = os.lstat(own)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise RegistryUnusable(f"{own} is not a folder; remove it")
        if st.st_uid != uid:
            raise RegistryUnusable(f"{own} belongs to {_user_name(st.st_uid)}, not to you; "
                                   f"ask them or root to remove it")
        if stat.S_IMODE(st.st_mode) & 0o022:
            os.chmod(own, 0o755)  # nobody else may add files to our folder

    @staticmethod
    def _open_lock(path: Path) -> int:
        """Open the shared lock file without following links or blocking on a planted FIFO.

        No O_CREAT on an existing file: with ``fs.protected_regular`` the kernel refuses O_CREAT
        on another user's file in a sticky folder, even when it exists.
        """
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            ClaimRegistry._make_lock(path)
            fd = os.open(path, _READ_FLAGS)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RegistryUnusable(f"{path} is not a regular file; remove it")
        return fd

    @staticmethod
    def _make_lock(path: Path) -> None:
        """Create the lock file at mode 0644 from the start: written aside, then hard-linked into place.

        A link never replaces an existing lock file (that would let two engines hold "the" lock).
        """
        aside = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(aside)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- the placement lock ---------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the host-wide placement lock (flock: released by the kernel if we die holding it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RegistryBusy(f"another engine has held {self.root / LOCK_NAME} for over "
                                       f"{timeout_s:g}s") from None
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- reading --------------------------------------------------------------------------------
    def claims(self) -> list[ClaimRecord]:
        """Every live claim on the host, of every user; this user's dead claims are deleted."""
        found: list[ClaimRecord] = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return found
        for entry in entries:
            if not entry.name.startswith("user-"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                found.extend(self._claims_in(Path(entry.path), st.st_uid))
        return found

    def _claims_in(self, folder: Path, owner: int) -> list[ClaimRecord]:
        found: list[ClaimRecord] = []
        try:
            names = [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
        except OSError:
            return found
        for name in names:
            record = self._read(folder / name, owner)
            if record is None:
                continue
            if self._alive(record):
                found.append(record)
            elif owner == self.uid:
                (folder / name).unlink(missing_ok=True)  # our own stale claim: tidy up
        return found

    @staticmethod
    def _read(path: Path, owner: int) -> ClaimRecord | None:
        """The claim in ``path`` if it is a plain file of the folder's owner that says so; else None."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != owner or st.st_size > MAX_CLAIM_BYTES:
                return None
            text = os.read(fd, MAX_CLAIM_BYTES + 1).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            record = ClaimRecord.from_json(text)
        except (ValueError, TypeError, KeyError):
            return None
        return record if record.uid == owner else None

    @staticmethod
    def _alive(record: ClaimRecord) -> bool:
        """Its engine or its trial is alive and belongs to the claim's user (else stale, or forged)."""
        for pid, start in ((record.engine_pid, record.engine_start), (record.trial_pid, record.trial_start)):
            if _process_owner(pid, start) == record.uid:
                return True
        return False

    # -- writing (own folder only) --------------------------------------------------------------------
    def write(self, record: ClaimRecord) -> Path:
        """Write (or replace) this user's claim atomically: readers see the old file or the new one."""
        if record.uid != self.uid:
            raise ValueError("a claim is written by its own user")
        target = self.own / f"{record.key}.json"
        temporary = self.own / f".{record.key}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, record.to_json().encode())
        finally:
            os.close(fd)
        os.replace(temporary, target)
        return target

    def remove(self, key: str) -> None:
        try:
            os.unlink(self.own / f"{key}.json")
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def own_claim(self, key: str) -> ClaimRecord | None:
        return self._read(self.own / f"{key}.json", self.uid)
