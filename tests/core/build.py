"""Hand-built studies for the core tests: a real Space from a space-file mapping, and the exchanges the
loop (engine/study.py) has with the core, written out as events. No process, no database, no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpotui.engine.core.effects import Effect, Launch, RecordEvent, Say
from hpotui.engine.core.events import GpuReleased, Launched, SlotsFree, TrialExited, TrialFacts, TrialStarted
from hpotui.engine.core.study_core import StudyCore
from hpotui.engine.reading.trial_reading import Problem
from hpotui.engine.space_file.space import Space, parse_space


def make_space(budget: dict[str, Any] | None = None, **top: Any) -> Space:
    """The Space a user's YAML of these keys gives (parsed by the real parser)."""
    data: dict[str, Any] = {
        "name": "core-test",
        "command": "python train.py --lr {lr} --layers {layers}",
        "objective": {"metric": "loss", "mode": "min"},
        "search": {"algorithm": "random", "seed": 0},
        "budget": {"max_trials": 10, "max_parallel": 2, **(budget or {})},
        "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                  "layers": {"type": "int", "low": 1, "high": 4}},
    }
    data.update(top)
    return parse_space(data, "core.yaml", base_dir=Path("/"))


def make_core(space: Space | None = None, *, headless: bool = True, now: float = 0.0, max_parallel: int = 2,
              interpreter_hint: str = "") -> StudyCore:
    return StudyCore(space or make_space(), "core-test", max_parallel=max_parallel, launching_paused=False,
                     headless=headless, now=now, interpreter_hint=interpreter_hint)


class Study:
    """One core and the trial rows the loop would have written for it (ids and numbers from 1)."""

    def __init__(self, core: StudyCore) -> None:
        self.core = core
        self.next_id = 1
        self.said: list[str] = []
        self.events: list[RecordEvent] = []
        self.effects: list[Effect] = []

    def feed(self, event: Any) -> list[Effect]:
        effects = self.core.handle(event)
        self.effects += effects
        self.said += [e.text for e in effects if isinstance(e, Say)]
        self.events += [e for e in effects if isinstance(e, RecordEvent)]
        return effects

    def offered(self) -> Launch | None:
        launches = [e for e in self.feed(SlotsFree(1)) if isinstance(e, Launch)]
        return launches[0] if launches else None

    def start(self) -> TrialFacts:
        """The next offered configuration gets a row and starts; fails the test if none is offered."""
        launch = self.offered()
        assert launch is not None, "the core offered no launch"
        trial = TrialFacts(self.next_id, self.next_id, launch.params, "queued", sample_index=launch.sample_index,
                           rerun_of=launch.rerun_of, clone_id=launch.clone_id)
        self.next_id += 1
        self.feed(Launched(trial))
        self.feed(TrialStarted(trial))
        return trial

    def exit(self, trial: TrialFacts, code: int = 0, *, best: float | None = None, retry_alone: bool = False,
             problems: tuple[Problem, ...] | None = (), **exited: Any) -> list[Effect]:
        """The trial's process ended: the loop records the end, then releases its GPU."""
        reports = exited.pop("reports", 0 if best is None else 3)
        effects = self.feed(TrialExited(trial.id, code, best=best, reports=reports, problems=problems, **exited))
        return effects + self.feed(GpuReleased(trial.id, retry_alone))

    def run(self, *, code: int = 0, best: float | None = None, **exited: Any) -> list[Effect]:
        return self.exit(self.start(), code, best=best, **exited)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def facts(trial_id: int, status: str, *, best: float | None = None, sample_index: int | None = None,
          clone_id: int | None = None, params: dict[str, Any] | None = None) -> TrialFacts:
    """A trial row as a resumed engine reads it (number = id)."""
    return TrialFacts(trial_id, trial_id, params or {"lr": 0.01, "layers": 2}, status,
                      sample_index=trial_id - 1 if sample_index is None else sample_index, clone_id=clone_id,
                      best_value=best)
