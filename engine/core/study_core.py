"""StudyCore: events in, effects out; the study's decisions with no I/O (see engine/core/__init__.py).

It owns the sampler, the scheduler, the health checks, the launch queue and budget, the
storm / patience policy and command handling. The loop feeds it and applies what it returns, in
order; the few answers the loop owes (``Launched`` after a Launch, ``GpuReleased`` after a
RecordEnd, ``CloneQueued`` after a QueueClone) close each exchange.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from ..database.records import EventKind, HealthFlag, SchedulerDecision, StudyEnd, StudyStatus, TrialStatus
from ..flags.health import HealthMonitor, status_for
from ..schedulers import Action, make_scheduler
from ..search.boundary import MIN_TRIALS as BOUNDARY_MIN_TRIALS
from ..search.invalid import INVALID_STATUS
from ..search.sampling import Sampler, make_sampler
from ..space_file.space import Space
from ..trials import trial_end
from .commands import CommandDesk
from .effects import Effect, FlagOom, RecordEnd, RecordEvent, Say, SetBracket, UpdateWarnings
from .events import (CloneQueued, Command, EarlierCommand, EndedUnwatched, GpuReleased, Halt, HistoryRead,
                     JudgeUnwatched, Launched, MaxParallelRead, Recovered, Reported, RerunQueued, SlotsFree,
                     StartFailed, StopSignal, Tick, TrialAdopted, TrialExited, TrialFacts, TrialStarted)
from .launch_queue import LaunchQueue
from .policy import Counters, StudyPolicy
from .state import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, StudyState
from .trials import TrialTable

HEALTH_EVERY_REPORT = 200
WARNINGS_EVERY_FINISH = 20


def health_due(reports: int, values: Mapping[str, float]) -> bool:
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


class StudyCore:
    def __init__(self, space: Space, study_name: str, *, max_parallel: int, launching_paused: bool,
                 headless: bool, now: float, interpreter_hint: str = "") -> None:
        self.space, self.study_name = space, study_name
        self.state = StudyState(max_parallel=max_parallel, launching_paused=launching_paused, headless=headless)
        objective = space.objective
        self.scheduler = make_scheduler(space.scheduler, objective.metric, objective.mode)
        self.health = HealthMonitor(space.health, objective.metric, objective.mode, step_name=space.scheduler.resource)
        self.trials = TrialTable()
        self.queue = LaunchQueue(make_sampler(space), space.budget.max_trials)
        self.policy = StudyPolicy(space, study_name, self.state, interpreter_hint)
        self.commands = CommandDesk(space, self.state, self.trials)
        max_time = space.budget.max_time_s
        self.deadline = None if max_time is None else now + max_time
        self._exits: dict[int, tuple[TrialExited, trial_end.TrialEnd]] = {}  # recorded, their GPU claim still held
        self._handlers: dict[type, Callable[[Any], list[Effect]]] = {
            Recovered: self._recovered, RerunQueued: self._rerun_queued, CloneQueued: self._clone_queued,
            TrialAdopted: self._adopted, EndedUnwatched: self._ended_unwatched, HistoryRead: self._history,
            JudgeUnwatched: self._judge_unwatched,
            SlotsFree: self._slots_free, Launched: self._launched, StartFailed: self._start_failed,
            TrialStarted: self._started, Halt: self._halt, Reported: self._reported, TrialExited: self._exited,
            GpuReleased: self._released, Command: self.commands.handle,
            EarlierCommand: self.commands.earlier, MaxParallelRead: self._max_parallel_read,
            Tick: self._tick, StopSignal: self._stop_signal,
        }

    def handle(self, event: Any) -> list[Effect]:
        """Apply one event; the effects are what the loop must do, in order."""
        return self._handlers[type(event)](event)

    # -- what the loop asks -----------------------------------------------------------------------
    @property
    def sampler(self) -> Sampler:
        return self.queue.sampler

    def use_sampler(self, sampler: Sampler) -> None:
        """A warm start wraps or teaches the sampler before anything is asked (engine/search/warm_start.py)."""
        self.queue.sampler = sampler

    @property
    def counters(self) -> Counters:
        return self.policy.counters

    @property
    def finished(self) -> int:
        return self.queue.finished

    def can_launch_more(self) -> bool:
        return not self.state.stop_reason and self.queue.has_more(self.trials.running_search_trials())

    def ending(self, status: str) -> tuple[str, dict[str, Any], str]:
        """(event text, payload, reason) of the study's end, recorded with ``status``."""
        stop_reason = self.state.stop_reason
        budget_spent = self.finished >= self.space.budget.max_trials
        by_signal = "the engine was stopped by a signal" if status == StudyStatus.INTERRUPTED else ""
        reason = stop_reason or by_signal or (
            f"budget: {self.space.budget.max_trials} trials finished" if budget_spent
            else "every configuration of the search ran")
        text = f"study ended: {stop_reason}" if stop_reason and status == StudyStatus.COMPLETED else f"study {status}"
        return text, StudyEnd(status, reason).to_data(), reason

    # -- resume ---------------------------------------------------------------------------------------
    def _recovered(self, event: Recovered) -> list[Effect]:
        for t in event.trials:
            self.trials.know(t)
            self.policy.seed(t)
        self.queue.seed(event.trials, event.oom_alone)
        return []

    def _rerun_queued(self, event: RerunQueued) -> list[Effect]:
        self.trials.know(event.trial)
        self.queue.reruns.append(event.trial)
        return []

    def _clone_queued(self, event: CloneQueued) -> list[Effect]:
        self.queue.clones.append(event)
        return []

    def _adopted(self, event: TrialAdopted) -> list[Effect]:
        self.trials.start(event.trial)
        return []

    def _ended_unwatched(self, event: EndedUnwatched) -> list[Effect]:
        t = event.trial
        self.trials.know(t)
        self.queue.count_finished(t)
        self.policy.seed(t)
        self.sampler.observe(_index(t), t.params, t.best_value, status=t.status, step=t.best_step)
        return []

    def _judge_unwatched(self, event: JudgeUnwatched) -> list[Effect]:
        """Health checks and scheduler on the steps no engine judged; the trial then runs no more."""
        t = event.trial
        self.trials.start(t)
        for step, values in event.history:
            self.health.observe(t.id, step, values)
        effects: list[Effect] = []
        for report in event.reports:
            if t.id in self.trials.stop_asked:
                break  # as live: once a stop is asked, later reports decide nothing
            effects += self._reported(report)
        self.trials.end(t.id)
        self.scheduler.on_trial_end(t.id)
        self.health.forget(t.id)
        return effects

    def _history(self, event: HistoryRead) -> list[Effect]:
        """The scheduler's recorded brackets and decisions, and the curves of re-adopted trials."""
        self.scheduler.restore(list(event.restored))
        for recorded in event.restored:
            if not recorded.running:
                self.scheduler.on_trial_end(recorded.trial_id)
        for trial_id, steps in event.curves.items():
            for step, values in steps:
                self.health.observe(trial_id, step, values)
        for trial_id, name, value in event.starts:
            self.health.add_start(trial_id, name, value)
        return []

    # -- launching ----------------------------------------------------------------------------------
    def _slots_free(self, event: SlotsFree) -> list[Effect]:
        if event.free <= 0 or self.state.launching_paused or not self.can_launch_more():
            return []
        launch = self.queue.peek()
        return [] if launch is None else [launch]

    def _launched(self, event: Launched) -> list[Effect]:
        self.queue.consume()
        self.trials.know(event.trial)
        return []

    def _start_failed(self, event: StartFailed) -> list[Effect]:
        t = self.trials.known[event.trial_id]
        self.queue.count_finished(t)
        return [RecordEvent(t.id, EventKind.FAILED, f"trial {t.number} failed: {event.reason}", level="error"),
                Say(f"trial {t.number} failed to start: {event.reason}"), *self.policy.failure(event.reason)]

    def _started(self, event: TrialStarted) -> list[Effect]:
        t = event.trial
        self.trials.start(t)
        self.scheduler.on_trial_start(t.id)
        bracket = self.scheduler.assigned_bracket(t.id)
        return [SetBracket(t.id, bracket)] if bracket is not None and bracket != t.bracket else []

    def _halt(self, event: Halt) -> list[Effect]:
        self.state.stop_reason, self.state.exit_code = event.reason, EXIT_FAILED
        if event.study_failed:
            self.state.final_status = StudyStatus.FAILED
        if event.record_kind is None:
            return []
        return [RecordEvent(None, event.record_kind, event.reason, level="error"), Say(event.reason)]

    # -- running ---------------------------------------------------------------------------------------
    def _reported(self, event: Reported) -> list[Effect]:
        """Health checks, then the scheduler, on one step's values."""
        t = self.trials.live.get(event.trial_id)
        if t is None or t.id in self.trials.stop_asked:
            return []
        effects: list[Effect] = []
        for flag in (self.health.observe(t.id, event.step, event.values)
                     if health_due(event.reports, event.values) else ()):
            effects.append(RecordEvent(t.id, EventKind.FLAG, flag.message, level="warning" if not flag.stop else "error",
                                       data=HealthFlag(flag.kind, flag.step, flag.value, flag.hint).to_data(),
                                       buffered=True))
            if flag.stop:
                return [*effects, self.trials.stop(t.id, status_for(flag), flag.message),
                        Say(f"trial {t.number} {flag.message}")]
        objective = event.values.get(self.space.objective.metric)
        if objective is not None and math.isfinite(objective):
            effects += self._schedule(t, event, objective)
        return effects

    def _schedule(self, t: TrialFacts, event: Reported, objective: float) -> list[Effect]:
        resource = event.resource if event.resource is not None else event.step
        decision = self.scheduler.on_result(t.id, resource, objective)
        if decision.action == Action.STOP:
            data = SchedulerDecision("stop", event.step, objective, resource, decision.rung).to_data()
            return [self.trials.stop(t.id, TrialStatus.PRUNED, decision.reason),
                    RecordEvent(t.id, EventKind.SCHEDULER, f"trial {t.number} {decision.reason}", data=data,
                                buffered=True)]
        if decision.reason:  # most reports decide nothing and say nothing: no text is built for them
            data = SchedulerDecision("continue", event.step, objective, resource).to_data()
            return [RecordEvent(t.id, EventKind.SCHEDULER, f"trial {t.number} {decision.reason}", data=data,
                                buffered=True)]
        return []

    def _tick(self, event: Tick) -> list[Effect]:
        if self.deadline is None or event.now < self.deadline or self.state.stop_reason:
            return []
        self.state.stop_reason = f"max_time {self.space.budget.max_time_s:g}s reached: running trials stopped"
        return [RecordEvent(None, EventKind.MAX_TIME, self.state.stop_reason), Say(self.state.stop_reason),
                *self.trials.stop_all(TrialStatus.STOPPED, "max_time reached")]

    def _max_parallel_read(self, event: MaxParallelRead) -> list[Effect]:
        self.state.max_parallel = event.value
        return []

    def _stop_signal(self, event: StopSignal) -> list[Effect]:
        self.state.stopping_on_signal = True
        self.state.exit_code = EXIT_INTERRUPTED if event.interrupt else EXIT_TERMINATED
        self.state.final_status = StudyStatus.INTERRUPTED
        return []

    # -- exits ------------------------------------------------------------------------------------------
    def _exited(self, event: TrialExited) -> list[Effect]:
        """Judge the end (engine/trials/trial_end.py); the rest follows once the loop recorded it (GpuReleased)."""
        end = trial_end.judge_exit(event.code, asked_status=event.asked_status, asked_reason=event.asked_reason,
                                   reports=event.reports, invalid=event.invalid, stderr_tail=event.stderr_tail)
        if event.trial_id in self.trials.live:  # not on a retry after its end could not be recorded (disk full)
            self.trials.end(event.trial_id)
            self.scheduler.on_trial_end(event.trial_id)
            self.health.forget(event.trial_id)
        self._exits[event.trial_id] = (event, end)
        return [RecordEnd(event.trial_id, end)]

    def _released(self, event: GpuReleased) -> list[Effect]:
        exited, end = self._exits.pop(event.trial_id)
        t = self.trials.known[event.trial_id]
        if event.retry_alone:  # recorded failed with flag oom; its configuration runs once more, alone on a GPU
            self.queue.reruns.append(t)
            return []
        if end.status == TrialStatus.INTERRUPTED:
            return self._interrupted(t, end.reason)
        if end.status == INVALID_STATUS:
            return self._invalid(t, exited)
        return self._result(t, exited, end)

    def _interrupted(self, t: TrialFacts, reason: str) -> list[Effect]:
        """Its node was lost, or the engine is stopping: not a result, it runs again (unless the engine stops)."""
        if not self.state.stopping_on_signal:
            self.queue.reruns.append(t)
        return [RecordEvent(t.id, EventKind.INTERRUPTED,
                            f"trial {t.number} interrupted — {reason}; its configuration runs again", level="warning"),
                Say(f"trial {t.number} interrupted — {reason}")]

    def _invalid(self, t: TrialFacts, exited: TrialExited) -> list[Effect]:
        """Not a result and not a failure: the sampler learns the region is invalid and is asked again."""
        reason = exited.invalid or ""
        effects: list[Effect] = [
            RecordEvent(t.id, INVALID_STATUS, f"trial {t.number} invalid: {reason}; not counted, another "
                        "configuration runs", level="warning", data={"reason": reason}, buffered=True),
            Say(f"trial {t.number} invalid: {reason}")]
        self.sampler.observe(_index(t), t.params, None, status=INVALID_STATUS, curve=exited.curve, last=exited.last)
        return effects + self.policy.invalid()

    def _result(self, t: TrialFacts, exited: TrialExited, end: trial_end.TrialEnd) -> list[Effect]:
        """A finished trial (completed, failed, pruned, stopped, diverged): counted, said, learned from."""
        status, reason = end.status, end.reason
        self.policy.valid()
        self.queue.count_finished(t)
        objective = trial_end.objective_text(self.space.objective.metric, exited.best, exited.best_step)
        event_text, said = trial_end.ended_lines(t.number, status, reason, ran_s=exited.ran_s, objective=objective)
        effects: list[Effect] = [FlagOom(t.id, t.number)] if status == TrialStatus.FAILED and exited.cuda_oom else []
        effects += self.policy.not_read_problems(t, status, exited.problems)
        data = trial_end.ended_data(status, end.exit_code, exited.best, exited.reports, exited.stderr_tail)
        effects += [RecordEvent(t.id, status, event_text, level=trial_end.ended_level(status), data=data, buffered=True),
                    Say(said)]
        if status == TrialStatus.FAILED:
            effects += self.policy.failure(reason)
        else:
            self.policy.success()
        self.sampler.observe(_index(t), t.params, exited.best, status=status, step=exited.best_step,
                             curve=exited.curve, last=exited.last)
        effects += self.policy.result(t.number, exited.best)
        if trial_end.warnings_due(self.finished, BOUNDARY_MIN_TRIALS, WARNINGS_EVERY_FINISH):
            effects.append(UpdateWarnings())  # every finish at first, then thinning out: it ranks the whole study
        return effects


def _index(t: TrialFacts) -> int:
    return t.sample_index if t.sample_index is not None else -1
