"""User-facing errors: each one renders as a single line and maps to exit code 2.

Every message names the file, the key path and the fix, so the CLI can print it as-is
and never show a traceback (tracebacks only with ``--debug``).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2


class SpaceError(UserError):
    """A space file that cannot be run, with the file, the key path and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem + (f"; {fix}" if fix else ""))


class StudyNotFound(UserError):
    def __init__(self, name: str, db: str) -> None:
        super().__init__(f"{db}: no study named {name!r}; `hpotui status` lists the studies in this database")
