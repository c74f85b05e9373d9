"""ASHA: asynchronous successive halving, stopping variant (Li et al., 2020; Ray Tune's AsyncHyperBand).

Rungs sit at ``min_resource · η^k`` below ``max_resource``. When a trial first reports a
resource that reaches a rung, its objective is recorded there and the trial goes on only if it
ranks among the best ``ceil(n / η)`` of the ``n`` trials recorded at that rung, itself included.

Why this rule: it is the one Ray Tune's AsyncHyperBand applies (a percentile cut-off over the
values recorded so far; for 13 earlier trials and η = 3 both keep the best 5 of 14), stated as a
count so the decision can say "5 of 14 trials kept", and with a cut-off that is a value some
trial actually reached instead of an interpolation. Consequences worth knowing:

- the first trial to reach a rung always goes on (nothing to compare with);
- while ``n <= η`` only a new best at that rung goes on (``ceil(n / η) = 1``);
- ties with the cut-off go on;
- values of stopped trials stay recorded: they are evidence about the rung;
- a result that jumps several rungs (a trial reporting every 2 epochs) is judged at each of
  them, lowest first, with the same value, and stops at the first rung it fails;
- nothing is judged at ``max_resource``: a trial there has already spent its budget.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Sequence

from ..space_file.space import SchedulerSpec
from .base import Action, Decision, RecordedDecision, RecordedTrial, Scheduler
from .rungs import EPS, ceil_, fmt, judged_rungs


class RungLadder:
    """The rungs of one successive-halving ladder and the values recorded at each.

    Shared by ASHA (one ladder) and Hyperband (one ladder per bracket). ``where`` is added
    to decisions to say which ladder judged, e.g. `` in bracket 2``.
    """

    def __init__(self, owner: Scheduler, rungs: tuple[float, ...], where: str = "") -> None:
        self.owner = owner
        self.rungs = rungs
        self.where = where
        self.eta = owner.spec.reduction_factor
        self._values: dict[float, list[float]] = {r: [] for r in rungs}  # ascending
        self._judged: dict[int, set[float]] = {}
        self._stopped: dict[int, Decision] = {}

    def cutoff(self, rung: float) -> tuple[float | None, int, int]:
        """(cut-off, keep, n) for the next trial to reach ``rung``: it will be the n-th there,
        the best ``keep`` go on, and it must not be worse than ``cut-off`` (None: anything goes)."""
        values = self._values[rung]
        n = len(values) + 1
        keep = ceil_(n / self.eta)
        if not values:
            return None, keep, n
        # keep <= len(values) since η >= 2: the keep-th best value recorded so far.
        cut = values[len(values) - keep] if self.owner.mode == "max" else values[keep - 1]
        return cut, keep, n

    def judge(self, trial_id: int, resource: float, value: float) -> Decision:
        if trial_id in self._stopped:
            return self._stopped[trial_id]  # a late line from a trial being stopped changes nothing
        if math.isnan(value):
            return Decision.go_on()  # NaN is the health detectors' business; never rank it
        judged = self._judged.setdefault(trial_id, set())
        promotions: list[str] = []
        for rung in self.rungs:
            if resource < rung * (1 - EPS):
                break
            if rung in judged:
                continue
            cut, keep, n = self.cutoff(rung)
            insort(self._values[rung], value)
            judged.add(rung)
            at = self._at(rung, resource)
            metric = self.owner.metric
            if cut is None:
                promotions.append(f"promoted at {at}: {metric} {fmt(value)}, first trial at this rung")
            elif self.owner.worse(value, cut):
                decision = Decision(Action.STOP, f"pruned at {at}: {metric} {fmt(value)} {self.owner.worse_word} "
                                                 f"rung cut-off {fmt(cut)}, {keep} of {n} trials kept", rung=rung)
                self._stopped[trial_id] = decision
                return decision
            else:
                promotions.append(f"promoted at {at}: {metric} {fmt(value)} meets rung cut-off {fmt(cut)}, "
                                  f"{keep} of {n} trials kept")
        return Decision(Action.CONTINUE, "; ".join(promotions))

    def restore(self, trial_id: int, decisions: Sequence[RecordedDecision]) -> None:
        """Put back what ``judge`` recorded live for one trial, from its ``scheduler`` events.

        Every result that reached a new rung was recorded as an event (a promotion or the stop), so
        the events alone give each rung's values; nothing is judged again, so the order in which
        trials are restored cannot change a decision. A stop without its rung (older databases)
        counts at every rung its result reached, as a promotion would.
        """
        judged = self._judged.setdefault(trial_id, set())
        for decision in decisions:
            if trial_id in self._stopped or math.isnan(decision.value):
                return
            for rung in self.rungs:
                if decision.resource < rung * (1 - EPS):
                    break
                if decision.rung is not None and rung > decision.rung * (1 + EPS):
                    break
                if rung not in judged:
                    insort(self._values[rung], decision.value)
                    judged.add(rung)
            if decision.action == Action.STOP:
                self._stopped[trial_id] = Decision(Action.STOP, decision.reason, rung=decision.rung)

    def _at(self, rung: float, resource: float) -> str:
        name = self.owner.spec.resource
        text = f"{name} {fmt(rung)}{self.where}"
        if abs(resource - rung) > EPS * max(1.0, rung):
            text += f" (reported at {name} {fmt(resource)})"
        return text

    def cutoffs(self) -> dict[float, float | None]:
        return {rung: self.cutoff(rung)[0] for rung in self.rungs}

    def sizes(self) -> dict[float, int]:
        return {rung: len(values) for rung, values in self._values.items()}


class AshaScheduler(Scheduler):
    """One ladder from ``min_resource`` to ``max_resource``; see the module docstring for the rule."""

    def __init__(self, spec: SchedulerSpec, metric: str, mode: str) -> None:
        super().__init__(spec, metric, mode)
        if spec.max_resource is None:
            raise ValueError("asha needs scheduler.max_resource")
        self.ladder = RungLadder(self, judged_rungs(spec.min_resource, spec.max_resource, spec.reduction_factor))

    def on_result(self, trial_id: int, resource: float, value: float) -> Decision:
        return self.ladder.judge(trial_id, resource, value)

    def restore(self, trials: Sequence[RecordedTrial]) -> None:
        for trial in trials:
            self.ladder.restore(trial.trial_id, trial.decisions)

    def rung_cutoffs(self) -> dict[float, float | None]:
        """Rung resource -> the value the next trial reaching it must match (None: no trial yet)."""
        return self.ladder.cutoffs()

    def rung_sizes(self) -> dict[float, int]:
        """Rung resource -> how many trials have been judged there."""
        return self.ladder.sizes()
