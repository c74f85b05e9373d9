"""What the loop's collaborators share: the study, its store and space, the executor, the core, the watched trials.

Why its own module: the shell (engine/study.py) is split into small pieces with one job each
(recovery.py, trial_launch.py, trial_exits.py, storage_wait.py, ...). They all read and write the
same few things; handing them one small record instead of a dozen arguments keeps their
constructors short and makes plain what they share, without any of them importing the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.effects import Effect
from ..core.events import Command
from ..core.study_core import StudyCore
from ..database.store import CommandRow, Store, StudyRow, TrialRow
from ..executors.base import Executor, TrialProcess
from ..reading.trial_logs import LiveTrial, follow
from ..space_file.space import Space


@dataclass
class LoopParts:
    """The study's world as the shell sees it; ``live`` holds the trials being read and reaped, by id."""

    store: Store
    space: Space
    study: StudyRow
    executor: Executor
    core: StudyCore
    live: dict[int, LiveTrial]
    say: Callable[[str], None]  # one timestamped line (engine/loop/engine_output.py)
    apply: Callable[[list[Effect]], None]  # do what the core decided (StudyLoop._apply)

    def track(self, row: TrialRow, proc: TrialProcess) -> None:
        """Start reading and reaping a running trial, from the log offsets its row records."""
        self.live[row.id] = follow(self.store, self.space, row, proc, proc.stdout_path, proc.stderr_path)


def command_of(row: CommandRow) -> Command:
    """A commands-table row (engine/database/store.py's CommandRow) as the core reads it."""
    return Command(row.id, row.action, row.trial_number, row.args, row.problem)
