"""Hyperband (Li et al., 2018) run asynchronously: brackets of successive halving side by side.

Bracket ``s`` (``s_max .. 0``) starts trials at ``max_resource · η^-s``: the most exploratory
bracket judges many trials early, bracket 0 runs its trials to the end unjudged, which hedges
against a metric whose early values mislead. New trials are dealt to brackets in proportion to
the paper's ``n_s`` by a smooth weighted round-robin, so after every ``sum(n_s)`` trials each
bracket has exactly its ``n_s``, and a study cut short still samples every bracket early. Within
a bracket, trials are judged exactly as ASHA judges them (see ``asha.py``), against the other
trials of the same bracket only.

The bracket a trial is dealt is recorded when it starts (``trials.bracket``); on resume
``restore`` puts every recorded bracket back and moves the dealer on by one deal per started
trial, so the next trial gets the bracket it would have had in an uninterrupted study.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..space_file.space import SchedulerSpec
from .asha import RungLadder
from .base import Decision, RecordedTrial, Scheduler
from .rungs import Bracket, Dealer, hyperband_brackets


class HyperbandScheduler(Scheduler):
    def __init__(self, spec: SchedulerSpec, metric: str, mode: str) -> None:
        super().__init__(spec, metric, mode)
        if spec.max_resource is None:
            raise ValueError("hyperband needs scheduler.max_resource")
        self.brackets: tuple[Bracket, ...] = hyperband_brackets(
            spec.min_resource, spec.max_resource, spec.reduction_factor)
        self._dealer = Dealer(tuple(b.n for b in self.brackets))
        # resources[-1] is max_resource: judged nowhere, as in ASHA.
        self._ladders = {b.s: RungLadder(self, b.resources[:-1], where=f" in bracket {b.s}") for b in self.brackets}
        self._bracket: dict[int, int] = {}

    def on_trial_start(self, trial_id: int) -> None:
        if trial_id not in self._bracket:
            self._bracket[trial_id] = self.brackets[self._dealer.deal()].s

    def on_result(self, trial_id: int, resource: float, value: float) -> Decision:
        self.on_trial_start(trial_id)  # a result from a trial never announced (resume) is dealt now
        return self._ladders[self._bracket[trial_id]].judge(trial_id, resource, value)

    def assigned_bracket(self, trial_id: int) -> int | None:
        return self._bracket.get(trial_id)

    def restore(self, trials: Sequence[RecordedTrial]) -> None:
        for trial in trials:
            dealt = self.brackets[self._dealer.deal()].s
            recorded = trial.bracket if trial.bracket in self._ladders else None
            self._bracket.setdefault(trial.trial_id, dealt if recorded is None else recorded)
        for trial in trials:
            self._ladders[self._bracket[trial.trial_id]].restore(trial.trial_id, trial.decisions)

    def bracket_of(self, trial_id: int) -> int:
        """The bracket ``s`` the trial was dealt to; KeyError for a trial never started."""
        return self._bracket[trial_id]

    def rung_cutoffs(self) -> dict[int, dict[float, float | None]]:
        """Bracket ``s`` -> (rung resource -> current cut-off), as ``AshaScheduler.rung_cutoffs``."""
        return {s: ladder.cutoffs() for s, ladder in self._ladders.items()}
