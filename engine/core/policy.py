"""The counters that end or pause a study: patience, failure storms, invalid streaks, silent trials.

Each rule says what a user sees when it trips (an event, a line, a notify: command) as effects;
a storm pauses launching, and ends the study when nobody can resume it (headless).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..database.records import EARLY_STOPPED_STATUSES, EventKind, NotRead
from ..reading.trial_reading import NOT_READ_EVENT, SILENT_STREAK, Problem, ReadingLedger
from ..search.invalid import INVALID_STREAK_LIMIT
from ..space_file.space import Space
from .effects import Effect, Notify, RecordEvent, Say, SetLaunchingPaused, StoreWarnings
from .events import TrialFacts
from .launch_queue import FINISHED
from .state import StudyState


@dataclass
class Counters:
    no_improvement: int = 0
    failure_signature: str | None = None
    failure_streak: int = 0
    global_best: float | None = None
    global_best_trial: int | None = None
    invalid_streak: int = 0


def failure_signature(reason: str) -> str:
    """Two failures are "the same error" when they differ only in numbers and addresses."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", reason.lower())


class StudyPolicy:
    def __init__(self, space: Space, study_name: str, state: StudyState, interpreter_hint: str = "") -> None:
        self.space, self.study_name, self.state = space, study_name, state
        self.interpreter_hint = interpreter_hint  # said with a missing-module storm (engine/study.py)
        self.counters = Counters()
        self.not_read = ReadingLedger(space.objective.metric)  # what trials did not report, said loudly

    def seed(self, trial: TrialFacts) -> None:
        """A trial that finished before (resume): the best so far starts from it."""
        value = trial.best_value
        if trial.status in FINISHED and value is not None and not math.isnan(value):
            best = self.counters.global_best
            if best is None or self.space.objective.better(value, best):
                self.counters.global_best, self.counters.global_best_trial = value, trial.number

    def result(self, number: int, best: float | None) -> list[Effect]:
        """Patience: count finished trials that did not beat the best so far."""
        effects: list[Effect] = []
        c = self.counters
        if best is not None and (c.global_best is None or self.space.objective.better(best, c.global_best)):
            c.global_best, c.global_best_trial, c.no_improvement = best, number, 0
            effects.append(Notify("best", f"new best {self.space.objective.metric}={best:.4g}: trial {number}"))
        else:
            c.no_improvement += 1
        patience = self.space.budget.patience
        if patience and c.no_improvement >= patience and not self.state.stop_reason:
            self.state.stop_reason = f"patience: {patience} finished trials brought no improvement; no new trials"
            effects += [RecordEvent(None, EventKind.PATIENCE, self.state.stop_reason), Say(self.state.stop_reason)]
        return effects

    def failure(self, reason: str) -> list[Effect]:
        """A failed trial; the same error ``budget.failure_streak`` times in a row pauses launching."""
        c = self.counters
        signature = failure_signature(reason)
        if signature == c.failure_signature:
            c.failure_streak += 1
        else:
            c.failure_signature, c.failure_streak = signature, 1
        limit = self.space.budget.failure_streak
        if c.failure_streak < limit or self.state.launching_paused:
            return []
        message = (f"launching paused: {limit} trials in a row failed with the same error ({reason}); "
                   f"fix the command, then `hpotui resume {self.study_name}`")
        if "ModuleNotFoundError" in reason or "No module named" in reason:
            message += self.interpreter_hint
        return self._storm(message, notify=True)

    def success(self) -> None:
        """A finished trial that did not fail ends the failure streak."""
        self.counters.failure_streak, self.counters.failure_signature = 0, None

    def invalid(self) -> list[Effect]:
        self.counters.invalid_streak += 1
        if self.counters.invalid_streak < INVALID_STREAK_LIMIT or self.state.stop_reason:
            return []
        self.state.stop_reason = (f"{INVALID_STREAK_LIMIT} trials in a row said their configuration is invalid; "
                                  "no new trials: check the space (or what the trial calls invalid)")
        return [RecordEvent(None, EventKind.INVALID_STORM, self.state.stop_reason, level="error"),
                Say(self.state.stop_reason)]

    def valid(self) -> None:
        self.counters.invalid_streak = 0

    def not_read_problems(self, trial: TrialFacts, status: str, problems: tuple[Problem, ...] | None) -> list[Effect]:
        """Say loudly what this trial's readers never read; ten silent trials in a row pause launching."""
        if problems is None or status in EARLY_STOPPED_STATUSES:
            return []  # stopped from outside: what it did not get to print says nothing about the readers
        effects: list[Effect] = []
        for problem in problems:
            text = f"trial {trial.number} {status}: {problem.detail}"
            effects += [RecordEvent(trial.id, NOT_READ_EVENT, text, level="warning",
                                    data=NotRead(problem.kind, problem.what).to_data(), buffered=True),
                        Say(f"warning: {text}")]
        self.not_read.trial_finished(trial.number, list(problems), counts_for_streak=True)
        if problems:
            effects.append(StoreWarnings(tuple(self.not_read.lines())))
        if self.not_read.silent_streak >= SILENT_STREAK and not self.state.launching_paused:
            effects += self._storm(self.not_read.pause_message(self.study_name), notify=False)
        return effects

    def _storm(self, message: str, *, notify: bool) -> list[Effect]:
        """Launching pauses; headless, nobody can resume it: the study ends failed."""
        self.state.launching_paused = True
        effects: list[Effect] = [SetLaunchingPaused(True, message),
                                 RecordEvent(None, EventKind.FAILURE_STORM, message, level="error")]
        effects += [Notify("paused", message)] if notify else []
        effects.append(Say(message))
        if self.state.headless:
            self.state.fail(message)
        return effects
