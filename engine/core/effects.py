"""What the core asks the loop to do: plain frozen values, applied in order by ``StudyLoop._apply``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..database.records import CommandResult
from ..trials.trial_end import TrialEnd


@dataclass(frozen=True)
class Launch:
    """Start a trial with this configuration (it is consumed once the loop answers ``Launched``)."""

    params: dict[str, Any]
    sample_index: int | None = None
    rerun_of: int | None = None  # the interrupted trial whose configuration this runs again
    clone_id: int | None = None  # the clones-table row this trial runs (reruns keep their original's)
    clone_of: int | None = None  # the number of the trial it is a clone of


@dataclass(frozen=True)
class StopTrial:
    trial_id: int
    status: str  # what it is recorded as when it exits
    reason: str


@dataclass(frozen=True)
class PauseTrial:
    trial_id: int


@dataclass(frozen=True)
class ResumeTrial:
    trial_id: int


@dataclass(frozen=True)
class RecordEvent:
    """An event row; ``buffered`` ones go with the next batch of metrics (<= 0.2 s), others at once."""

    trial_id: int | None
    kind: str
    message: str
    level: str = "info"
    data: dict[str, Any] | None = None
    buffered: bool = False


@dataclass(frozen=True)
class SetLaunchingPaused:
    paused: bool
    reason: str | None


@dataclass(frozen=True)
class SetMaxParallel:
    value: int


@dataclass(frozen=True)
class Acknowledge:
    command_id: int
    result: CommandResult


@dataclass(frozen=True)
class QueueClone:
    """Write the clone row together with the command's acknowledgement (one transaction, so a clone
    acknowledged "queued" survives kill -9 and runs once); the loop answers ``CloneQueued``."""

    command_id: int
    source_number: int
    params: dict[str, Any]
    note: str | None
    result: str


@dataclass(frozen=True)
class SetBracket:
    """Hyperband dealt the trial into this bracket: recorded on its row (resume restores it)."""

    trial_id: int
    bracket: int


@dataclass(frozen=True)
class RecordEnd:
    """Record the trial's final status; the loop then answers ``GpuReleased``."""

    trial_id: int
    end: TrialEnd


@dataclass(frozen=True)
class FlagOom:
    """The failed trial ran out of GPU memory: its ``oom`` flag with the hint."""

    trial_id: int
    number: int


@dataclass(frozen=True)
class StoreWarnings:
    """The study's warning lines changed: the boundary ones, then these (what trials did not report)."""

    reading_lines: tuple[str, ...]


@dataclass(frozen=True)
class UpdateWarnings:
    """Enough trials finished to rank them again: recompute the boundary warnings."""


@dataclass(frozen=True)
class Say:
    """A line on the engine's output (the loop stamps the time)."""

    text: str


@dataclass(frozen=True)
class Notify:
    """The space file's ``notify:`` command, for this occasion."""

    on: str
    message: str


Effect = (Launch | StopTrial | PauseTrial | ResumeTrial | RecordEvent | SetLaunchingPaused | SetMaxParallel
          | Acknowledge | QueueClone | SetBracket | RecordEnd | FlagOom | StoreWarnings | UpdateWarnings | Say
          | Notify)
