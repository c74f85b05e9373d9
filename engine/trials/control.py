"""Acting on a study from outside its engine (`hpotui stop`, the TUI): through the commands table.

When the engine is alive it does the work and acknowledges; when it is dead (killed -9, box
rebooted) there is nobody to ask, so trials it left running are stopped here directly, by
process group, and recorded: a stop always ends with nothing orphaned.
"""

from __future__ import annotations

import time

from ..database.records import LIVE_STATUSES, CommandResult, EventKind, StudyStatus, TrialStatus
from ..database.store import Store, StudyRow
from ..executors.local import terminate_group, terminate_processes
from .liveness import engine_alive, process_alive
from .process_tree import processes_of_trial

ACK_WAIT_S = 10.0
KILL_GRACE_S = 5.0


def request(store: Store, study: StudyRow, action: str, *, trial_number: int | None = None,
            args: dict | None = None, wait_s: float = ACK_WAIT_S) -> CommandResult:
    """Send one command and wait for the engine's answer (ok None: not acknowledged within ``wait_s``)."""
    command_id = store.send_command(study.id, action, trial_number=trial_number, args=args)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        outcome = store.command_outcome(command_id)
        if outcome is not None:
            return outcome
        time.sleep(0.05)
    return CommandResult(None, f"{action} sent; the engine has not acknowledged it yet "
                               "(it acts on it as soon as it can)")


def send_and_wait(store: Store, study: StudyRow, action: str, *, trial_number: int | None = None,
                  args: dict | None = None, wait_s: float = ACK_WAIT_S) -> str:
    """:func:`request`, its line only (for the CLI and scripts)."""
    return request(store, study, action, trial_number=trial_number, args=args, wait_s=wait_s).message


def stop(store: Store, study: StudyRow, trial_number: int | None) -> str:
    return stop_outcome(store, study, trial_number).message


def stop_outcome(store: Store, study: StudyRow, trial_number: int | None) -> CommandResult:
    """Stop a trial or the study: through its engine, or directly by process group when none is left."""
    if engine_alive(study):
        if trial_number is not None:
            return request(store, study, "stop_trial", trial_number=trial_number)
        return request(store, study, "stop_study")
    trials = store.trials(study.id, statuses=LIVE_STATUSES)
    if trial_number is not None:
        trials = [t for t in trials if t.number == trial_number]
        if not trials:
            return CommandResult.refused(f"trial {trial_number} of {study.name} is not running")
    stopped = 0
    for t in trials:
        escaped = processes_of_trial(t.trial_dir) if t.trial_dir else []  # children that left its group too
        if t.pgid and process_alive(t.pid, t.proc_create_time):
            terminate_group(t.pgid, KILL_GRACE_S, also=escaped)
        elif escaped:
            terminate_processes(escaped, KILL_GRACE_S)
        store.finish_trial(t.id, TrialStatus.STOPPED, exit_code=None,
                           reason="stopped by the user (no engine was running)")
        store.add_event(study.id, t.id, EventKind.STOPPED, f"trial {t.number} stopped by the user")
        stopped += 1
    if trial_number is None:
        store.set_study_status(study.id, StudyStatus.STOPPED)
        return CommandResult.done(f"study {study.name} stopped ({stopped} trials stopped; no engine was running)")
    return CommandResult.done(f"trial {trial_number} stopped (no engine was running)")
