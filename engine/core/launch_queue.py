"""What runs next and whether anything may: reruns first, then clones, then the sampler's next index.

max_trials counts the search's own trials, finished or running; clones (the user's extra
requests) run in addition to it, even once the budget is fully launched.
"""

from __future__ import annotations

from ..database.records import TERMINAL_STATUSES
from ..search.sampling import Sampler
from .effects import Launch
from .events import CloneQueued, TrialFacts

FINISHED = TERMINAL_STATUSES  # what counts towards max_trials ("interrupted" runs again)


class LaunchQueue:
    def __init__(self, sampler: Sampler, max_trials: int) -> None:
        self.sampler = sampler
        self.max_trials = max_trials
        self.reruns: list[TrialFacts] = []  # interrupted trials whose configuration runs again
        self.clones: list[CloneQueued] = []  # in the order the store queued them
        self.next_sample_index = 0
        self.finished = 0
        self.clones_finished = 0  # finished trials that ran a clone: outside max_trials

    def seed(self, trials: tuple[TrialFacts, ...], oom_alone: frozenset[int]) -> None:
        """On resume: the next sample index and what already finished (a first attempt rerun alone is not counted)."""
        indices = [t.sample_index for t in trials if t.sample_index is not None]
        self.next_sample_index = max(indices) + 1 if indices else 0
        counted = [t for t in trials if t.status in FINISHED and t.id not in oom_alone]
        self.finished = len(counted)
        self.clones_finished = sum(1 for t in counted if t.clone_id is not None)

    def count_finished(self, trial: TrialFacts) -> None:
        self.finished += 1
        self.clones_finished += trial.clone_id is not None

    def budget_used(self, running_search_trials: int) -> int:
        return self.finished - self.clones_finished + running_search_trials

    def has_more(self, running_search_trials: int) -> bool:
        """Whether another trial may start, the study's stop aside."""
        if self.clones or (self.reruns and self.reruns[0].clone_id is not None):
            return True  # a clone runs in addition to max_trials
        if self.budget_used(running_search_trials) >= self.max_trials:
            return False
        if self.reruns:
            return True
        size = self.sampler.size()
        return size is None or self.next_sample_index < size

    def peek(self) -> Launch | None:
        """The next configuration, not consumed (no GPU free: the same one is offered again)."""
        if self.reruns:
            t = self.reruns[0]
            return Launch(t.params, t.sample_index, rerun_of=t.id, clone_id=t.clone_id)
        if self.clones:
            c = self.clones[0]
            return Launch(c.params, None, clone_id=c.clone_id, clone_of=c.source_number)
        params = self.sampler.suggest(self.next_sample_index)
        return None if params is None else Launch(params, self.next_sample_index)

    def consume(self) -> None:
        if self.reruns:
            self.reruns.pop(0)
        elif self.clones:
            self.clones.pop(0)
        else:
            self.next_sample_index += 1
