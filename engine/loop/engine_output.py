"""The engine's printed lines: timestamped, to the terminal until an SSH session drops, then to engine.log.

Why its own module: every part of the shell says things ("trial 3 started", "cannot write the
study database ..."), and where those lines go changes once, at SIGHUP, while the study goes on.
One object that writes them keeps that switch and the "terminal went away" case in one place.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from ..database.records import EventKind
from ..database.store import Store
from ..trials.trial_files import append_engine_log


class EngineOutput:
    """Where the engine's lines go; a terminal that went away loses them, the database has everything."""

    def __init__(self, out: TextIO, engine_log: Path, store: Store, study_id: int) -> None:
        self.out, self._engine_log, self._store, self._study_id = out, engine_log, store, study_id

    def say(self, text: str) -> None:
        try:
            self.out.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass  # the terminal went away; the database has everything

    def move_to_engine_log(self) -> None:
        """SSH dropped: the study goes on; output moves to the study's engine.log."""
        try:
            fd = append_engine_log(self._engine_log)  # owner only, never through a planted link
        except OSError as exc:  # a planted link or a foreign file: keep going, the database has everything
            self._store.buffer_event(self._study_id, None, EventKind.ENGINE_LOG, f"engine.log not opened: {exc}",
                                     level="warning")
            return
        self.out = open(fd, "a", encoding="utf-8")  # noqa: SIM115 (lives with the loop)
