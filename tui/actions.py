"""Requests from the interface to the engine, through the database's commands table.

The read connection in :mod:`tui.data` is read-only; this module opens the one writable
handle (lazily: browsing a finished study never writes) and uses the engine's own
:mod:`engine.trials.control`, so a stop from the TUI behaves exactly like ``hpotui stop``: acknowledged
by a live engine, or done directly when no engine is left. Every function blocks until the
engine acknowledges (or a timeout), so callers run them in worker threads.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from ..engine.database.records import LIVE_STATUSES, CommandResult
from ..engine.database.store import Store, StudyRow
from ..engine.errors import UserError
from ..engine.self_command import hpotui_command
from ..engine.trials.control import request, stop_outcome
from ..engine.trials.liveness import engine_alive

ENGINE_ACTIONS = ("pause_launching", "resume_launching", "pause_trial", "resume_trial", "set_max_parallel",
                  "clone_trial")


class Commander:
    """The TUI's only writer; one per app, opened on first use, serialised by a lock."""

    def __init__(self, db_path: str, *, wait_s: float = 10.0) -> None:
        self.db_path = db_path
        self.wait_s = wait_s
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_path)
        return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def send(self, study_id: int, action: str, *, trial_number: int | None = None,
             args: dict[str, Any] | None = None) -> CommandResult:
        """Do one action: the engine's acknowledgement (its ``ok`` says done or refused), or why not."""
        with self._lock:
            try:
                store = self._open()
            except Exception as exc:  # read-only file, disk full: say it, never crash the interface
                return CommandResult.refused(f"cannot write to {self.db_path}: {exc}")
            study = store.study_by_id(study_id)
            if study is None:
                return CommandResult.refused(f"study {study_id} is gone from {self.db_path}")
            if action in ("stop_trial", "stop_study"):
                if study.status not in LIVE_STATUSES and not engine_alive(study):
                    return CommandResult.refused(f"study {study.name} is {study.status}: nothing to stop")
                return stop_outcome(store, study, trial_number if action == "stop_trial" else None)
            if not engine_alive(study):
                return CommandResult.refused(f"study {study.name} has no running engine ({study.status}); "
                                             f"`hpotui resume {study.name}` to act on it")
            return request(store, study, action, trial_number=trial_number, args=args, wait_s=self.wait_s)

    def refine(self, study: StudyRow, *, top: int, resource_scale: float, output: str | None,
               edits: dict[str, dict[str, Any]], budget: dict[str, Any], launch: bool) -> CommandResult:
        """Write the next stage's space file with the engine's refine code, apply the user's edits, launch it."""
        try:
            from ..engine.search.refine import refine_study  # lazy: ~0.1 s of start-up (refine + the space parser) for a rare dialog
        except ImportError:
            return CommandResult.refused("refine is not available in this install (engine/search/refine.py is missing)")
        with self._lock:
            try:
                store = self._open()
            except Exception as exc:
                return CommandResult.refused(f"cannot write to {self.db_path}: {exc}")
            bounds = {name: list(fields["values"]) if "values" in fields else (fields.get("low"), fields.get("high"))
                      for name, fields in edits.items()}
            try:
                result = refine_study(store, study, top=top, resource_scale=resource_scale, output=output,
                                      bounds=bounds or None, budget=budget or None)
            except UserError as exc:
                return CommandResult.refused(f"refine refused: {exc}")
        written = result.path
        lines = result.summary.splitlines()
        summary = lines[0] if len(lines) < 2 else f"{lines[0]} · {lines[-1]}"
        if edits or budget:
            summary += " · your edits included"
        if not launch:
            return CommandResult.done(summary)
        pid = launch_stage(self.db_path, written)
        return CommandResult.done(f"next stage launched in the background (engine pid {pid}): {summary}")  # news first


    def resume(self, name: str, *, settle_s: float = 3.0) -> CommandResult:
        """``hpotui resume NAME --headless`` detached (the dead engine's successor); what happened first."""
        log_path = Path(self.db_path).resolve().parent / "hpotui_runs" / name / "engine.log"
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            log = open(log_path, "ab")  # noqa: SIM115 (handed to the child)
        except OSError as exc:
            return CommandResult.refused(f"cannot resume {name} from here: {log_path.parent} is not writable "
                                         f"({exc.strerror or exc})")
        with log:
            proc = subprocess.Popen(hpotui_command("resume", name, "--headless", "--db",
                                                    str(Path(self.db_path).resolve())),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    close_fds=True)
        try:
            code = proc.wait(timeout=settle_s)
        except subprocess.TimeoutExpired:
            return CommandResult.done(f"resumed {name} in the background (engine pid {proc.pid}, log {log_path})")
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        return CommandResult(code == 0, f"resume of {name} ended at once (exit {code}): {tail[0]}")


def launch_stage(db_path: str, space_file: Path) -> int:
    """``hpotui launch SPACE --headless`` detached, its output in a log beside the space file."""
    log_path = space_file.with_suffix(".launch.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(hpotui_command("launch", str(space_file), "--headless", "--db",
                                                str(Path(db_path).resolve())), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, close_fds=True, cwd=space_file.parent)
    return proc.pid
