"""What a resumed study reads and does before its first turn: trials a dead engine left, and stale commands.

Why its own module: at ``resume`` (and at every start) the shell has I/O to do that no later turn
needs. It re-adopts trials that outlived their engine, ends their leftover processes, records what
a trial printed while no engine read it, finds a start the engine died before recording, marks the
rest interrupted and queues their reruns. It also tells the core which commands were sent before
this engine started and restores the scheduler from its recorded decisions. The core decides what
all of that means (engine/core/); this module only reads and records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.effects import StopTrial
from ..core.events import (CloneQueued, EarlierCommand, EndedUnwatched, HistoryRead, JudgeUnwatched, Recovered, Reported,
                          RerunQueued, TrialAdopted, TrialFacts)
from ..database.records import ENDED_STATUSES, LIVE_STATUSES, EventKind, TrialStatus
from ..database.store import TrialRow
from ..executors.local import judge_ended_unwatched
from ..gpus.gpu_placer import GpuPlacer
from ..reading.metricline import Report
from ..reading.trial_logs import LiveTrial, TrialLogReader, follow
from ..schedulers.recorded import recorded_trials
from ..search.warm_start import apply_warm_start, record_warm_start, replay_history
from ..trials.liveness import find_trial_process
from .loop_parts import LoopParts, command_of


@dataclass(frozen=True)
class Unwatched:
    """A trial's logs read to their end after it ran with no engine: its steps judged before, and not yet."""

    live: LiveTrial
    history: tuple[tuple[float, dict[str, float]], ...]
    reports: tuple[Reported, ...]


class Recovery:
    """Picks a study up where its last engine left it (see the module docstring)."""

    def __init__(self, parts: LoopParts, gpu: GpuPlacer, git_commit: str | None) -> None:
        self.parts, self.gpu, self.git_commit = parts, gpu, git_commit
        self.store, self.space, self.study_id = parts.store, parts.space, parts.study.id
        # What a trial printed while no engine ran is read by a reader of its own, which keeps its steps
        # for the core to judge at once (JudgeUnwatched) instead of deciding on a trial that has no process.
        self._unjudged: list[Reported] = []
        self._unwatched_reader = TrialLogReader(self.store, self.space, self.study_id, self._keep_unjudged,
                                                self._flush)

    def recover(self) -> None:
        """Re-adopt trials that outlived a dead engine; mark the rest interrupted and queue their reruns."""
        core = self.parts.core
        trials = self.store.trials(self.study_id)
        rerun_done = {t.rerun_of for t in trials if t.rerun_of is not None}
        sampler, told = apply_warm_start(self.store, self.space, core.sampler)
        core.use_sampler(sampler)
        note = record_warm_start(self.store, self.study_id, sampler, told)
        if note:
            self.parts.say(note)
        replay_history(self.store, self.space, sampler, self.study_id, trials, ENDED_STATUSES)
        oom_reruns = self.gpu.pending_reruns(trials, rerun_done)  # packed OOMs decided to run again alone
        core.handle(Recovered(tuple(TrialFacts.of(t) for t in trials), frozenset(self.gpu.oom.alone)))
        for t in oom_reruns:
            core.handle(RerunQueued(TrialFacts.of(t)))
        for clone_id, source_number, params, _note in self.store.pending_clones(self.study_id):
            core.handle(CloneQueued(clone_id, source_number, params))  # queued before the engine died: they run
        self._restore_scheduler()  # before any trial is judged: trials that ended unwatched are judged on it
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
            t = self._mark_interrupted(t)
        if t.status == TrialStatus.INTERRUPTED and t.id not in rerun_done:
            self.parts.core.handle(RerunQueued(TrialFacts.of(t)))

    def _mark_interrupted(self, t: TrialRow) -> TrialRow:
        self.store.finish_trial(t.id, TrialStatus.INTERRUPTED, exit_code=None,
                                reason="engine stopped while the trial was pending or running")
        self.store.add_event(self.study_id, t.id, EventKind.INTERRUPTED,
                             f"trial {t.number} interrupted: its engine died; its configuration runs again",
                             level="warning")
        return self.store.trial(t.id)  # type: ignore[return-value]

    def _adopt(self, t: TrialRow, pid: int) -> bool:
        """Track a trial (recorded running as ``pid``) that outlived its engine and still runs; False when gone."""
        proc = self.parts.executor.adopt(t.id, pid, t.pgid or pid, t.proc_create_time or 0.0,
                                         Path(t.stdout_path), Path(t.stderr_path))
        if proc is None:
            return False
        self.parts.track(t, proc)
        self.parts.core.handle(TrialAdopted(TrialFacts.of(t)))
        self.gpu.adopted(t)
        self.store.buffer_event(self.study_id, t.id, EventKind.ADOPTED,
                                f"trial {t.number} re-adopted (pid {t.pid}); reading on from its logs")
        self.parts.say(f"trial {t.number} still running (pid {t.pid}): re-adopted")
        return True

    def _end_leftovers(self, t: TrialRow) -> None:
        """Its leader died while no engine ran; children that left its group may still run: end them."""
        ended = self.parts.executor.end_leftovers(t.trial_dir) if t.trial_dir else 0
        if ended:
            self.store.buffer_event(self.study_id, t.id, EventKind.LEFTOVERS, f"trial {t.number}: ended {ended} of its "
                                    "processes still running after it", level="warning")

    def _find_unrecorded_start(self, t: TrialRow) -> TrialRow:
        """A queued trial with a log file was started; find its process (to adopt) or read what it left."""
        if self.parts.executor.outlives_engine:
            found = find_trial_process(t.trial_dir)
            if found is not None:
                self.store.mark_running(t.id, pid=found[0], pgid=found[0], proc_create_time=found[1],
                                        git_commit=self.git_commit)
                return self.store.trial(t.id)  # type: ignore[return-value]
        return self._judge_unwatched(t, self._drain_unwatched(t))  # it ran and ended unrecorded

    def _drain_unwatched(self, t: TrialRow) -> Unwatched:
        """Record what a trial printed past its committed offsets while no engine was reading it.

        Its steps nobody judged yet are kept (the last recorded one and every new one), with the
        ones judged before for the health checks to relearn. Once recorded, its logs are trimmed to
        ``logs.max_mb`` like a watched trial's.
        """
        live = follow(self.store, self.space, t, None, Path(t.stdout_path), Path(t.stderr_path))
        history = self._relearned_curve(t.id, live)  # before the drain: what the dead engine recorded
        self._unjudged = []
        self._unwatched_reader.drain(live, final=True)  # its regex and file sources read on too
        self._unwatched_reader.poll_files(live, final=True)
        self._unwatched_reader.settle([live], final=True)
        self.store.flush()
        for stream in (live.stdout, live.stderr):
            stream.trim()
            stream.close()
        return Unwatched(live, tuple(history), tuple(self._unjudged))

    def _flush(self) -> None:
        self.store.flush()  # between the batches of a long drain: offsets land with their rows

    def _keep_unjudged(self, live: LiveTrial, report: Report | None) -> None:
        if report is not None:
            self._unjudged.append(Reported(live.row.id, report.step, report.values, report.resource, live.reports))

    def _judge_unwatched(self, t: TrialRow, drained: Unwatched) -> TrialRow:
        """A local trial that ended while no engine ran: judged on its reports as the live engine would have.

        A stop its reports call for (a rung it fell below, a blow-up) is how it ended, as if the
        engine had been there to stop it; otherwise it finished if its log shows it reported to the
        end. Ray trials die with their engine, so theirs is never a finished run: they run again.
        """
        if not self.parts.executor.outlives_engine or t.status not in LIVE_STATUSES:
            return t
        live = drained.live
        effects = self.parts.core.handle(JudgeUnwatched(TrialFacts.of(t), drained.history, drained.reports))
        asked = next((e for e in effects if isinstance(e, StopTrial)), None)
        self.parts.apply(effects)  # its flags and scheduler decisions, recorded as the live engine would have
        verdict = (asked.status, asked.reason) if asked is not None else judge_ended_unwatched(
            live.stderr.tail_text(), live.reports, live.last_step, self.space.scheduler.max_resource)
        if verdict is None:
            return t
        status, reason = verdict
        self.store.finish_trial(t.id, status, exit_code=None, reason=reason)
        message = f"trial {t.number} {status} while no engine was running: {reason}; not run again"
        self.store.add_event(self.study_id, t.id, status, message, level="error" if status == TrialStatus.FAILED else "info",
                             data={"exit_code": None, "best": live.best, "reports": live.reports})
        self.parts.say(message)
        row = self.store.trial(t.id) or t
        self.parts.core.handle(EndedUnwatched(TrialFacts.of(row)))  # counted, and the sampler learns from it
        return row

    def drop_stale_stops(self, took_over_at: float) -> None:
        """Commands sent before this engine started: stale stops are not applied, the rest say they are late."""
        for c in self.store.pending_commands(self.study_id):
            if c.created_at < took_over_at:  # the core decides which are not applied (engine/core/commands.py)
                sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.created_at))
                self.parts.apply(self.parts.core.handle(EarlierCommand(command_of(c), sent)))

    def _restore_scheduler(self) -> None:
        """Restore the scheduler from its recorded brackets and decisions (engine/schedulers/recorded.py)."""
        core = self.parts.core
        restored = recorded_trials(self.store, self.study_id, self.space.objective.metric,
                                   self.space.scheduler.resource)
        # where the study's earlier trials started: the reference for blow-ups before a first report
        starts = tuple(self.store.first_values(self.study_id, core.health.start_metrics))
        core.handle(HistoryRead(tuple(restored), {}, starts))

    def replay_decisions(self) -> None:
        """Re-adopted trials: the health checks relearn their curves; their last step is judged once it settles."""
        curves = {trial_id: self._relearned_curve(trial_id, live) for trial_id, live in self.parts.live.items()}
        self.parts.core.handle(HistoryRead((), curves, ()))

    def _relearned_curve(self, trial_id: int, live: LiveTrial) -> list[tuple[float, dict[str, float]]]:
        """A re-adopted trial's recorded steps, for the health monitor; its last one waits to settle first."""
        by_step: dict[float, dict[str, float]] = {}
        for m in self.store.metrics(trial_id):
            by_step.setdefault(m.step, {})[m.name] = m.value
        last = next(reversed(by_step), None)
        curve: list[tuple[float, dict[str, float]]] = []
        for step, values in by_step.items():
            if step == last and live.reading is not None:  # recorded, maybe not yet judged: judged once it settles
                live.reading.open_step.add(Report(step=step, values=values, resource=values.get(
                    self.space.scheduler.resource, step)), time.monotonic())
            else:
                curve.append((step, values))
        return curve

