"""The trials the core knows, and which of them run: what commands are checked against."""

from __future__ import annotations

from .effects import StopTrial
from .events import TrialFacts


class TrialTable:
    def __init__(self) -> None:
        self.known: dict[int, TrialFacts] = {}
        self._by_number: dict[int, int] = {}
        self.live: dict[int, TrialFacts] = {}  # in the order they started (or were adopted)
        self.stop_asked: set[int] = set()  # a stop was asked: its reports decide nothing more

    def know(self, trial: TrialFacts) -> None:
        self.known[trial.id] = trial
        self._by_number[trial.number] = trial.id

    def start(self, trial: TrialFacts) -> None:
        self.know(trial)
        self.live[trial.id] = trial

    def end(self, trial_id: int) -> None:
        self.live.pop(trial_id, None)
        self.stop_asked.discard(trial_id)

    def by_number(self, number: int) -> TrialFacts | None:
        trial_id = self._by_number.get(number)
        return None if trial_id is None else self.known.get(trial_id)

    def live_by_number(self, number: int | None) -> TrialFacts | None:
        return next((t for t in self.live.values() if t.number == number), None)

    def running_search_trials(self) -> int:
        """Running trials of the search itself (clones run outside max_trials)."""
        return sum(1 for t in self.live.values() if t.clone_id is None)

    def stop(self, trial_id: int, status: str, reason: str) -> StopTrial:
        self.stop_asked.add(trial_id)
        return StopTrial(trial_id, status, reason)

    def stop_all(self, status: str, reason: str) -> list[StopTrial]:
        return [self.stop(trial_id, status, reason) for trial_id in self.live]
