"""The engine loop: launch trials, read their reports, apply decisions and commands.

One thread, event-driven: the loop sleeps on a self-pipe woken by SIGCHLD (a trial ended) or a
short tick (new log lines), so a finished trial's slot is refilled within milliseconds instead of
a poll interval. Everything durable goes through the store; the loop's in-memory state can always
be rebuilt from the database (that is what ``resume`` does).
"""

from __future__ import annotations

import errno
import os
import random
import selectors
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .core.commands import show_params as _show_params
from .core.effects import (Acknowledge, Effect, FlagOom, Launch, Notify, PauseTrial, QueueClone, RecordEnd,
                           RecordEvent, ResumeTrial, Say, SetBracket, SetLaunchingPaused, SetMaxParallel, StopTrial,
                           StoreWarnings, UpdateWarnings)
from .core.events import (CloneQueued, Command, EarlierCommand, EndedUnwatched, GpuReleased, Halt, HistoryRead, Launched,
                          MaxParallelRead, Recovered, Reported, RerunQueued, SlotsFree, StartFailed, StopSignal, Tick,
                          TrialAdopted, TrialExited, TrialFacts, TrialStarted)
from .core.state import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED  # noqa: F401  (re-exported)
from .core.study_core import StudyCore
from .boundary import RANKED_STATUSES, boundary_warnings
from .errors import UserError
from .export import study_record, top_trials
from .executors.base import Executor
from .fd_limits import fit_parallel, out_of_fds
from .gpu_placer import GpuPlacer  # GPU sharing: host-wide claims, gpu_memory packing, OOM reruns
from .conditions import inactive_names
from .liveness import find_trial_process, process_create_time
from .metricline import Report
from .pareto import front_lines
from .records import ENDED_STATUSES, LIVE_STATUSES, EventKind, HealthFlag, StudyStatus, TrialStatus
from .records import TrialStarted as StartedPayload
from .resources import OOM_FLAG, OOM_HINT, is_cuda_oom
from .runner import LocalExecutor, TrialProcess, judge_ended_unwatched
from .schedulers.recorded import recorded_trials
from .space import Space, render_argv
from .store import HOSTNAME, Store, StudyRow, TrialRow
from .trial_files import append_engine_log, folder_warnings, make_trial_folder
from .trial_params import params_environment
from .usage import UsageSampler
from .warm_start import apply_warm_start, record_warm_start, replay_history
from . import trial_end
from . import trial_reading as reading
from .trial_logs import LiveTrial, TrialLogReader, follow
from .notify import Notifier

FLUSH_ROWS = 500
FLUSH_INTERVAL_S = 0.2
HEARTBEAT_S = 5.0
SUMMARY_S = 30.0
RESOURCE_SAMPLE_S = 5.0
TICK_MIN_S = 0.02
TICK_MAX_S = 0.1


@dataclass
class Options:
    headless: bool = True  # no one can resume launching interactively: a failure storm ends the study
    grace_period_s: float = 10.0
    keep_trials_on_exit: bool = False  # Ctrl-C / SIGTERM leave trials running for `resume` to adopt
    out: TextIO | None = None
    runs_root: Path | None = None


class StudyLoop:
    """The shell around the study's decisions (engine/core/): it feeds the core and applies its effects.

    It keeps what touches the world: signals and the self-pipe, adoption and recovery reads,
    trial folders, argv, environment and GPU placement, the executor, the trial logs, the store
    (flushes, heartbeats, storage waits), open-file limits and the printed lines.
    """

    def __init__(self, store: Store, space: Space, study: StudyRow, options: Options,
                 executor: Executor | None = None) -> None:
        self.store, self.space, self.study, self.options = store, space, study, options
        self.out = options.out or sys.stdout
        self.executor: Executor = executor or LocalExecutor(grace_period_s=options.grace_period_s)
        self.core = StudyCore(space, study.name, max_parallel=study.max_parallel or space.budget.max_parallel,
                              launching_paused=study.launching_paused, headless=options.headless,
                              now=time.monotonic(), interpreter_hint=_interpreter_hint(space.command[0]))
        self.reader = TrialLogReader(store, space, study.id, self._decide, self._maybe_flush)  # logs -> reports
        self.runs_root = options.runs_root or (store.path.resolve().parent / "hpotui_runs")
        self.study_dir = self.runs_root / study.name
        self.live: dict[int, LiveTrial] = {}
        self.signal_received: int | None = None
        self.hurried = False  # a second stop signal arrived: SIGKILL instead of waiting out the grace period
        self._watching = False  # the engine is its trials' subreaper (engine/process_tree.py)
        self._fd_checked_for, self._fd_cap = 0, self.core.state.max_parallel  # see _parallel_allowed
        self.git_commit = _git_commit(space.workdir)
        self._last_flush = self._last_heartbeat = self._last_summary = time.monotonic()
        self._tick = TICK_MIN_S
        self._wake_r, self._wake_w = os.pipe()
        self._waiting_note: str | None = None
        self.usage = UsageSampler(store, study.id, self.executor)
        self.gpu = GpuPlacer(store, study, space, lambda: self.usage.monitor, self._say)
        if self.gpu.uses_gpus(self.executor):
            self.usage.gpu_sharing = self.gpu.sharing_columns  # claimed / other memory in each GPU sample
        self.notifier = Notifier(space.notify, study.name, self._notice)
        self._last_sample = 0.0
        self._warnings: list[str] = list(study.warnings)
        self.not_read = self.core.policy.not_read  # what trials did not report, said loudly
        self.not_read.rebuild(store.events(study.id, kinds=(reading.NOT_READ_EVENT,)),
                              {t.id: t.number for t in store.trials(study.id)})
        self._warnings = [w for w in self._warnings if w not in self.not_read.lines()]  # boundary ones only
        self._data_version = -1
        self._base_env = dict(os.environ)  # read once: os.environ decodes every item on each access

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
        self._make_study_folders()
        self.store.acquire_engine_lock(self.study.id, me, process_create_time(me) or time.time())
        self._warn_about_folders()
        old_handlers = self._install_signals()
        self._watch_descendants(True)  # local trials: their orphans come back to the engine
        try:
            self.store.set_study_status(self.study.id, StudyStatus.RUNNING)
            self._recover()
            self._drop_stale_stops(took_over_at)
            self._replay_decisions()
            self.store.flush()
            while True:
                try:
                    self._handle_commands()
                    self._pump_logs()
                    self._reap()
                    self._apply(self.core.handle(Tick(time.monotonic())))  # max_time
                    if self.signal_received is not None:
                        self._shutdown_on_signal()
                        break
                    self._launch()
                    self._maybe_flush()
                    self._periodic()
                    if not self.live and (self.stop_reason or not self.core.can_launch_more()):
                        break
                    self._wait()
                except sqlite3.DatabaseError as exc:  # disk full, I/O error, a lock held, a damaged file
                    self._wait_for_storage(exc)
                except OSError as exc:  # out of file descriptors: fewer trials at once, never a crash
                    self._ran_out_of_fds(exc)
            while True:
                try:
                    self._finish()
                    break
                except sqlite3.DatabaseError as exc:
                    self._wait_for_storage(exc)
        finally:
            try:
                self.store.flush()
                self.store.release_engine_lock(self.study.id, me)
            except sqlite3.OperationalError as exc:  # left unrecorded: `resume` re-reads it from the logs
                if not self.store.damaged:  # a damaged file was already reported (_abandon_database)
                        self._say(f"could not record the last reports ({exc}); `hpotui resume {self.study.name}` "
                              "reads them again from the trial logs")
            self.usage.close()
            self.gpu.close()
            self._watch_descendants(False)
            self._restore_signals(old_handlers)
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self.exit_code

    def _watch_descendants(self, on: bool) -> None:
        """Make the engine the subreaper of its trials' orphans while the study runs (local executor only)."""
        if on or self._watching:
            self._watching = bool(self.executor.watch_descendants(on)) and on

    def _make_study_folders(self) -> None:
        """hpotui_runs/ and the study's folder, each level owner-only whatever the umask says; one line if not."""
        for folder in (self.runs_root, self.study_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not folder.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder")
            except OSError as exc:
                raise UserError(f"{folder}: cannot hold trial folders ({exc.strerror or exc}); move it away or "
                                f"fix its permissions, then run again") from None

    def _warn_about_folders(self) -> None:
        """Say so when others could swap trial folders under us (shared project folders)."""
        for warning in folder_warnings([self.runs_root, self.study_dir]):
            self.store.add_event(self.study.id, None, EventKind.FOLDER_MODE, warning, level="warning")
            self._say(f"warning: {warning}")

    # -- signals --------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w)
        handlers: dict[int, Any] = {}
        for sig, handler in ((signal.SIGCHLD, lambda *_: None), (signal.SIGINT, self._on_stop_signal),
                             (signal.SIGTERM, self._on_stop_signal), (signal.SIGHUP, self._on_hangup)):
            handlers[sig] = signal.signal(sig, handler)
        return handlers

    def _restore_signals(self, handlers: dict[int, Any]) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if self.signal_received is None:
            self.signal_received = signum
            return
        # A second Ctrl-C / SIGTERM: the user insists. No more grace period: every trial group gets
        # SIGKILL on the loop's next turn (enforce_deadline), and the loop still records them.
        self.hurried = True
        if not self.options.keep_trials_on_exit:
            for live in list(self.live.values()):
                if live.proc is not None:
                    live.proc.stop_deadline = 0.0

    def _on_hangup(self, _signum: int, _frame: Any) -> None:
        """SSH dropped: the study goes on; output moves to the study's engine.log."""
        try:
            fd = append_engine_log(self.study_dir / "engine.log")  # owner only, never through a planted link
        except OSError as exc:  # a planted link or a foreign file: keep going, the database has everything
            self.store.buffer_event(self.study.id, None, EventKind.ENGINE_LOG, f"engine.log not opened: {exc}",
                                    level="warning")
            return
        log = open(fd, "a", encoding="utf-8")  # noqa: SIM115 (lives with the loop)
        self.out = log

    # -- recovery ---------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Re-adopt trials that outlived a dead engine; mark the rest interrupted and queue their reruns."""
        trials = self.store.trials(self.study.id)
        rerun_done = {t.rerun_of for t in trials if t.rerun_of is not None}
        sampler, told = apply_warm_start(self.store, self.space, self.core.sampler)
        self.core.use_sampler(sampler)
        note = record_warm_start(self.store, self.study.id, sampler, told)
        if note:
            self._say(note)
        replay_history(self.store, self.space, sampler, self.study.id, trials, ENDED_STATUSES)
        oom_reruns = self.gpu.pending_reruns(trials, rerun_done)  # packed OOMs decided to run again alone
        self.core.handle(Recovered(tuple(TrialFacts.of(t) for t in trials), frozenset(self.gpu.oom.alone)))
        for t in oom_reruns:
            self.core.handle(RerunQueued(TrialFacts.of(t)))
        for clone_id, source_number, params, _note in self.store.pending_clones(self.study.id):
            self.core.handle(CloneQueued(clone_id, source_number, params))  # queued before the engine died: they run
        for t in trials:
            self._recover_trial(t, rerun_done)

    def _recover_trial(self, t: TrialRow, rerun_done: set[int]) -> None:
        """One trial a dead engine left: adopt it if it still runs, else record how it ended or queue its rerun."""
        if t.status == TrialStatus.QUEUED and not t.pid and Path(t.stdout_path).exists():
            t = self._find_unrecorded_start(t)  # the engine died between starting it and recording that
        if t.status == TrialStatus.RUNNING and t.pid:
            if self._adopt(t, t.pid):
                return
            self._end_leftovers(t)
            t = self._judge_unwatched(t, self._drain_unwatched(t))  # lines printed while no engine read
        if t.status in LIVE_STATUSES:
            self.store.finish_trial(t.id, TrialStatus.INTERRUPTED, exit_code=None,
                                    reason="engine stopped while the trial was pending or running")
            self.store.add_event(self.study.id, t.id, EventKind.INTERRUPTED,
                                 f"trial {t.number} interrupted: its engine died; its configuration runs again",
                                 level="warning")
            t = self.store.trial(t.id)  # type: ignore[assignment]
        if t.status == TrialStatus.INTERRUPTED and t.id not in rerun_done:
            self.core.handle(RerunQueued(TrialFacts.of(t)))

    def _adopt(self, t: TrialRow, pid: int) -> bool:
        """Track a trial (recorded running as ``pid``) that outlived its engine and still runs; False when gone."""
        proc = self.executor.adopt(t.id, pid, t.pgid or pid, t.proc_create_time or 0.0,
                                   Path(t.stdout_path), Path(t.stderr_path))
        if proc is None:
            return False
        self._track(t, proc)
        self.core.handle(TrialAdopted(TrialFacts.of(t)))
        self.gpu.adopted(t)
        self.store.buffer_event(self.study.id, t.id, EventKind.ADOPTED,
                                f"trial {t.number} re-adopted (pid {t.pid}); reading on from its logs")
        self._say(f"trial {t.number} still running (pid {t.pid}): re-adopted")
        return True

    def _drop_stale_stops(self, took_over_at: float) -> None:
        """Commands sent before this engine started: stale stops are not applied, the rest say they are late."""
        for c in self.store.pending_commands(self.study.id):
            if c.created_at < took_over_at:  # the core decides which are not applied (engine/core/commands.py)
                sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.created_at))
                self._apply(self.core.handle(EarlierCommand(_command(c), sent)))

    def _end_leftovers(self, t: TrialRow) -> None:
        """Its leader died while no engine ran; children that left its group may still run: end them."""
        ended = self.executor.end_leftovers(t.trial_dir) if t.trial_dir else 0
        if ended:
            self.store.buffer_event(self.study.id, t.id, EventKind.LEFTOVERS, f"trial {t.number}: ended {ended} of its "
                                    "processes still running after it", level="warning")

    def _find_unrecorded_start(self, t: TrialRow) -> TrialRow:
        """A queued trial with a log file was started; find its process (to adopt) or read what it left."""
        if self.executor.outlives_engine:
            found = find_trial_process(t.trial_dir)
            if found is not None:
                self.store.mark_running(t.id, pid=found[0], pgid=found[0], proc_create_time=found[1],
                                        git_commit=self.git_commit)
                return self.store.trial(t.id)  # type: ignore[return-value]
        return self._judge_unwatched(t, self._drain_unwatched(t))  # it ran and ended unrecorded

    def _drain_unwatched(self, t: TrialRow) -> LiveTrial:
        """Record what a trial printed past its committed offsets while no engine was reading it.

        Once recorded, its logs are trimmed to ``logs.max_mb`` like a watched trial's.
        """
        live = follow(self.store, self.space, t, None, Path(t.stdout_path), Path(t.stderr_path))
        self.reader.drain(live, final=True)  # its regex and file sources read on too
        self.reader.poll_files(live, final=True)
        self.store.flush()
        for stream in (live.stdout, live.stderr):
            stream.trim()
            stream.close()
        return live

    def _judge_unwatched(self, t: TrialRow, live: LiveTrial) -> TrialRow:
        """A local trial that ended while no engine ran: finished if its log shows it reported to the end.

        Ray trials die with their engine, so theirs is never a finished run: they run again.
        """
        if not self.executor.outlives_engine or t.status not in LIVE_STATUSES:
            return t
        verdict = judge_ended_unwatched(live.stderr.tail_text(), live.reports, live.last_step,
                                        self.space.scheduler.max_resource)
        if verdict is None:
            return t
        status, reason = verdict
        self.store.finish_trial(t.id, status, exit_code=None, reason=reason)
        message = f"trial {t.number} {status} while no engine was running: {reason}; not run again"
        self.store.add_event(self.study.id, t.id, status, message, level="error" if status == TrialStatus.FAILED else "info",
                             data={"exit_code": None, "best": live.best, "reports": live.reports})
        self._say(message)
        row = self.store.trial(t.id) or t
        self.core.handle(EndedUnwatched(TrialFacts.of(row)))  # counted, and the sampler learns from it
        return row

    def _replay_decisions(self) -> None:
        """Restore the scheduler from its recorded brackets and decisions (engine/schedulers/recorded.py)."""
        restored = recorded_trials(self.store, self.study.id, self.space.objective.metric,
                                   self.space.scheduler.resource)
        curves: dict[int, list[tuple[float, dict[str, float]]]] = {}
        for trial_id, live in self.live.items():  # re-adopted trials: the health monitor relearns their curves
            by_step: dict[float, dict[str, float]] = {}
            for m in self.store.metrics(trial_id):
                by_step.setdefault(m.step, {})[m.name] = m.value
            last = next(reversed(by_step), None)
            curves[trial_id] = []
            for step, values in by_step.items():
                if step == last and live.reading is not None:  # recorded, maybe not yet judged: judged once it settles
                    live.reading.open_step.add(Report(step=step, values=values, resource=values.get(
                        self.space.scheduler.resource, step)), time.monotonic())
                else:
                    curves[trial_id].append((step, values))
        # where the study's earlier trials started: the reference for blow-ups before a first report
        starts = tuple(self.store.first_values(self.study.id, self.core.health.start_metrics))
        self.core.handle(HistoryRead(tuple(restored), curves, starts))

    # -- launching -----------------------------------------------------------------------------------
    def _launch(self) -> None:
        """Start trials while the core offers a configuration and a slot is free."""
        if self.study_launching_paused():
            return  # before the open-file check: a paused study says nothing about its limit
        while (launch := self._offered_launch()) is not None:
            if not self._launch_one(launch):
                return

    def _offered_launch(self) -> Launch | None:
        effects = self.core.handle(SlotsFree(self._parallel_allowed() - len(self.live)))
        return next((e for e in effects if isinstance(e, Launch)), None)

    def _parallel_allowed(self) -> int:
        """max_parallel, within what the open-file limit allows (raised where it can be; engine/fd_limits.py)."""
        max_parallel = self.core.state.max_parallel
        if max_parallel != self._fd_checked_for:
            self._fd_checked_for = max_parallel
            fit = fit_parallel(max_parallel)
            self._fd_cap = fit.parallel
            if fit.note:
                self.store.add_event(self.study.id, None, EventKind.FD_LIMIT, fit.note,
                                     level="info" if fit.parallel == max_parallel else "warning")
                self._say(fit.note)
        return min(max_parallel, self._fd_cap)

    def _ran_out_of_fds(self, exc: OSError) -> None:
        """EMFILE / ENFILE anyway (other processes, a lower limit set from outside): stop launching, go on.

        Any other OSError is not ours to handle: raised again.
        """
        if not out_of_fds(exc):
            raise exc
        cap = max(1, len(self.live))
        if cap < self._fd_cap or not self.live:
            self._fd_cap = cap
            message = (f"out of file descriptors ({exc.strerror or exc}) with {len(self.live)} trials running: "
                       f"no new trial until one ends, at most {cap} at once from now on; raise `ulimit -n`")
            self.store.add_event(self.study.id, None, EventKind.FD_LIMIT, message, level="warning")
            self._say(message)
        if not self.live and not self.stop_reason:
            self.core.handle(Halt("out of file descriptors with no trial running: nothing can start"))
        self._wait()

    def _requeue_if_out_of_fds(self, row: TrialRow, exc: OSError) -> None:
        """EMFILE at a start is not the trial's fault: it runs again once a running trial frees its files;
        the loop (``_ran_out_of_fds``) stops launching."""
        if out_of_fds(exc):
            self.store.finish_trial(row.id, TrialStatus.INTERRUPTED, exit_code=None,
                                    reason=f"not started: the engine is out of file descriptors ({exc.strerror})")
            self.core.handle(RerunQueued(TrialFacts.of(self.store.trial(row.id))))
            raise exc

    def _cannot_make_folders(self, exc: OSError) -> bool:
        """The study folder cannot take trial folders (not writable, gone): no trial can start; say so."""
        if out_of_fds(exc):
            raise exc
        reason = (f"cannot make trial folders in {self.study_dir} ({exc.strerror or exc}): no new trials; "
                  f"fix the folder, then `hpotui resume {self.study.name}`")
        self._apply(self.core.handle(Halt(reason, record_kind=EventKind.TRIAL_FOLDER)))
        return False

    def _note_new_trial(self, row: TrialRow, folder_note: str | None, clone_id: int | None) -> None:
        """Say what is unusual about a trial about to start: a taken folder name, a clone's off-range values."""
        notes = [("trial_folder", folder_note)]
        if clone_id is not None:  # values outside the searched ranges: it runs as asked, and says so
            notes.append(("clone_note", self.store.clone_note(clone_id)))
        for kind, note in notes:
            if note:
                self.store.add_event(self.study.id, row.id, kind, f"trial {row.number}: {note}", level="warning")
                self._say(f"trial {row.number}: {note}")

    def _launch_one(self, launch: Launch) -> bool:
        """Make the trial's folder and row (with its GPU), then start it; False when it must wait or cannot."""
        params, sample_index, rerun_of, clone_id = launch.params, launch.sample_index, launch.rerun_of, launch.clone_id
        number = self.store.next_trial_number(self.study.id)
        try:
            folder = make_trial_folder(self.study_dir, number)  # fresh: a trial never inherits a folder or a file
        except OSError as exc:
            return self._cannot_make_folders(exc)
        trial_dir = folder.path
        seed = _trial_seed(self.space.search.seed, sample_index)
        argv = self._trial_argv(params, number, trial_dir)
        def insert(picker: Any) -> TrialRow | None:
            return self.store.add_trial(study_id=self.study.id, params=params, argv=argv, trial_dir=str(trial_dir),
                                        stdout_path=str(trial_dir / "stdout.log"),
                                        stderr_path=str(trial_dir / "stderr.log"), sample_index=sample_index,
                                        rerun_of=rerun_of, seed=seed, number=number, gpu_picker=picker,
                                        clone_id=clone_id)

        inserted = self.gpu.insert(insert, params, rerun_of) if self.gpu.uses_gpus(self.executor) else insert(None)
        placement = self.gpu.placed(inserted) if inserted is not None else ""
        if inserted is None:
            os.rmdir(trial_dir)  # still empty and ours; the next try makes it again
            self._note_waiting_for_gpus()
            return False  # no GPU free right now: the next tick tries again
        row: TrialRow = inserted
        self.core.handle(Launched(TrialFacts.of(row)))  # its configuration is consumed
        self._waiting_note = None
        self._note_new_trial(row, folder.note, clone_id)
        env = self._trial_env(row, params, trial_dir, seed)
        try:
            proc = self.executor.start(row.id, argv, cwd=self.space.workdir, env=env,
                                       stdout_path=Path(row.stdout_path), stderr_path=Path(row.stderr_path))
        except OSError as exc:
            self._start_failed(row, argv[0], exc)
            return True
        self._record_start(row, proc, params, launch.clone_of, placement)
        return True

    def _trial_argv(self, params: dict[str, Any], number: int, trial_dir: Path) -> list[str]:
        """The space file's command with this trial's values (and its number, folder, max_resource) filled in."""
        values: dict[str, Any] = dict(params, trial_id=number, trial_dir=str(trial_dir))
        if self.space.scheduler.max_resource is not None:
            mr = self.space.scheduler.max_resource
            values["max_resource"] = int(mr) if mr == int(mr) else mr
        return render_argv(self.space.command, values, inactive_names(self.space.params, params))

    def _trial_env(self, row: TrialRow, params: dict[str, Any], trial_dir: Path, seed: int | None) -> dict[str, str]:
        """The engine's environment plus what the trial is told: its number, folder, study, GPUs, seed, values."""
        env = dict(self._base_env)
        env.update(HPOTUI_TRIAL_ID=str(row.number), HPOTUI_TRIAL_DIR=str(trial_dir), HPOTUI_STUDY=self.study.name,
                   PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=row.gpus or "")
        for inherited in ("HPOTUI_PARAMS", "HPOTUI_PARAMS_FILE"):  # never the engine's own, if it has one
            env.pop(inherited, None)
        env.update(params_environment(params, trial_dir))  # a file past the kernel's per-string limit
        if row.gpus:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # NVML's numbering, which placement used
        if seed is not None:
            env["HPOTUI_SEED"] = str(seed)
        return env

    def _start_failed(self, row: TrialRow, program: str, exc: OSError) -> None:
        """The executor could not start it: a failed trial (out of file descriptors: it runs again later)."""
        self.gpu.ended(row, TrialStatus.FAILED)  # it never ran: its GPU claim goes at once
        self._requeue_if_out_of_fds(row, exc)
        reason = f"could not start {program!r}: {exc.strerror or exc}"
        self.store.finish_trial(row.id, TrialStatus.FAILED, exit_code=127, reason=reason)
        self._apply(self.core.handle(StartFailed(row.id, reason)))  # counted; a storm of them pauses launching

    def _record_start(self, row: TrialRow, proc: TrialProcess, params: dict[str, Any], clone_of: int | None,
                      placement: str) -> None:
        """Mark it running, track it, tell the scheduler and the GPU claims, and say where it runs."""
        number = row.number
        try:
            self.store.mark_running(row.id, pid=proc.pid, pgid=proc.pgid, proc_create_time=proc.create_time,
                                    git_commit=self.git_commit, host=proc.node or HOSTNAME)
        except sqlite3.OperationalError:
            self._track(row, proc)  # it runs: read and reap it even though its start could not be recorded
            self.core.handle(TrialStarted(TrialFacts.of(row)))  # its bracket is not recorded: the file is failing
            raise
        row = self.store.trial(row.id)  # type: ignore[assignment]
        self._track(row, proc)
        self.gpu.started(row, proc.pid, proc.create_time)
        self._apply(self.core.handle(TrialStarted(TrialFacts.of(row))))  # the scheduler deals its bracket
        where = f" on GPU {row.gpus}" + (f" ({placement})" if placement else "") if row.gpus else ""
        self.store.buffer_event(self.study.id, row.id, EventKind.STARTED, f"trial {number} started{where}: "
                                f"{_show_params(params)}",
                                data=StartedPayload(proc.pid, row.gpus, clone_of, placement).to_data())
        self._say(f"trial {number} started{where}: {_show_params(params)}")

    def _note_waiting_for_gpus(self) -> None:
        note = self.gpu.note_waiting()
        if note != self._waiting_note:
            self._waiting_note = note
            self.store.add_event(self.study.id, None, EventKind.WAITING, note)
            self._say(note)

    def _track(self, row: TrialRow, proc: TrialProcess) -> None:
        self.live[row.id] = follow(self.store, self.space, row, proc, proc.stdout_path, proc.stderr_path)

    # -- reading reports ---------------------------------------------------------------------------------
    def _pump_logs(self) -> None:
        got = behind = False
        for live in list(self.live.values()):
            got |= self.reader.drain(live)
            behind |= not (live.stdout.at_eof and live.stderr.at_eof)
            self.reader.poll_files(live)
        self.reader.settle(list(self.live.values()))
        if behind:  # a batch was cut short: more is waiting, go round the loop (and flush) at once
            self._tick = 0.0
        else:
            self._tick = TICK_MIN_S if got else min(TICK_MAX_S, max(TICK_MIN_S, self._tick * 1.5))

    def _decide(self, live: LiveTrial, report: Report | None) -> None:
        """One settled step: the core's health checks, then its scheduler (a trial being stopped is not judged)."""
        if report is None or live.proc is None or live.proc.final_status is not None:
            return
        self._apply(self.core.handle(Reported(live.row.id, report.step, report.values, report.resource, live.reports)))

    # -- exits -------------------------------------------------------------------------------------------
    def _note_placements(self) -> None:
        """Trials a cluster executor (Ray) queued at start and has now placed: record their node and pid."""
        for proc in self.executor.take_placed():
            live = self.live.get(proc.trial_id)
            if live is None:
                continue
            self.store.mark_running(proc.trial_id, pid=proc.pid, pgid=proc.pgid, proc_create_time=proc.create_time,
                                    git_commit=self.git_commit, host=proc.node or HOSTNAME)
            live.row = self.store.trial(proc.trial_id) or live.row  # its started_at is now when it started there
            self.store.buffer_event(self.study.id, proc.trial_id, EventKind.PLACED,
                                    f"trial {live.row.number} running on {proc.node} (pid {proc.pid})",
                                    data={"pid": proc.pid, "node": proc.node})
            self._say(f"trial {live.row.number} running on {proc.node}")

    def _reap(self) -> None:
        self._note_signal()
        self._note_placements()
        for trial_id, live in list(self.live.items()):
            self.executor.enforce_deadline(live.proc)
            code = self.executor.poll(live.proc)
            if code is None:
                continue
            self.reader.drain(live, final=True)
            self.reader.poll_files(live, final=True)  # what its CSV / event files hold at the end
            self.reader.settle([live], final=True)
            self.executor.reap_group(live.proc)
            self._finish_trial(live, code)  # drops it from self.live as soon as its status is recorded
            self.live.pop(trial_id, None)
            for stream in (live.stdout, live.stderr):
                stream.trim()  # all recorded now: only the newest logs.max_mb stays on disk

    def _finish_trial(self, live: LiveTrial, code: int) -> None:
        """Record how the trial ended, then what its end means (the core decides, engine/trial_end.py words it)."""
        asked = live.proc.final_status
        stderr_tail = live.stderr.tail_text() if trial_end.needs_stderr(code, asked) else ""
        problems = None if live.reading is None else tuple(reading.trial_problems(
            live.reading, self.space.objective.metric, self.space.metric_regex, self.space.logs.max_line_bytes))
        ran_s = time.time() - live.row.started_at if live.row.started_at else None
        effects = self.core.handle(TrialExited(
            live.row.id, code, asked_status=asked, asked_reason=live.proc.final_reason, reports=live.reports,
            invalid=live.invalid, stderr_tail=stderr_tail, best=live.best, best_step=live.best_step,
            curve=tuple(live.curve), last=live.last, ran_s=ran_s, problems=problems,
            cuda_oom=is_cuda_oom(stderr_tail)))
        self._apply(effects)  # RecordEnd: the row gets its final status
        status = next(e.end.status for e in effects if isinstance(e, RecordEnd))
        retry_alone = self.gpu.oom_retry(live.row, status, stderr_tail)  # out of GPU memory beside others
        self.gpu.ended(live.row, status)  # its host-wide GPU claim goes
        self._apply(self.core.handle(GpuReleased(live.row.id, retry_alone)))

    def _record_end(self, live: LiveTrial, end: trial_end.TrialEnd) -> None:
        """The trial's row gets its final status; the loop and the sampler of usage drop it."""
        for stream in (live.stdout, live.stderr):
            stream.close()
        self.store.finish_trial(live.row.id, end.status, exit_code=end.exit_code, reason=end.reason or None)
        self.live.pop(live.row.id, None)  # recorded: a later failed write (disk full) must not finish it twice
        self.usage.trial_ended(live.row.id)

    def _flag_cuda_oom(self, trial_id: int, number: int) -> None:
        """A failed trial whose stderr says CUDA ran out of memory gets the oom flag and its hint."""
        self.store.buffer_event(self.study.id, trial_id, EventKind.FLAG,
                                f"{OOM_FLAG}: trial {number} ran out of GPU memory — {OOM_HINT}",
                                level="error", data=HealthFlag(OOM_FLAG, hint=OOM_HINT).to_data())

    def _store_warnings(self, boundary: list[str]) -> None:
        """The study's warning lines: boundary warnings, then what trials did not report."""
        self.store.set_warnings(self.study.id, boundary + self.not_read.lines())

    def _update_warnings(self) -> None:
        """Boundary warnings ("best trials at the upper edge of lr"), stored on the study when they change."""
        # boundary.study_warnings, from the store's light per-trial read (this runs after every trial)
        results = self.store.ranked_results(self.study.id, RANKED_STATUSES)
        warnings = [w.text for w in boundary_warnings(self.space.params, results, self.space.objective.mode)]
        if warnings == self._warnings:
            return
        self._store_warnings(warnings)
        for warning in warnings:
            if warning not in self._warnings:
                self.store.add_event(self.study.id, None, EventKind.BOUNDARY, warning, level="warning")
                self._say(f"warning: {warning}")
        self._warnings = warnings

    # -- commands, effects ---------------------------------------------------------------------------------
    def _handle_commands(self) -> None:
        version = self.store.data_version()
        if version == self._data_version:
            return  # nobody else wrote since the last look: no new command (microseconds, no query)
        self._data_version = version
        for c in self.store.pending_commands(self.study.id):  # each row checked: engine/command_check.py
            self._apply(self.core.handle(_command(c)))

    def _apply(self, effects: list[Effect]) -> None:
        """Do what the core decided, in its order."""
        for effect in effects:
            _APPLY[type(effect)](self, effect)

    def _apply_stop(self, e: StopTrial) -> None:
        live = self.live.get(e.trial_id)
        if live is not None:
            self.executor.request_stop(live.proc, e.status, e.reason)
            self._wake_soon()

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

    def _apply_record_end(self, e: RecordEnd) -> None:
        self._record_end(self.live[e.trial_id], e.end)

    # -- housekeeping ----------------------------------------------------------------------------------------
    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self.store.pending_writes() >= FLUSH_ROWS or (self.store.pending_writes()
                                                          and now - self._last_flush >= FLUSH_INTERVAL_S):
            self.store.flush()
            self._last_flush = now
            for live in self.live.values():  # now recorded: older log output may leave the disk (logs.max_mb)
                live.stdout.trim()
                live.stderr.trim()

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self._last_sample >= RESOURCE_SAMPLE_S:
            self._last_sample = now
            self.usage.sample({tid: (lt.row.number, lt.proc.pid, lt.row.gpus)
                               for tid, lt in self.live.items() if lt.proc is not None})
            self.executor.sweep()  # descendants that left their trial's group
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self.store.heartbeat(self.study.id)
            self._last_heartbeat = now
            row = self.store.study_by_id(self.study.id)
            if row and row.max_parallel:
                self.core.handle(MaxParallelRead(row.max_parallel))
        if now - self._last_summary >= SUMMARY_S:
            self._last_summary = now
            self._say(self._summary())

    def _summary(self) -> str:
        counts = self.store.status_counts(self.study.id)
        parts = [f"{counts.get(s, 0)} {s}" for s in TrialStatus if s != TrialStatus.QUEUED and counts.get(s)]
        best, counters = "", self.core.counters
        if counters.global_best is not None:
            best = f"; best {self.space.objective.metric}={counters.global_best:.4g} " \
                   f"(trial {counters.global_best_trial})"
        return f"{self.finished}/{self.space.budget.max_trials} finished: " + ", ".join(parts) + best

    def _wait(self) -> None:
        selector = getattr(self, "_selector", None)
        if selector is None:
            selector = self._selector = selectors.DefaultSelector()
            selector.register(self._wake_r, selectors.EVENT_READ)
        timeout = self._tick if self.live else 0.5
        if selector.select(timeout):
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _wait_for_storage(self, exc: sqlite3.DatabaseError) -> None:
        """The database cannot be written (disk full, I/O error, a lock held too long): wait, lose nothing.

        No trial starts while waiting. Nothing is lost: unwritten metrics and events stay in the
        store's buffers, and lines not yet read stay in the trial logs past the committed offsets.
        Once a test write succeeds the loop carries on where it stopped. A stop signal while
        waiting stops the trials (unless kept) and exits; `resume` reads their logs again.
        """
        damage = self.store.diagnose(exc)  # deleted, replaced, truncated, corrupt: waiting would not help
        if damage:
            self._abandon_database(damage)
        if not _storage_trouble(exc):
            raise exc
        since = time.monotonic()
        why = "the disk is full" if "full" in str(exc) else f"{exc}"
        message = (f"cannot write the study database {self.store.path} ({why}): no new trials until it can be "
                   "written again; nothing recorded is lost, retrying every second")
        self._say(message)
        while self.signal_received is None:
            self._wait_s(1.0)
            try:
                self.store.heartbeat(self.study.id)  # a real write: succeeds once there is room again
                self.store.flush()
            except sqlite3.OperationalError as again:
                if self.store.diagnose(again):
                    self._abandon_database(self.store.damaged or str(again))
                if not _storage_trouble(again):
                    raise
                continue
            waited = time.monotonic() - since
            self.store.add_event(self.study.id, None, EventKind.STORAGE, f"{message}; writable again after {waited:.0f}s",
                                 level="warning", data={"waited_s": waited})
            self._say(f"the study database is writable again after {waited:.0f}s: continuing")
            return
        sig = self.signal_received
        code = EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED
        if not self.options.keep_trials_on_exit:
            self._stop_without_recording("engine stopped while the disk was full")
        self._say(f"{signal.Signals(sig).name}: exiting without recording more (database not writable); "
                  f"`hpotui resume {self.study.name}` reads the trial logs again")
        raise SystemExit(code)

    def _stop_without_recording(self, reason: str) -> None:
        """End every running trial (SIGTERM, SIGKILL after the grace period) with no database to record it in."""
        for live in self.live.values():
            self.executor.request_stop(live.proc, TrialStatus.INTERRUPTED, reason)
        deadline = time.monotonic() + self.options.grace_period_s + 2
        while time.monotonic() < deadline and any(self.executor.poll(lt.proc) is None for lt in self.live.values()):
            for live in self.live.values():
                self.executor.enforce_deadline(live.proc)
            time.sleep(0.05)

    def _abandon_database(self, problem: str) -> None:
        """The study file was deleted, replaced, truncated or found corrupt: say so, start nothing, exit 1.

        Nothing more is written to it (the store refuses), so nothing is recorded as if it were
        safe. Running trials are stopped (left running with --keep-trials); what they printed
        stays in their logs, which `resume` reads again once a good copy of the file is back.
        """
        self.core.handle(Halt(problem, study_failed=False))  # exit 1; nothing more is recorded
        running = len(self.live)
        kept = self.options.keep_trials_on_exit
        if not kept:
            self._stop_without_recording("the study database was lost")
        what = "left running" if kept else "stopped"
        self._say(f"{problem}: no new trials; {running} running trials {what}; nothing more is recorded in it. "
                  f"Their output stays in {self.study_dir}. Restore the file from a backup and run "
                  f"`hpotui resume {self.study.name}`, or launch again with another --db")
        raise SystemExit(self.exit_code)

    def _wait_s(self, seconds: float) -> None:
        """Sleep, but wake at once on a signal (the wake-up pipe)."""
        selector = getattr(self, "_selector", None)
        if selector is None:
            self._wait()
            return
        if selector.select(seconds):
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _wake_soon(self) -> None:
        self._tick = TICK_MIN_S

    def _notice(self, text: str) -> None:
        """A ``notify:`` command that failed: a warning event and a line in the engine's log, never fatal."""
        self.store.buffer_event(self.study.id, None, EventKind.NOTIFY, text, level="warning")
        self._say(text)

    def _say(self, text: str) -> None:
        try:
            self.out.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
            self.out.flush()
        except (OSError, ValueError):
            pass  # the terminal went away; the database has everything

    # -- the end ------------------------------------------------------------------------------------------------
    def _note_signal(self) -> None:
        """Tell the core once that a stop signal came: interrupted trials stop running again, exit 130 / 143."""
        if self.signal_received is not None and not self.core.state.stopping_on_signal:
            self.core.handle(StopSignal(interrupt=self.signal_received == signal.SIGINT))

    def _shutdown_on_signal(self) -> None:
        sig = self.signal_received
        name = signal.Signals(sig).name if sig else "signal"
        self._note_signal()
        if self.options.keep_trials_on_exit:
            self._say(f"{name}: engine exits, {len(self.live)} trials keep running; "
                      f"`hpotui resume {self.study.name}` adopts them")
            for live in self.live.values():
                self.reader.drain(live)
            self.store.add_event(self.study.id, None, EventKind.ENGINE_EXIT, f"engine exited on {name}; trials kept running")
            return
        self._say(f"{name}: stopping {len(self.live)} running trials (they will run again on resume)")
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
        if self.hurried:
            self._say(f"second {name}: killing {len(self.live)} trials now (SIGKILL), no grace period")
        return self.hurried

    def _finish(self) -> None:
        self.store.flush()
        status = self.final_status
        if self.signal_received is not None and self.options.keep_trials_on_exit:
            status = StudyStatus.RUNNING  # trials live on; `resume` picks the study up
        self.store.set_study_status(self.study.id, status)
        text, end, reason = self.core.ending(status)  # why, for the interface and the notify: command
        self.store.add_event(self.study.id, None, EventKind.STUDY_END, text, data=end)
        self.notifier.send("ended", f"study {self.study.name} {status}: {reason}")
        self.notifier.close()
        self._print_final()

    def _print_final(self) -> None:
        rows = top_trials(self.store, self.study.id, 5)
        finished = self.finished
        self._say(f"study {self.study.name} {self.final_status}: {finished} trials finished")
        if not rows:
            self._say("no trial reported the objective " + self.space.objective.metric)
            return
        metric = self.space.objective.metric
        self._say(f"top {len(rows)} by {metric} ({self.space.objective.mode}):")
        for rank, t in enumerate(rows, 1):
            self._say(f"  {rank}. trial {t.number:<4} {metric}={t.best_value:<10.4g} {t.status:<10} "
                      f"{_show_params(t.params)}")
        best = rows[0]
        self._say(f"best trial {best.number}: {shlex.join(best.argv)}")
        if self.space.multi_objective:  # several objectives: the front is the answer, not one best trial
            record = study_record(self.store, self.store.study_by_id(self.study.id) or self.study)
            for line in front_lines(record["trials"], record["study"]["objective"]):
                self._say(line)


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
    RecordEnd: StudyLoop._apply_record_end,
    FlagOom: lambda loop, e: loop._flag_cuda_oom(e.trial_id, e.number),
    StoreWarnings: lambda loop, e: loop.store.set_warnings(loop.study.id, loop._warnings + list(e.reading_lines)),
    UpdateWarnings: lambda loop, e: loop._update_warnings(),
    Say: lambda loop, e: loop._say(e.text),
    Notify: lambda loop, e: loop.notifier.send(e.on, e.message),
}
"""How the loop applies each effect of the core (engine/core/effects.py): one line each."""


def _command(row: Any) -> Command:
    """A commands-table row (engine/store.py's CommandRow) as the core reads it."""
    return Command(row.id, row.action, row.trial_number, row.args, row.problem)


def _storage_trouble(exc: sqlite3.Error) -> bool:
    """A write failed for a reason that passes (space, I/O, a lock), not a bug in our SQL."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return (name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED"))
            or any(words in text for words in ("disk is full", "disk i/o error", "database is locked")))


def _interpreter_hint(command: str) -> str:
    """Why a module is missing, most of the time: `python` on PATH is not the environment hpotui runs in."""
    found = shutil.which(command)
    if command not in ("python", "python3") or found is None:
        return ""
    if os.path.realpath(found) == os.path.realpath(sys.executable):
        return ""
    return (f" (note: `{command}` on PATH is {found}, not the interpreter hpotui runs under, {sys.executable}: "
            "activate your training environment, or write its python's full path in the command)")


def _trial_seed(seed: int | None, index: int | None) -> int | None:
    if seed is None or index is None:
        return None
    return random.Random(f"trial-seed:{seed}:{index}").randrange(2**31)


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
