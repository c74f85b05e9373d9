"""When the study database cannot be written: wait it out (disk full, I/O error, a lock), or give up on a damaged file.

Why its own module: a failed write is not a reason to lose a study. While the file cannot be
written no trial starts, unwritten metrics and events stay in the store's buffers and unread
lines stay in the trial logs past their committed offsets, so once a test write succeeds the
loop carries on where it stopped. A file that was deleted, replaced, truncated or found corrupt
is different: waiting would not help, so the engine says so, stops its trials and exits 1.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..core.events import Halt
from ..core.state import EXIT_INTERRUPTED, EXIT_TERMINATED
from ..database.records import EventKind, TrialStatus
from .loop_parts import LoopParts
from .loop_signals import LoopSignals

RETRY_S = 1.0


class StorageWait:
    """Waits for the database to take writes again, or abandons a damaged one (see the module docstring)."""

    def __init__(self, parts: LoopParts, signals: LoopSignals, study_dir: Path, *, keep_trials: bool,
                 grace_period_s: float) -> None:
        self.parts, self.signals, self.study_dir = parts, signals, study_dir
        self.keep_trials, self.grace_period_s = keep_trials, grace_period_s

    def wait_out(self, exc: sqlite3.DatabaseError) -> None:
        """The database cannot be written: wait, lose nothing, carry on once a test write succeeds.

        A stop signal while waiting stops the trials (unless kept) and exits; `resume` reads their
        logs again. Any other database error is raised again: it is a bug, not trouble that passes.
        """
        store = self.parts.store
        damage = store.diagnose(exc)  # deleted, replaced, truncated, corrupt: waiting would not help
        if damage:
            self.abandon(damage)
        if not storage_trouble(exc):
            raise exc
        why = "the disk is full" if "full" in str(exc) else f"{exc}"
        message = (f"cannot write the study database {store.path} ({why}): no new trials until it can be "
                   "written again; nothing recorded is lost, retrying every second")
        self.parts.say(message)
        if not self._retry_until_writable(message):
            self._exit_on_signal()

    def _retry_until_writable(self, message: str) -> bool:
        """A real write every second until one succeeds (True), or a stop signal comes (False)."""
        store, study_id = self.parts.store, self.parts.study.id
        since = time.monotonic()
        while self.signals.received is None:
            self.signals.wait_s(RETRY_S)
            try:
                store.heartbeat(study_id)  # a real write: succeeds once there is room again
                store.flush()
            except sqlite3.OperationalError as again:
                if store.diagnose(again):
                    self.abandon(store.damaged or str(again))
                if not storage_trouble(again):
                    raise
                continue
            waited = time.monotonic() - since
            store.add_event(study_id, None, EventKind.STORAGE, f"{message}; writable again after {waited:.0f}s",
                            level="warning", data={"waited_s": waited})
            self.parts.say(f"the study database is writable again after {waited:.0f}s: continuing")
            return True
        return False

    def _exit_on_signal(self) -> None:
        code = EXIT_INTERRUPTED if self.signals.interrupted else EXIT_TERMINATED
        if not self.keep_trials:
            self._stop_without_recording("engine stopped while the disk was full")
        self.parts.say(f"{self.signals.name()}: exiting without recording more (database not writable); "
                       f"`hpotui resume {self.parts.study.name}` reads the trial logs again")
        raise SystemExit(code)

    def abandon(self, problem: str) -> None:
        """The study file was deleted, replaced, truncated or found corrupt: say so, start nothing, exit 1.

        Nothing more is written to it (the store refuses), so nothing is recorded as if it were
        safe. Running trials are stopped (left running with --keep-trials); what they printed
        stays in their logs, which `resume` reads again once a good copy of the file is back.
        """
        core = self.parts.core
        core.handle(Halt(problem, study_failed=False))  # exit 1; nothing more is recorded
        running = len(self.parts.live)
        if not self.keep_trials:
            self._stop_without_recording("the study database was lost")
        what = "left running" if self.keep_trials else "stopped"
        self.parts.say(f"{problem}: no new trials; {running} running trials {what}; nothing more is recorded in it. "
                       f"Their output stays in {self.study_dir}. Restore the file from a backup and run "
                       f"`hpotui resume {self.parts.study.name}`, or launch again with another --db")
        raise SystemExit(core.state.exit_code)

    def _stop_without_recording(self, reason: str) -> None:
        """End every running trial (SIGTERM, SIGKILL after the grace period) with no database to record it in."""
        executor, live = self.parts.executor, self.parts.live
        for trial in live.values():
            executor.request_stop(trial.proc, TrialStatus.INTERRUPTED, reason)
        deadline = time.monotonic() + self.grace_period_s + 2
        while time.monotonic() < deadline and any(executor.poll(lt.proc) is None for lt in live.values()):
            for trial in live.values():
                executor.enforce_deadline(trial.proc)
            time.sleep(0.05)


def storage_trouble(exc: sqlite3.Error) -> bool:
    """A write failed for a reason that passes (space, I/O, a lock), not a bug in our SQL."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return (name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED"))
            or any(words in text for words in ("disk is full", "disk i/o error", "database is locked")))
