"""The one small contract every scheduler implements (after Syne Tune / Ray Tune).

The study loop calls ``on_trial_start`` when it launches a trial, ``on_result`` for every
report that carries the objective, and ``on_trial_end`` when the trial leaves ``running``.
Schedulers hold no I/O and no clock, so they are tested on hand-built curves. On resume they are
restored from what was recorded as it happened (``restore``: each trial's bracket, its results and
its ``scheduler`` events), the way Ray Tune's ``_Bracket`` is saved and restored, rather than by
replaying results in an order the live study never saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..space_file.space import SchedulerSpec


class Action(str, Enum):
    CONTINUE = "continue"
    STOP = "stop"  # the loop stops the trial and marks it `pruned`


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""  # recorded as the event text when the trial is stopped or promoted
    rung: float | None = None  # the rung a STOP was decided at (ASHA / Hyperband), recorded for resume

    @classmethod
    def go_on(cls) -> "Decision":
        return cls(Action.CONTINUE)


@dataclass(frozen=True)
class RecordedDecision:
    """One ``scheduler`` event as recorded live: the result it judged and what was decided."""

    action: Action
    resource: float
    value: float
    rung: float | None  # STOP only: the rung that failed (None in databases written before it was recorded)
    reason: str


@dataclass(frozen=True)
class RecordedTrial:
    """What the study database holds about one started trial, for ``Scheduler.restore``."""

    trial_id: int
    bracket: int | None  # Hyperband's bracket, written when the trial started (None: never written)
    results: tuple[tuple[float, float], ...]  # (resource, finite objective) in report order
    decisions: tuple[RecordedDecision, ...]  # its scheduler events in recording order
    running: bool

    @property
    def stop(self) -> RecordedDecision | None:
        return next((d for d in self.decisions if d.action == Action.STOP), None)


class Scheduler(ABC):
    def __init__(self, spec: SchedulerSpec, metric: str, mode: str) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.spec, self.metric, self.mode = spec, metric, mode

    def worse(self, a: float, b: float) -> bool:
        """True when objective ``a`` is strictly worse than ``b`` (ties are not worse)."""
        return a < b if self.mode == "max" else a > b

    def best(self, values: list[float]) -> float:
        return max(values) if self.mode == "max" else min(values)

    @property
    def worse_word(self) -> str:
        """How "worse" reads in a decision: below a cut-off when maximising, above when minimising."""
        return "below" if self.mode == "max" else "above"

    def on_trial_start(self, trial_id: int) -> None:
        """A new trial was launched (hyperband deals it to a bracket here)."""

    @abstractmethod
    def on_result(self, trial_id: int, resource: float, value: float) -> Decision:
        """``value`` is the objective at ``resource`` (epoch); never NaN (health handles NaN)."""

    def on_trial_end(self, trial_id: int) -> None:
        """The trial left `running` (completed, failed, stopped, pruned)."""

    def assigned_bracket(self, trial_id: int) -> int | None:
        """The bracket to record in ``trials.bracket`` once the trial started; None: no brackets here."""
        return None

    def restore(self, trials: Sequence[RecordedTrial]) -> None:
        """Rebuild the state a resumed study had live; ``trials`` are the started ones, in start order.

        The default suits a scheduler without state (FIFO); the others override it.
        """
