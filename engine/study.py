"""The engine loop: launch trials, read their reports, apply decisions and commands.

One thread, event-driven: the loop sleeps on a self-pipe woken by SIGCHLD (a trial ended) or a
short tick (new log lines), so a finished trial's slot is refilled within milliseconds instead of
a poll interval. Everything durable goes through the store; the loop's in-memory state can always
be rebuilt from the database (that is what ``resume`` does).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .core.effects import (Acknowledge, Effect, FlagOom, Launch, Notify, PauseTrial, QueueClone, RecordEnd,
                           RecordEvent, ResumeTrial, Say, SetBracket, SetLaunchingPaused, SetMaxParallel, StopTrial,
                           StoreWarnings, UpdateWarnings)
from .core.events import CloneQueued, Reported, SlotsFree, StopSignal, Tick
from .core.state import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED  # noqa: F401  (re-exported)
from .core.study_core import StudyCore
from .database.records import EventKind, StudyStatus, TrialStatus
from .database.store import Store, StudyRow
from .executors.base import Executor
from .executors.local import LocalExecutor
from .gpus.gpu_placer import GpuPlacer  # GPU sharing: host-wide claims, gpu_memory packing, OOM reruns
from .loop.engine_output import EngineOutput
from .loop.final_report import print_final
from .loop.loop_parts import LoopParts, command_of
from .loop.loop_signals import LoopSignals
from .loop.open_file_cap import OpenFileCap
from .loop.periodic_work import PeriodicWork
from .loop.recovery import Recovery
from .loop.storage_wait import StorageWait
from .loop.study_warnings import StudyWarnings
from .loop.trial_exits import TrialExits
from .loop.trial_launch import TrialLauncher
from .machine.usage import UsageSampler
from .outputs.notify import Notifier
from .reading.metricline import Report
from .reading.trial_logs import LiveTrial, TrialLogReader
from .space_file.space import Space
from .trials.liveness import process_create_time


@dataclass
class Options:
    headless: bool = True  # no one can resume launching interactively: a failure storm ends the study
    grace_period_s: float = 10.0
    keep_trials_on_exit: bool = False  # Ctrl-C / SIGTERM leave trials running for `resume` to adopt
    out: TextIO | None = None
    runs_root: Path | None = None


class StudyLoop:
    """The shell around the study's decisions (engine/core/): it feeds the core and applies its effects.

    Each kind of I/O has its own collaborator: the signals and the sleep (loop_signals.py), the
    printed lines (engine_output.py), what a resumed study picks up (recovery.py), starting a
    trial (trial_launch.py, open_file_cap.py), ending one (trial_exits.py), the timed chores
    (periodic_work.py), a database that cannot be written (storage_wait.py), the study's warning
    lines (study_warnings.py) and its last lines (final_report.py). The loop runs the turns.
    """

    def __init__(self, store: Store, space: Space, study: StudyRow, options: Options,
                 executor: Executor | None = None) -> None:
        self.store, self.space, self.study, self.options = store, space, study, options
        self.executor: Executor = executor or LocalExecutor(grace_period_s=options.grace_period_s)
        self.core = StudyCore(space, study.name, max_parallel=study.max_parallel or space.budget.max_parallel,
                              launching_paused=study.launching_paused, headless=options.headless,
                              now=time.monotonic(), interpreter_hint=_interpreter_hint(space.command[0]))
        runs_root = options.runs_root or (store.path.resolve().parent / "hpotui_runs")
        self.live: dict[int, LiveTrial] = {}
        self.output = EngineOutput(options.out or sys.stdout, runs_root / study.name / "engine.log", store, study.id)
        self.signals = LoopSignals(on_hangup=self.output.move_to_engine_log, on_second_stop=self._hurry)
        parts = LoopParts(store, space, study, self.executor, self.core, self.live, self.output.say, self._apply)
        git_commit = _git_commit(space.workdir)
        self.usage = UsageSampler(store, study.id, self.executor)
        self.gpu = GpuPlacer(store, study, space, lambda: self.usage.monitor, self.output.say)
        if self.gpu.uses_gpus(self.executor):
            self.usage.gpu_sharing = self.gpu.sharing_columns  # claimed / other memory in each GPU sample
        self.notifier = Notifier(space.notify, study.name, self._notice)
        self.warnings = StudyWarnings(store, space, study, self.core.policy.not_read, self.output.say)
        self.periodic = PeriodicWork(parts, self.usage)
        self.reader = TrialLogReader(store, space, study.id, self._decide, self.periodic.maybe_flush)  # logs -> reports
        self.recovery = Recovery(parts, self.gpu, git_commit)
        self.launcher = TrialLauncher(parts, self.gpu, runs_root, git_commit)
        self.fd_cap = OpenFileCap(parts)
        self.exits = TrialExits(parts, self.reader, self.gpu, self.usage)
        self.storage = StorageWait(parts, self.signals, self.launcher.study_dir,
                                   keep_trials=options.keep_trials_on_exit, grace_period_s=options.grace_period_s)
        self._watching = False  # the engine is its trials' subreaper (engine/trials/process_tree.py)
        self._data_version = -1

    # -- what the core decided, as the loop's callers have read it ----------------------------------
    @property
    def stop_reason(self) -> str | None:
        return self.core.state.stop_reason

    @property
    def final_status(self) -> str:
        return self.core.state.final_status

    @property
    def exit_code(self) -> int:
        return self.core.state.exit_code

    @property
    def finished(self) -> int:
        return self.core.finished

    def study_launching_paused(self) -> bool:
        return self.core.state.launching_paused

    # ------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run the study to its end; returns the CLI exit code."""
        me = os.getpid()
        took_over_at = time.time()
        self.launcher.make_study_folders()
        self.store.acquire_engine_lock(self.study.id, me, process_create_time(me) or time.time())
        self.launcher.warn_about_folders()
        self.signals.install()
        self._watch_descendants(True)  # local trials: their orphans come back to the engine
        try:
            self.store.set_study_status(self.study.id, StudyStatus.RUNNING)
            self.recovery.recover()
            self.recovery.drop_stale_stops(took_over_at)
            self.recovery.replay_decisions()
            self.store.flush()
            self._run_turns()
            self._finish_despite_storage()
        finally:
            self._close(me)
        return self.exit_code

    def _run_turns(self) -> None:
        """Turn after turn until the study is over; storage trouble and running out of files are waited out."""
        while True:
            try:
                if self._turn():
                    return
            except sqlite3.DatabaseError as exc:  # disk full, I/O error, a lock held, a damaged file
                self.storage.wait_out(exc)
            except OSError as exc:  # out of file descriptors: fewer trials at once, never a crash
                self.fd_cap.ran_out(exc)
                self.signals.wait(bool(self.live))

    def _turn(self) -> bool:
        """Commands, reports, exits, max_time, launches, flushes; True once the study is over."""
        self._handle_commands()
        self._pump_logs()
        self._reap()
        self._apply(self.core.handle(Tick(time.monotonic())))  # max_time
        if self.signals.received is not None:
            self._shutdown_on_signal()
            return True
        self._launch()
        self.periodic.maybe_flush()
        self.periodic.run_due()
        if not self.live and (self.stop_reason or not self.core.can_launch_more()):
            return True
        self.signals.wait(bool(self.live))
        return False

    def _finish_despite_storage(self) -> None:
        while True:
            try:
                self._finish()
                return
            except sqlite3.DatabaseError as exc:
                self.storage.wait_out(exc)

    def _close(self, me: int) -> None:
        """The last flush and the engine lock released, then every handle the loop held."""
        try:
            self.store.flush()
            self.store.release_engine_lock(self.study.id, me)
        except sqlite3.OperationalError as exc:  # left unrecorded: `resume` re-reads it from the logs
            if not self.store.damaged:  # a damaged file was already reported (StorageWait.abandon)
                self.output.say(f"could not record the last reports ({exc}); `hpotui resume {self.study.name}` "
                                "reads them again from the trial logs")
        self.usage.close()
        self.gpu.close()
        self._watch_descendants(False)
        self.signals.restore()

    def _watch_descendants(self, on: bool) -> None:
        """Make the engine the subreaper of its trials' orphans while the study runs (local executor only)."""
        if on or self._watching:
            self._watching = bool(self.executor.watch_descendants(on)) and on

    def _hurry(self) -> None:
        """A second Ctrl-C / SIGTERM: the user insists. No more grace period: every trial group gets
        SIGKILL on the loop's next turn (enforce_deadline), and the loop still records them."""
        if not self.options.keep_trials_on_exit:
            for live in list(self.live.values()):
                if live.proc is not None:
                    live.proc.stop_deadline = 0.0

    # -- one turn ----------------------------------------------------------------------------------------
    def _handle_commands(self) -> None:
        version = self.store.data_version()
        if version == self._data_version:
            return  # nobody else wrote since the last look: no new command (microseconds, no query)
        self._data_version = version
        for c in self.store.pending_commands(self.study.id):  # each row checked: engine/database/command_check.py
            self._apply(self.core.handle(command_of(c)))

    def _pump_logs(self) -> None:
        got = behind = False
        for live in list(self.live.values()):
            got |= self.reader.drain(live)
            behind |= not (live.stdout.at_eof and live.stderr.at_eof)
            self.reader.poll_files(live)
        self.reader.settle(list(self.live.values()))
        self.signals.pace(got, behind)

    def _decide(self, live: LiveTrial, report: Report | None) -> None:
        """One settled step: the core's health checks, then its scheduler (a trial being stopped is not judged)."""
        if report is None or live.proc is None or live.proc.final_status is not None:
            return
        self._apply(self.core.handle(Reported(live.row.id, report.step, report.values, report.resource, live.reports)))

    def _reap(self) -> None:
        self._note_signal()
        self.launcher.note_placements()
        self.exits.reap()

    def _launch(self) -> None:
        """Start trials while the core offers a configuration and a slot is free."""
        if self.study_launching_paused():
            return  # before the open-file check: a paused study says nothing about its limit
        while (launch := self._offered_launch()) is not None:
            if not self.launcher.launch_one(launch):
                return

    def _offered_launch(self) -> Launch | None:
        effects = self.core.handle(SlotsFree(self.fd_cap.allowed() - len(self.live)))
        return next((e for e in effects if isinstance(e, Launch)), None)

    # -- the core's effects ------------------------------------------------------------------------------
    def _apply(self, effects: list[Effect]) -> None:
        """Do what the core decided, in its order."""
        for effect in effects:
            _APPLY[type(effect)](self, effect)

    def _apply_stop(self, e: StopTrial) -> None:
        live = self.live.get(e.trial_id)
        if live is not None:
            self.executor.request_stop(live.proc, e.status, e.reason)
            self.signals.wake_soon()

    def _apply_pause(self, e: PauseTrial | ResumeTrial) -> None:
        live = self.live.get(e.trial_id)
        if live is not None:
            paused = isinstance(e, PauseTrial)
            (self.executor.pause if paused else self.executor.resume)(live.proc)
            self.store.set_trial_paused(live.row.id, paused)

    def _apply_event(self, e: RecordEvent) -> None:
        write = self.store.buffer_event if e.buffered else self.store.add_event
        write(self.study.id, e.trial_id, e.kind, e.message, level=e.level, data=e.data)

    def _apply_queue_clone(self, e: QueueClone) -> None:
        """The clones table's row, written with the command's acknowledgement in one transaction."""
        clone_id = self.store.queue_clone(self.study.id, command_id=e.command_id, source_number=e.source_number,
                                          params=e.params, note=e.note, result=e.result)
        if clone_id is not None:
            self.core.handle(CloneQueued(clone_id, e.source_number, e.params))

    def _notice(self, text: str) -> None:
        """A ``notify:`` command that failed: a warning event and a line in the engine's log, never fatal."""
        self.store.buffer_event(self.study.id, None, EventKind.NOTIFY, text, level="warning")
        self.output.say(text)

    # -- the end ------------------------------------------------------------------------------------------------
    def _note_signal(self) -> None:
        """Tell the core once that a stop signal came: interrupted trials stop running again, exit 130 / 143."""
        if self.signals.received is not None and not self.core.state.stopping_on_signal:
            self.core.handle(StopSignal(interrupt=self.signals.interrupted))

    def _shutdown_on_signal(self) -> None:
        name, say = self.signals.name(), self.output.say
        self._note_signal()
        if self.options.keep_trials_on_exit:
            say(f"{name}: engine exits, {len(self.live)} trials keep running; "
                f"`hpotui resume {self.study.name}` adopts them")
            for live in self.live.values():
                self.reader.drain(live)
            self.store.add_event(self.study.id, None, EventKind.ENGINE_EXIT, f"engine exited on {name}; trials kept running")
            return
        say(f"{name}: stopping {len(self.live)} running trials (they will run again on resume)")
        for live in self.live.values():
            self.executor.request_stop(live.proc, TrialStatus.INTERRUPTED, f"engine received {name}")
        deadline = time.monotonic() + self.options.grace_period_s + 5
        said_hurry = False
        while self.live and time.monotonic() < deadline:
            said_hurry = said_hurry or self._say_hurry(name)
            self._pump_logs()
            self._reap()
            if self.live:
                time.sleep(0.02)
        self.store.add_event(self.study.id, None, EventKind.ENGINE_EXIT, f"engine exited on {name}; trials interrupted")

    def _say_hurry(self, name: str) -> bool:
        """Once a second stop signal came: say that the trials are being killed now (True once said)."""
        if self.signals.hurried:
            self.output.say(f"second {name}: killing {len(self.live)} trials now (SIGKILL), no grace period")
        return self.signals.hurried

    def _finish(self) -> None:
        self.store.flush()
        status = self.final_status
        if self.signals.received is not None and self.options.keep_trials_on_exit:
            status = StudyStatus.RUNNING  # trials live on; `resume` picks the study up
        self.store.set_study_status(self.study.id, status)
        text, end, reason = self.core.ending(status)  # why, for the interface and the notify: command
        self.store.add_event(self.study.id, None, EventKind.STUDY_END, text, data=end)
        self.notifier.send("ended", f"study {self.study.name} {status}: {reason}")
        self.notifier.close()
        print_final(self.store, self.space, self.study, self.final_status, self.finished, self.output.say)


_APPLY: dict[type, Any] = {
    StopTrial: StudyLoop._apply_stop,
    PauseTrial: StudyLoop._apply_pause,
    ResumeTrial: StudyLoop._apply_pause,
    RecordEvent: StudyLoop._apply_event,
    SetLaunchingPaused: lambda loop, e: loop.store.set_launching_paused(loop.study.id, e.paused, e.reason),
    SetMaxParallel: lambda loop, e: loop.store.set_max_parallel(loop.study.id, e.value),
    Acknowledge: lambda loop, e: loop.store.acknowledge_command(e.command_id, e.result),
    QueueClone: StudyLoop._apply_queue_clone,
    SetBracket: lambda loop, e: loop.store.set_trial_bracket(e.trial_id, e.bracket),
    RecordEnd: lambda loop, e: loop.exits.record_end(e.trial_id, e.end),
    FlagOom: lambda loop, e: loop.exits.flag_cuda_oom(e.trial_id, e.number),
    StoreWarnings: lambda loop, e: loop.warnings.store_reading_lines(e.reading_lines),
    UpdateWarnings: lambda loop, e: loop.warnings.update(),
    Say: lambda loop, e: loop.output.say(e.text),
    Notify: lambda loop, e: loop.notifier.send(e.on, e.message),
}
"""How the loop applies each effect of the core (engine/core/effects.py): one line each."""


def _interpreter_hint(command: str) -> str:
    """Why a module is missing, most of the time: `python` on PATH is not the environment hpotui runs in."""
    found = shutil.which(command)
    if command not in ("python", "python3") or found is None:
        return ""
    if os.path.realpath(found) == os.path.realpath(sys.executable):
        return ""
    return (f" (note: `{command}` on PATH is {found}, not the interpreter hpotui runs under, {sys.executable}: "
            "activate your training environment, or write its python's full path in the command)")


def _git_commit(workdir: Path) -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(workdir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(workdir), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
