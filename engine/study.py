"""The engine loop: launch trials, read their reports, apply decisions and commands.

One thread, event-driven: the loop sleeps on a self-pipe woken by SIGCHLD (a trial ended) or a
short tick (new log lines), so a finished trial's slot is refilled within milliseconds instead of
a poll interval. Everything durable goes through the store; the loop's in-memory state can always
be rebuilt from the database (that is what ``resume`` does).
"""

from __future__ import annotations

import errno
import math
import os
import re
import selectors
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .clones import Refused, with_overrides
from .errors import UserError
from .executors.base import Executor
from .fd_limits import fit_parallel, out_of_fds
from .health import HealthMonitor, status_for
from .conditions import inactive_names
from .invalid import INVALID_STATUS, INVALID_STREAK_LIMIT
from .liveness import find_trial_process, process_create_time
from .metricline import Report
from .records import (EARLY_STOPPED_STATUSES, ENDED_STATUSES, LIVE_STATUSES, CommandResult, EventKind,
                      HealthFlag, NotRead, SchedulerDecision, StudyEnd, StudyStatus, TrialStarted, TrialStatus)
from .runner import LocalExecutor, TrialProcess, judge_ended_unwatched
from .sampling import Sampler, make_sampler
from .schedulers import Action, make_scheduler
from .schedulers.recorded import restore_scheduler
from .space import Space, format_value, render_argv
from .store import HOSTNAME, TERMINAL_STATUSES, Store, StudyRow, TrialRow
from .trial_files import append_engine_log, folder_warnings, make_trial_folder
from .trial_params import params_environment
from .usage import UsageSampler
from . import trial_end
from . import trial_reading as reading
from .trial_logs import LiveTrial, TrialLogReader, follow
from .notify import Notifier

FLUSH_ROWS = 500
FLUSH_INTERVAL_S = 0.2
HEARTBEAT_S = 5.0
SUMMARY_S = 30.0
RESOURCE_SAMPLE_S = 5.0
HEALTH_EVERY_REPORT = 200
WARNINGS_EVERY_FINISH = 20
TICK_MIN_S = 0.02
TICK_MAX_S = 0.1
FINISHED = TERMINAL_STATUSES  # what counts towards max_trials ("interrupted" runs again)

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 130, 143


@dataclass
class Options:
    headless: bool = True  # no one can resume launching interactively: a failure storm ends the study
    grace_period_s: float = 10.0
    keep_trials_on_exit: bool = False  # Ctrl-C / SIGTERM leave trials running for `resume` to adopt
    out: TextIO | None = None
    runs_root: Path | None = None


@dataclass
class _Counters:
    no_improvement: int = 0
    failure_signature: str | None = None
    failure_streak: int = 0
    global_best: float | None = None
    global_best_trial: int | None = None
    invalid_streak: int = 0


class StudyLoop:
    def __init__(self, store: Store, space: Space, study: StudyRow, options: Options,
                 executor: Executor | None = None) -> None:
        self.store, self.space, self.study, self.options = store, space, study, options
        self.out = options.out or sys.stdout
        self.executor: Executor = executor or LocalExecutor(grace_period_s=options.grace_period_s)
        self.sampler: Sampler = make_sampler(space)
        self.scheduler = make_scheduler(space.scheduler, space.objective.metric, space.objective.mode)
        self.health = HealthMonitor(space.health, space.objective.metric, space.objective.mode,
                                    step_name=space.scheduler.resource)
        self.reader = TrialLogReader(store, space, study.id, self._decide, self._maybe_flush)  # logs -> reports
        self.runs_root = options.runs_root or (store.path.resolve().parent / "hpotui_runs")
        self.study_dir = self.runs_root / study.name
        self.live: dict[int, LiveTrial] = {}
        self.rerun_queue: list[TrialRow] = []  # interrupted trials whose configuration runs again
        self.clone_queue: list[dict[str, Any]] = []
        self.clone_origins: list[int] = []  # the source trial number of each queued clone, in step with it
        self.clone_ids: list[int] = []  # each queued clone's row in the clones table, in step with it
        self.clones_finished = 0  # finished trials that ran a clone: outside max_trials
        self._command_id: int | None = None  # the command being applied (a clone is queued with its ack)
        self.counters = _Counters()
        self.stop_reason: str | None = None  # set once no new trial may start
        self.final_status: str = StudyStatus.COMPLETED
        self.exit_code = EXIT_OK
        self.signal_received: int | None = None
        self.hurried = False  # a second stop signal arrived: SIGKILL instead of waiting out the grace period
        self._watching = False  # the engine is its trials' subreaper (engine/process_tree.py)
        self.deadline = None if space.budget.max_time_s is None else time.monotonic() + space.budget.max_time_s
        self.max_parallel = study.max_parallel or space.budget.max_parallel
        self._fd_checked_for, self._fd_cap = 0, self.max_parallel  # see _parallel_allowed
        self.git_commit = _git_commit(space.workdir)
        self.next_sample_index = 0
        self._last_flush = self._last_heartbeat = self._last_summary = time.monotonic()
        self._tick = TICK_MIN_S
        self._wake_r, self._wake_w = os.pipe()
        self._waiting_note: str | None = None
        self._last_claims: list[tuple[str, float]] = []
        self.usage = UsageSampler(store, study.id, self.executor)
        from .gpu_placer import GpuPlacer  # GPU sharing: host-wide claims, gpu_memory packing, OOM reruns

        self.gpu = GpuPlacer(store, study, space, lambda: self.usage.monitor, self._say)
        if self.gpu.uses_gpus(self.executor):
            self.usage.gpu_sharing = self.gpu.sharing_columns  # claimed / other memory in each GPU sample
        self.notifier = Notifier(space.notify, study.name, self._notice)
        self._last_sample = 0.0
        self._warnings: list[str] = list(study.warnings)
        self.not_read = reading.ReadingLedger(space.objective.metric)  # what trials did not report, said loudly
        self.not_read.rebuild(store.events(study.id, kinds=(reading.NOT_READ_EVENT,)),
                              {t.id: t.number for t in store.trials(study.id)})
        self._warnings = [w for w in self._warnings if w not in self.not_read.lines()]  # boundary ones only
        self.finished = 0
        self.launching_paused = study.launching_paused
        self._data_version = -1
        self._base_env = dict(os.environ)  # read once: os.environ decodes every item on each access

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
                    self._check_budget()
                    if self.signal_received is not None:
                        self._shutdown_on_signal()
                        break
                    self._launch()
                    self._maybe_flush()
                    self._periodic()
                    if not self.live and (self.stop_reason or not self._can_launch_more()):
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
        indices = [t.sample_index for t in trials if t.sample_index is not None]
        self.next_sample_index = max(indices) + 1 if indices else 0
        rerun_done = {t.rerun_of for t in trials if t.rerun_of is not None}
        for t in trials:
            self._seed_counters(t)
        from .warm_start import apply_warm_start, record_warm_start, replay_history

        self.sampler, told = apply_warm_start(self.store, self.space, self.sampler)
        note = record_warm_start(self.store, self.study.id, self.sampler, told)
        if note:
            self._say(note)
        replay_history(self.store, self.space, self.sampler, self.study.id, trials, ENDED_STATUSES)
        oom_reruns = self.gpu.pending_reruns(trials, rerun_done)  # packed OOMs decided to run again alone
        self.rerun_queue.extend(oom_reruns)
        self.finished = sum(1 for t in trials if t.status in FINISHED and t.id not in self.gpu.oom.alone)
        self._recover_clones(trials)
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
            self.rerun_queue.append(t)

    def _adopt(self, t: TrialRow, pid: int) -> bool:
        """Track a trial (recorded running as ``pid``) that outlived its engine and still runs; False when gone."""
        proc = self.executor.adopt(t.id, pid, t.pgid or pid, t.proc_create_time or 0.0,
                                   Path(t.stdout_path), Path(t.stderr_path))
        if proc is None:
            return False
        self._track(t, proc)
        self.gpu.adopted(t)
        self.store.buffer_event(self.study.id, t.id, EventKind.ADOPTED,
                                f"trial {t.number} re-adopted (pid {t.pid}); reading on from its logs")
        self._say(f"trial {t.number} still running (pid {t.pid}): re-adopted")
        return True

    def _recover_clones(self, trials: list[TrialRow]) -> None:
        """Clones queued before the engine died still run; finished ones stay outside max_trials."""
        self.clones_finished = sum(1 for t in trials if t.clone_id is not None and t.status in FINISHED
                                   and t.id not in self.gpu.oom.alone)  # counted as self.finished counts them
        for clone_id, source_number, params, _note in self.store.pending_clones(self.study.id):
            self._queue_clone(clone_id, source_number, params)

    def _drop_stale_stops(self, took_over_at: float) -> None:
        """Stops sent to an engine that died before acting on them are not applied by a later resume.

        Resuming is the user's later decision; an old ``stop_study`` would end the resumed study at
        once, without a word. Each is acknowledged "not applied" (so the sender's screen says so),
        recorded as an event and printed; other waiting commands (pause, max_parallel, clones) still
        apply, and the engine says that they came from before it started.
        """
        stale = [c for c in self.store.pending_commands(self.study.id) if c.created_at < took_over_at
                 and not (c.problem and not c.action.startswith("stop_"))]  # malformed rows: refused as usual
        for command in stale:
            sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(command.created_at))
            if command.action in ("stop_study", "stop_trial"):
                what = "study" if command.action == "stop_study" else f"trial {command.trial_number}"
                result = (f"not applied: this stop of the {what} was sent at {sent} to an engine that died before "
                          f"acting on it, and the study was resumed since; stop it again if you still mean it")
                self.store.acknowledge_command(command.id, CommandResult.refused(result))
            else:
                result = f"sent at {sent} while no engine was running; applied now"
            self.store.add_event(self.study.id, None, EventKind.STALE_COMMAND, f"{command.action}: {result}",
                                 level="warning")
            self._say(f"{command.action}: {result}")

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
        self.finished += 1
        self.clones_finished += row.clone_id is not None
        self._seed_counters(row)
        self.sampler.observe(row.sample_index if row.sample_index is not None else -1, row.params, row.best_value,
                             status=status, step=row.best_step)
        return row

    def _seed_counters(self, t: TrialRow) -> None:
        if t.status in FINISHED and t.best_value is not None and not math.isnan(t.best_value):
            if self.counters.global_best is None or self.space.objective.better(t.best_value, self.counters.global_best):
                self.counters.global_best, self.counters.global_best_trial = t.best_value, t.number

    def _replay_decisions(self) -> None:
        """Restore the scheduler from its recorded brackets and decisions (engine/schedulers/recorded.py)."""
        restore_scheduler(self.scheduler, self.store, self.study.id, self.space.objective.metric,
                          self.space.scheduler.resource)
        for trial_id, live in self.live.items():  # re-adopted trials: the health monitor relearns their curves
            by_step: dict[float, dict[str, float]] = {}
            for m in self.store.metrics(trial_id):
                by_step.setdefault(m.step, {})[m.name] = m.value
            last = next(reversed(by_step), None)
            for step, values in by_step.items():
                if step == last and live.reading is not None:  # recorded, maybe not yet judged: judged once it settles
                    live.reading.open_step.add(Report(step=step, values=values, resource=values.get(
                        self.space.scheduler.resource, step)), time.monotonic())
                else:
                    self.health.observe(trial_id, step, values)
        # where the study's earlier trials started: the reference for blow-ups before a first report
        for trial_id, name, value in self.store.first_values(self.study.id, self.health.start_metrics):
            self.health.add_start(trial_id, name, value)

    # -- launching -----------------------------------------------------------------------------------
    def _finished_count(self) -> int:
        return self.finished

    def _can_launch_more(self) -> bool:
        if self.stop_reason:
            return False
        if self.clone_queue or (self.rerun_queue and self.rerun_queue[0].clone_id is not None):
            return True  # a clone runs in addition to max_trials, even once the budget is fully launched
        if self._budget_used() >= self.space.budget.max_trials:
            return False
        if self.rerun_queue:
            return True
        size = self.sampler.size()
        return size is None or self.next_sample_index < size

    def _budget_used(self) -> int:
        """The search's own trials, finished or running; clones (the user's extra requests) are not counted."""
        return self.finished - self.clones_finished + sum(1 for lt in self.live.values() if lt.row.clone_id is None)

    def _launch(self) -> None:
        if self.study_launching_paused():
            return
        while len(self.live) < self._parallel_allowed() and self._can_launch_more():
            if not self._launch_one():
                return

    def _parallel_allowed(self) -> int:
        """max_parallel, within what the open-file limit allows (raised where it can be; engine/fd_limits.py)."""
        if self.max_parallel != self._fd_checked_for:
            self._fd_checked_for = self.max_parallel
            fit = fit_parallel(self.max_parallel)
            self._fd_cap = fit.parallel
            if fit.note:
                self.store.add_event(self.study.id, None, EventKind.FD_LIMIT, fit.note,
                                     level="info" if fit.parallel == self.max_parallel else "warning")
                self._say(fit.note)
        return min(self.max_parallel, self._fd_cap)

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
            self.stop_reason = "out of file descriptors with no trial running: nothing can start"
            self.final_status, self.exit_code = StudyStatus.FAILED, EXIT_FAILED
        self._wait()

    def study_launching_paused(self) -> bool:
        return self.launching_paused

    def _set_launching_paused(self, paused: bool, reason: str | None) -> None:
        self.launching_paused = paused
        self.store.set_launching_paused(self.study.id, paused, reason)

    def _next_configuration(self) -> tuple[dict[str, Any], int | None, int | None] | None:
        """(params, sample_index, rerun_of) of the next trial, without consuming it; reruns and clones first."""
        if self.rerun_queue:
            t = self.rerun_queue[0]
            return t.params, t.sample_index, t.id
        if self.clone_queue:
            return self.clone_queue[0], None, None
        params = self.sampler.suggest(self.next_sample_index)
        return None if params is None else (params, self.next_sample_index, None)

    def _requeue_if_out_of_fds(self, row: TrialRow, exc: OSError) -> None:
        """EMFILE at a start is not the trial's fault: it runs again once a running trial frees its files;
        the loop (``_ran_out_of_fds``) stops launching."""
        if out_of_fds(exc):
            self.store.finish_trial(row.id, TrialStatus.INTERRUPTED, exit_code=None,
                                    reason=f"not started: the engine is out of file descriptors ({exc.strerror})")
            self.rerun_queue.append(self.store.trial(row.id))  # type: ignore[arg-type]
            raise exc

    def _cannot_make_folders(self, exc: OSError) -> bool:
        """The study folder cannot take trial folders (not writable, gone): no trial can start; say so."""
        if out_of_fds(exc):
            raise exc
        self.stop_reason = (f"cannot make trial folders in {self.study_dir} ({exc.strerror or exc}): no new trials; "
                            f"fix the folder, then `hpotui resume {self.study.name}`")
        self.final_status, self.exit_code = StudyStatus.FAILED, EXIT_FAILED
        self.store.add_event(self.study.id, None, EventKind.TRIAL_FOLDER, self.stop_reason, level="error")
        self._say(self.stop_reason)
        return False

    def _next_clone_id(self) -> int | None:
        """The clone the next trial runs (a rerun keeps its original's), or None for the search's own."""
        if self.rerun_queue:
            return self.rerun_queue[0].clone_id
        return self.clone_ids[0] if self.clone_ids else None

    def _note_new_trial(self, row: TrialRow, folder_note: str | None, clone_id: int | None) -> None:
        """Say what is unusual about a trial about to start: a taken folder name, a clone's off-range values."""
        notes = [("trial_folder", folder_note)]
        if clone_id is not None:  # values outside the searched ranges: it runs as asked, and says so
            notes.append(("clone_note", self.store.clone_note(clone_id)))
        for kind, note in notes:
            if note:
                self.store.add_event(self.study.id, row.id, kind, f"trial {row.number}: {note}", level="warning")
                self._say(f"trial {row.number}: {note}")

    def _consume_configuration(self) -> None:
        if self.rerun_queue:
            self.rerun_queue.pop(0)
        elif self.clone_queue:
            self.clone_queue.pop(0)
            self.clone_origins.pop(0)
            self.clone_ids.pop(0)
        else:
            self.next_sample_index += 1

    def _launch_one(self) -> bool:
        picked = self._next_configuration()
        if picked is None:
            return False
        params, sample_index, rerun_of = picked
        clone_of = self.clone_origins[0] if not self.rerun_queue and self.clone_origins else None
        clone_id = self._next_clone_id()
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
        self._consume_configuration()
        self._waiting_note = None
        self._note_new_trial(row, folder.note, clone_id)
        env = self._trial_env(row, params, trial_dir, seed)
        try:
            proc = self.executor.start(row.id, argv, cwd=self.space.workdir, env=env,
                                       stdout_path=Path(row.stdout_path), stderr_path=Path(row.stderr_path))
        except OSError as exc:
            self._start_failed(row, argv[0], exc)
            return True
        self._record_start(row, proc, params, clone_of, placement)
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
        self.finished += 1
        self.clones_finished += row.clone_id is not None
        self.store.add_event(self.study.id, row.id, EventKind.FAILED, f"trial {row.number} failed: {reason}", level="error")
        self._say(f"trial {row.number} failed to start: {reason}")
        self._note_failure(reason)

    def _record_start(self, row: TrialRow, proc: TrialProcess, params: dict[str, Any], clone_of: int | None,
                      placement: str) -> None:
        """Mark it running, track it, tell the scheduler and the GPU claims, and say where it runs."""
        number = row.number
        try:
            self.store.mark_running(row.id, pid=proc.pid, pgid=proc.pgid, proc_create_time=proc.create_time,
                                    git_commit=self.git_commit, host=proc.node or HOSTNAME)
        except sqlite3.OperationalError:
            self._track(row, proc)  # it runs: read and reap it even though its start could not be recorded
            self.scheduler.on_trial_start(row.id)
            raise
        row = self.store.trial(row.id)  # type: ignore[assignment]
        self._track(row, proc)
        self.gpu.started(row, proc.pid, proc.create_time)
        self.scheduler.on_trial_start(row.id)
        if (bracket := self.scheduler.assigned_bracket(row.id)) is not None and bracket != row.bracket:
            self.store.set_trial_bracket(row.id, bracket)
        where = f" on GPU {row.gpus}" + (f" ({placement})" if placement else "") if row.gpus else ""
        self.store.buffer_event(self.study.id, row.id, EventKind.STARTED, f"trial {number} started{where}: "
                                f"{_show_params(params)}",
                                data=TrialStarted(proc.pid, row.gpus, clone_of, placement).to_data())
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
        """Health checks, then the scheduler, on one step's values."""
        if report is None or live.proc is None or live.proc.final_status is not None:
            return
        objective = report.values.get(self.space.objective.metric)
        for flag in (self.health.observe(live.row.id, report.step, report.values)
                     if _health_due(live.reports, report.values) else ()):
            self.store.buffer_event(self.study.id, live.row.id, EventKind.FLAG, flag.message,
                                    level="warning" if not flag.stop else "error",
                                    data=HealthFlag(flag.kind, flag.step, flag.value, flag.hint).to_data())
            if flag.stop:
                self._stop_trial(live, status_for(flag), flag.message)
                self._say(f"trial {live.row.number} {flag.message}")
                return
        if objective is not None and math.isfinite(objective):
            resource = report.resource if report.resource is not None else report.step
            decision = self.scheduler.on_result(live.row.id, resource, objective)
            if decision.action == Action.STOP:
                self._stop_trial(live, TrialStatus.PRUNED, decision.reason)
                self.store.buffer_event(self.study.id, live.row.id, EventKind.SCHEDULER,
                                        f"trial {live.row.number} {decision.reason}",
                                        data=SchedulerDecision("stop", report.step, objective, resource,
                                                               decision.rung).to_data())
            elif decision.reason:
                self.store.buffer_event(self.study.id, live.row.id, EventKind.SCHEDULER,
                                        f"trial {live.row.number} {decision.reason}",
                                        data=SchedulerDecision("continue", report.step, objective,
                                                               resource).to_data())

    def _stop_trial(self, live: LiveTrial, status: str, reason: str) -> None:
        self.executor.request_stop(live.proc, status, reason)
        self._wake_soon()

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
        """Record how the trial ended, then what its end means (engine/trial_end.py decides the status)."""
        asked = live.proc.final_status
        stderr_tail = live.stderr.tail_text() if trial_end.needs_stderr(code, asked) else ""
        end = trial_end.judge_exit(code, asked_status=asked, asked_reason=live.proc.final_reason,
                                   reports=live.reports, invalid=live.invalid, stderr_tail=stderr_tail)
        self._record_end(live, end)
        retry_alone = self.gpu.oom_retry(live.row, end.status, stderr_tail)  # out of GPU memory beside others
        self.gpu.ended(live.row, end.status)  # its host-wide GPU claim goes
        if retry_alone:  # recorded failed with flag oom; its configuration runs once more, alone on a GPU
            self.rerun_queue.append(self.store.trial(live.row.id))  # type: ignore[arg-type]
        elif end.status == TrialStatus.INTERRUPTED:
            self._finish_interrupted(live, end.reason)
        elif end.status == INVALID_STATUS:
            self._finish_invalid(live)
        else:
            self._finish_result(live, end, stderr_tail)

    def _record_end(self, live: LiveTrial, end: trial_end.TrialEnd) -> None:
        """The trial's row gets its final status; the loop, the sampler of usage and the detectors drop it."""
        for stream in (live.stdout, live.stderr):
            stream.close()
        self.store.finish_trial(live.row.id, end.status, exit_code=end.exit_code, reason=end.reason or None)
        self.live.pop(live.row.id, None)  # recorded: a later failed write (disk full) must not finish it twice
        self.usage.trial_ended(live.row.id)
        self.scheduler.on_trial_end(live.row.id)
        self.health.forget(live.row.id)

    def _finish_interrupted(self, live: LiveTrial, reason: str) -> None:
        """Its node was lost, or the engine is stopping: not a result, it runs again (unless the engine stops)."""
        number = live.row.number
        self.store.add_event(self.study.id, live.row.id, EventKind.INTERRUPTED,
                             f"trial {number} interrupted — {reason}; its configuration runs again",
                             level="warning")
        self._say(f"trial {number} interrupted — {reason}")
        if self.signal_received is None:
            self.rerun_queue.append(self.store.trial(live.row.id))  # type: ignore[arg-type]

    def _finish_result(self, live: LiveTrial, end: trial_end.TrialEnd, stderr_tail: str) -> None:
        """A finished trial (completed, failed, pruned, stopped, diverged): counted, said, learned from."""
        status, reason = end.status, end.reason
        self.counters.invalid_streak = 0
        self.finished += 1
        self.clones_finished += live.row.clone_id is not None
        ran_s = time.time() - live.row.started_at if live.row.started_at else None
        event_text, said = trial_end.ended_lines(live.row.number, status, reason, ran_s=ran_s,
                                                 objective=self._objective_text(live))
        if status == TrialStatus.FAILED:
            self._flag_cuda_oom(live, stderr_tail)
        self._note_not_read(live, status)
        self.store.buffer_event(self.study.id, live.row.id, status, event_text,  # flushed with the next batch (<= 0.2 s)
                                level=trial_end.ended_level(status),
                                data=trial_end.ended_data(status, end.exit_code, live.best, live.reports, stderr_tail))
        self._say(said)
        if status == TrialStatus.FAILED:
            self._note_failure(reason)
        else:
            self.counters.failure_streak, self.counters.failure_signature = 0, None
        index = live.row.sample_index if live.row.sample_index is not None else -1
        self.sampler.observe(index, live.row.params, live.best, status=status, step=live.best_step,
                             curve=live.curve, last=live.last)
        self._note_result(live)
        from .boundary import MIN_TRIALS as BOUNDARY_MIN_TRIALS  # says nothing with fewer finished

        if trial_end.warnings_due(self.finished, BOUNDARY_MIN_TRIALS, WARNINGS_EVERY_FINISH):
            self._update_warnings()  # every finish at first, then thinning out: it ranks the whole study

    def _flag_cuda_oom(self, live: LiveTrial, stderr_tail: str) -> None:
        """A failed trial whose stderr says CUDA ran out of memory gets the oom flag and its hint."""
        from .resources import OOM_FLAG, OOM_HINT, is_cuda_oom

        if is_cuda_oom(stderr_tail):
            self.store.buffer_event(self.study.id, live.row.id, EventKind.FLAG,
                                    f"{OOM_FLAG}: trial {live.row.number} ran out of GPU memory — {OOM_HINT}",
                                    level="error", data=HealthFlag(OOM_FLAG, hint=OOM_HINT).to_data())

    def _finish_invalid(self, live: LiveTrial) -> None:
        """Not a result and not a failure: the sampler learns the region is invalid and is asked again."""
        number, reason = live.row.number, live.invalid or ""
        self.store.buffer_event(self.study.id, live.row.id, INVALID_STATUS,
                                f"trial {number} invalid: {reason}; not counted, another configuration runs",
                                level="warning", data={"reason": reason})
        self._say(f"trial {number} invalid: {reason}")
        index = live.row.sample_index if live.row.sample_index is not None else -1
        self.sampler.observe(index, live.row.params, None, status=INVALID_STATUS, curve=live.curve, last=live.last)
        self.counters.invalid_streak += 1
        if self.counters.invalid_streak >= INVALID_STREAK_LIMIT and not self.stop_reason:
            self.stop_reason = (f"{INVALID_STREAK_LIMIT} trials in a row said their configuration is invalid; "
                                "no new trials: check the space (or what the trial calls invalid)")
            self.store.add_event(self.study.id, None, EventKind.INVALID_STORM, self.stop_reason, level="error")
            self._say(self.stop_reason)

    def _note_not_read(self, live: LiveTrial, status: str) -> None:
        """Say loudly what this trial's readers never read; ten silent trials in a row pause launching."""
        if live.reading is None or status in EARLY_STOPPED_STATUSES:
            return  # stopped from outside: what it did not get to print says nothing about the readers
        problems = reading.trial_problems(live.reading, self.space.objective.metric, self.space.metric_regex,
                                          self.space.logs.max_line_bytes)
        for problem in problems:
            text = f"trial {live.row.number} {status}: {problem.detail}"
            self.store.buffer_event(self.study.id, live.row.id, reading.NOT_READ_EVENT, text, level="warning",
                                    data=NotRead(problem.kind, problem.what).to_data())
            self._say(f"warning: {text}")
        self.not_read.trial_finished(live.row.number, problems, counts_for_streak=True)
        if problems:
            self._store_warnings(self._warnings)
        if self.not_read.silent_streak >= reading.SILENT_STREAK and not self.study_launching_paused():
            message = self.not_read.pause_message(self.study.name)
            self._set_launching_paused(True, message)
            self.store.add_event(self.study.id, None, EventKind.FAILURE_STORM, message, level="error")
            self._say(message)
            if self.options.headless:
                self.stop_reason = message
                self.final_status, self.exit_code = StudyStatus.FAILED, EXIT_FAILED

    def _store_warnings(self, boundary: list[str]) -> None:
        """The study's warning lines: boundary warnings, then what trials did not report."""
        self.store.set_warnings(self.study.id, boundary + self.not_read.lines())

    def _update_warnings(self) -> None:
        """Boundary warnings ("best trials at the upper edge of lr"), stored on the study when they change."""
        from .boundary import RANKED_STATUSES, boundary_warnings

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

    def _objective_text(self, live: LiveTrial) -> str:
        return trial_end.objective_text(self.space.objective.metric, live.best, live.best_step)

    def _note_result(self, live: LiveTrial) -> None:
        """Patience: count finished trials that did not beat the best so far."""
        if live.best is not None and (self.counters.global_best is None
                                      or self.space.objective.better(live.best, self.counters.global_best)):
            self.counters.global_best, self.counters.global_best_trial = live.best, live.row.number
            self.counters.no_improvement = 0
            self.notifier.send("best", f"new best {self.space.objective.metric}={live.best:.4g}: trial {live.row.number}")
        else:
            self.counters.no_improvement += 1
        patience = self.space.budget.patience
        if patience and self.counters.no_improvement >= patience and not self.stop_reason:
            self.stop_reason = f"patience: {patience} finished trials brought no improvement; no new trials"
            self.store.add_event(self.study.id, None, EventKind.PATIENCE, self.stop_reason)
            self._say(self.stop_reason)

    def _note_failure(self, reason: str) -> None:
        signature = re.sub(r"0x[0-9a-f]+|\d+", "N", reason.lower())
        if signature == self.counters.failure_signature:
            self.counters.failure_streak += 1
        else:
            self.counters.failure_signature, self.counters.failure_streak = signature, 1
        limit = self.space.budget.failure_streak
        if self.counters.failure_streak >= limit and not self.study_launching_paused():
            message = (f"launching paused: {limit} trials in a row failed with the same error ({reason}); "
                       f"fix the command, then `hpotui resume {self.study.name}`")
            if "ModuleNotFoundError" in reason or "No module named" in reason:
                message += _interpreter_hint(self.space.command[0])
            self._set_launching_paused(True, message)
            self.store.add_event(self.study.id, None, EventKind.FAILURE_STORM, message, level="error")
            self.notifier.send("paused", message)
            self._say(message)
            if self.options.headless:
                self.stop_reason = message
                self.final_status, self.exit_code = StudyStatus.FAILED, EXIT_FAILED

    # -- budget, commands -----------------------------------------------------------------------------------
    def _check_budget(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline and not self.stop_reason:
            self.stop_reason = f"max_time {self.space.budget.max_time_s:g}s reached: running trials stopped"
            self.store.add_event(self.study.id, None, EventKind.MAX_TIME, self.stop_reason)
            self._say(self.stop_reason)
            for live in self.live.values():
                self._stop_trial(live, TrialStatus.STOPPED, "max_time reached")

    def _handle_commands(self) -> None:
        version = self.store.data_version()
        if version == self._data_version:
            return  # nobody else wrote since the last look: no new command (microseconds, no query)
        self._data_version = version
        for command in self.store.pending_commands(self.study.id):  # each row checked: engine/command_check.py
            self._command_id = command.id
            outcome = (CommandResult.refused(command.problem) if command.problem
                       else self._apply_command(command.action, command.trial_number, command.args))
            self.store.acknowledge_command(command.id, outcome)
            self.store.buffer_event(self.study.id, None, EventKind.COMMAND, f"{command.action}: {outcome.message}",
                                    data={"ok": outcome.ok})

    def _live_by_number(self, number: int | None) -> LiveTrial | None:
        return next((lt for lt in self.live.values() if lt.row.number == number), None)

    def _apply_command(self, action: str, number: int | None, args: dict[str, Any]) -> CommandResult:
        """Apply one command from the interface; the result is its acknowledgement (ok: done; not ok: refused)."""
        if action == "stop_study":
            return self._stop_study()
        if action in ("pause_launching", "resume_launching"):
            paused = action == "pause_launching"
            self._set_launching_paused(paused, "paused by the user" if paused else None)
            return CommandResult.done("launching paused" if paused else "launching resumed")
        if action == "set_max_parallel":
            return self._set_max_parallel(args.get("value"))
        if action == "clone_trial":
            return self._clone(number, args.get("params") or {})
        return self._apply_trial_command(action, number)

    def _stop_study(self) -> CommandResult:
        self.stop_reason = "stopped by the user"
        self.final_status = StudyStatus.STOPPED
        for live in self.live.values():
            self._stop_trial(live, TrialStatus.STOPPED, "study stopped by the user")
        self._say("study stop requested: stopping running trials")
        return CommandResult.done(f"stopping {len(self.live)} running trials; no new trials")

    def _set_max_parallel(self, value: Any) -> CommandResult:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1024:
            return CommandResult.refused(f"refused: max_parallel must be a whole number from 1 to 1024, "
                                         f"got {value!r}")
        self.max_parallel = value
        self.store.set_max_parallel(self.study.id, value)
        return CommandResult.done(f"max_parallel is now {value}")

    def _apply_trial_command(self, action: str, number: int | None) -> CommandResult:
        """stop / pause / resume one running trial (any other action on a running trial is refused)."""
        live = self._live_by_number(number)
        if live is None:
            return CommandResult.refused(f"refused: trial {number} is not running")
        if action == "stop_trial":
            self._stop_trial(live, TrialStatus.STOPPED, "stopped by the user")
            self._say(f"trial {number}: stop requested by the user")
            return CommandResult.done(f"stopping trial {number}")
        if action == "pause_trial":
            self.executor.pause(live.proc)
            self.store.set_trial_paused(live.row.id, True)
            return CommandResult.done(f"trial {number} paused")
        if action == "resume_trial":
            self.executor.resume(live.proc)
            self.store.set_trial_paused(live.row.id, False)
            return CommandResult.done(f"trial {number} resumed")
        return CommandResult.refused(f"refused: unknown action {action!r}")

    def _clone(self, number: int | None, overrides: dict[str, Any]) -> CommandResult:
        """Queue a copy of a trial with edited values; it runs in addition to max_trials (README: clones).

        The queue is the clones table, written with the command's acknowledgement in one transaction:
        a clone acknowledged "queued" survives kill -9 and runs exactly once, even when the budget
        is fully launched.
        """
        source = self.store.trial_by_number(self.study.id, number) if number is not None else None
        if source is None:
            return CommandResult.refused(f"refused: no trial {number}")
        if self.stop_reason:
            return CommandResult.refused(f"refused: the study is ending ({self.stop_reason})")
        try:
            params, note = with_overrides(self.space, source.params, overrides)
        except Refused as exc:
            return CommandResult.refused(f"refused: {exc}")
        result = f"clone of trial {number} queued: {_show_params(params)}" + (f" (note: {note})" if note else "")
        clone_id = self.store.queue_clone(self.study.id, command_id=self._command_id, source_number=source.number,
                                          params=params, note=note, result=result)
        if clone_id is not None:
            self._queue_clone(clone_id, source.number, params)
        return CommandResult.done(result)

    def _queue_clone(self, clone_id: int, source_number: int, params: dict[str, Any]) -> None:
        self.clone_queue.append(params)
        self.clone_origins.append(source_number)
        self.clone_ids.append(clone_id)

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
                self.max_parallel = row.max_parallel
        if now - self._last_summary >= SUMMARY_S:
            self._last_summary = now
            self._say(self._summary())

    def _summary(self) -> str:
        counts = self.store.status_counts(self.study.id)
        parts = [f"{counts.get(s, 0)} {s}" for s in TrialStatus if s != TrialStatus.QUEUED and counts.get(s)]
        best = ""
        if self.counters.global_best is not None:
            best = f"; best {self.space.objective.metric}={self.counters.global_best:.4g} " \
                   f"(trial {self.counters.global_best_trial})"
        return f"{self._finished_count()}/{self.space.budget.max_trials} finished: " + ", ".join(parts) + best

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
        self.exit_code = EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED
        if not self.options.keep_trials_on_exit:
            self._stop_without_recording("engine stopped while the disk was full")
        self._say(f"{signal.Signals(sig).name}: exiting without recording more (database not writable); "
                  f"`hpotui resume {self.study.name}` reads the trial logs again")
        raise SystemExit(self.exit_code)

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
        self.stop_reason = problem
        self.exit_code = EXIT_FAILED
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
    def _shutdown_on_signal(self) -> None:
        sig = self.signal_received
        name = signal.Signals(sig).name if sig else "signal"
        self.exit_code = EXIT_INTERRUPTED if sig == signal.SIGINT else EXIT_TERMINATED
        self.final_status = StudyStatus.INTERRUPTED
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
        budget_spent = self._finished_count() >= self.space.budget.max_trials
        by_signal = "the engine was stopped by a signal" if status == StudyStatus.INTERRUPTED else ""
        reason = self.stop_reason or by_signal or (
            f"budget: {self.space.budget.max_trials} trials finished" if budget_spent
            else "every configuration of the search ran")
        end = StudyEnd(status, reason).to_data()  # why, for the interface and the notify: command
        if self.stop_reason and status == StudyStatus.COMPLETED:
            self.store.add_event(self.study.id, None, EventKind.STUDY_END, f"study ended: {self.stop_reason}", data=end)
        else:
            self.store.add_event(self.study.id, None, EventKind.STUDY_END, f"study {status}", data=end)
        self.notifier.send("ended", f"study {self.study.name} {status}: {reason}")
        self.notifier.close()
        self._print_final()

    def _print_final(self) -> None:
        from .export import top_trials

        rows = top_trials(self.store, self.study.id, 5)
        finished = self._finished_count()
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
            from .export import study_record
            from .pareto import front_lines

            record = study_record(self.store, self.store.study_by_id(self.study.id) or self.study)
            for line in front_lines(record["trials"], record["study"]["objective"]):
                self._say(line)


def _storage_trouble(exc: sqlite3.Error) -> bool:
    """A write failed for a reason that passes (space, I/O, a lock), not a bug in our SQL."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return (name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED"))
            or any(words in text for words in ("disk is full", "disk i/o error", "database is locked")))


def _interpreter_hint(command: str) -> str:
    """Why a module is missing, most of the time: `python` on PATH is not the environment hpotui runs in."""
    import shutil

    found = shutil.which(command)
    if command not in ("python", "python3") or found is None:
        return ""
    if os.path.realpath(found) == os.path.realpath(sys.executable):
        return ""
    return (f" (note: `{command}` on PATH is {found}, not the interpreter hpotui runs under, {sys.executable}: "
            "activate your training environment, or write its python's full path in the command)")


def _health_due(reports: int, values: dict[str, float]) -> bool:
    """Whether this report goes through the health detectors.

    Every report does for the first HEALTH_EVERY_REPORT ones (epoch-level logging never gets past
    that) and every report holding NaN / Infinity does (a NaN stops the trial at once); beyond
    that a trial logging every step is sampled on a thinning schedule (every n/200-th report),
    which keeps the detectors from costing half the engine's time on a flood of step-level lines
    while a blow-up is still caught within a fraction of a percent of the run.
    """
    if reports <= HEALTH_EVERY_REPORT:
        return True
    for value in values.values():
        if value != value or value in (math.inf, -math.inf):
            return True
    return reports % (reports // HEALTH_EVERY_REPORT) == 0


def _trial_seed(seed: int | None, index: int | None) -> int | None:
    if seed is None or index is None:
        return None
    import random

    return random.Random(f"trial-seed:{seed}:{index}").randrange(2**31)


def _show_params(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        text = f"{value:.4g}" if isinstance(value, float) else format_value(value)
        parts.append(f"{name}={text}")
    return " ".join(parts)


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
