"""Trial folders and log files that belong to one trial only, and are never someone else's link.

A trial must only ever read output that it wrote. Trial folders are named by trial number under
``hpotui_runs/<study>/``, and a second database in the same project folder (or a deleted one)
reuses those numbers; a shared project folder lets another user plant ``<n>/stdout.log`` as a
link to one of our files or as a file of theirs. So:

- a trial folder is made with an exclusive ``mkdir``: a name that already exists (folder, file
  or link, whoever made it) is never used; the trial takes the next free ``<n>-2``, ``<n>-3`` ...
  and says so. The one exception is an empty, owner-only folder of ours (left by an engine that
  died between making it and recording the trial): nothing in it can be inherited;
- log files are created with ``O_CREAT | O_EXCL`` (which never follows a link) inside a folder
  opened with ``O_NOFOLLOW``, and reopened for reading with ``O_NOFOLLOW`` and an owner check;
- the study's parent folders may be links (``hpotui_runs`` on a scratch disk is normal), but when
  they are owned by someone else or writable by others the engine says so: whoever can write
  there can swap a trial folder between two system calls.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

OWNER_ONLY_DIR = 0o700
OWNER_ONLY_FILE = 0o600
MAX_DIR_SUFFIX = 1000
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class ForeignFile(OSError):
    """A trial file or folder that is a link, not a regular file, or not ours: refused."""


@dataclass(frozen=True)
class TrialFolder:
    path: Path
    note: str | None  # why the usual ``<n>`` name was not used, for the trial's event; None when it was


def make_trial_folder(study_dir: Path, number: int) -> TrialFolder:
    """A new folder for trial ``number`` that nobody else made and that holds nothing yet."""
    wanted = study_dir / str(number)
    for k in range(1, MAX_DIR_SUFFIX + 1):
        path = wanted if k == 1 else study_dir / f"{number}-{k}"
        try:
            os.mkdir(path, OWNER_ONLY_DIR)
        except FileExistsError:
            if _empty_folder_of_ours(path):
                break
            continue
        try:
            _make_owner_only(path)  # whatever the umask said (mkdir's mode is masked)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT) and not isinstance(exc, ForeignFile):
                raise
            continue  # swapped for a link or removed under us (someone can write the study folder): next name
        break
    else:
        raise FileExistsError(f"{wanted}: {MAX_DIR_SUFFIX} trial folders of that number already exist")
    if path == wanted:
        return TrialFolder(path, None)
    return TrialFolder(path, f"{wanted} already exists and was not made for this trial (another database, an "
                             f"earlier run or another user): trial {number} writes to {path} instead")


def _make_owner_only(path: Path) -> None:
    """chmod 700 through a no-follow handle: never the mode of whatever a planted link points to."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise ForeignFile(f"{path} is not this engine's folder")
        os.fchmod(fd, OWNER_ONLY_DIR)
    finally:
        os.close(fd)


def _empty_folder_of_ours(path: Path) -> bool:
    """An owner-only, empty, real folder of this user: what an engine killed right after mkdir leaves."""
    try:
        info = os.lstat(path)
        return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
                and stat.S_IMODE(info.st_mode) & 0o077 == 0 and not os.listdir(path))
    except OSError:
        return False


def create_trial_logs(stdout_path: Path, stderr_path: Path) -> tuple[int, int]:
    """Write descriptors of the two new log files (in one folder): created here, by us, owner-only.

    Raises ``FileExistsError`` when a log is already there (the trial would inherit it) and
    ``ForeignFile`` when the folder is a link or not ours.
    """
    folder = stdout_path.parent
    if not os.path.lexists(folder):  # an executor used on its own (no loop made the folder): make it ours
        folder.parent.mkdir(parents=True, exist_ok=True, mode=OWNER_ONLY_DIR)
        try:
            os.mkdir(folder, OWNER_ONLY_DIR)
        except FileExistsError:
            pass  # someone was quicker: the owner check below decides
    dir_fd = os.open(folder, _DIR_FLAGS)
    try:
        info = os.fstat(dir_fd)
        if info.st_uid != os.geteuid():
            raise ForeignFile(f"{folder} belongs to uid {info.st_uid}, not to this engine: refused")
        out = os.open(stdout_path.name, _CREATE_FLAGS, OWNER_ONLY_FILE, dir_fd=dir_fd)
        try:
            err = os.open(stderr_path.name, _CREATE_FLAGS, OWNER_ONLY_FILE, dir_fd=dir_fd)
        except OSError:
            os.close(out)
            raise
        return out, err
    finally:
        os.close(dir_fd)


def open_own_log(path: Path, flags: int = os.O_RDONLY) -> int:
    """Reopen a trial's log (to read it, or to punch recorded parts out): never a link, always ours."""
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise ForeignFile(f"{path} is not a regular file of this engine's user: refused")
    return fd


def append_engine_log(path: Path) -> int:
    """The study's engine.log, opened for appending: created owner-only if missing, never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0), OWNER_ONLY_FILE)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise ForeignFile(f"{path} is not a regular file of this engine's user: refused")
    os.fchmod(fd, OWNER_ONLY_FILE)
    return fd


def folder_warnings(folders: list[Path]) -> list[str]:
    """One sentence per existing folder that others could write into or that someone else owns."""
    warnings = []
    for folder in folders:
        try:
            info = os.stat(folder)
        except OSError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != os.geteuid():
            warnings.append(f"{folder} belongs to uid {info.st_uid}, not to you: its owner can replace trial "
                            f"folders and logs in it; use your own folder (or `chmod 700` it as its owner)")
        elif mode & 0o022 and not mode & stat.S_ISVTX:  # sticky (like /tmp): others cannot rename our entries
            warnings.append(f"{folder} is writable by {'others' if mode & 0o002 else 'its group'} "
                            f"(mode {mode:o}): they can replace trial folders in it; `chmod 700 {folder}`")
    return warnings
