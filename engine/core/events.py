"""What the loop tells the core: plain frozen values, one class per thing that happened.

The loop (engine/study.py) builds these from the store, the executor and the trial logs; the
core never sees a row, a process or a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..reading.trial_reading import Problem
from ..schedulers.base import RecordedTrial


@dataclass(frozen=True)
class TrialFacts:
    """What the core keeps of one trial: enough to count it, rerun it, clone it and command it."""

    id: int
    number: int
    params: dict[str, Any]
    status: str
    sample_index: int | None = None
    rerun_of: int | None = None
    clone_id: int | None = None
    best_value: float | None = None
    best_step: float | None = None
    bracket: int | None = None

    @classmethod
    def of(cls, row: Any) -> TrialFacts:
        """From a trial row (engine/database/store.py's TrialRow, read by attribute so the core needs no store)."""
        return cls(id=row.id, number=row.number, params=row.params, status=row.status,
                   sample_index=row.sample_index, rerun_of=row.rerun_of, clone_id=row.clone_id,
                   best_value=row.best_value, best_step=row.best_step, bracket=row.bracket)


# -- resume ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recovered:
    """Every trial of the study as a resumed engine found it (before adopting or rerunning any)."""

    trials: tuple[TrialFacts, ...]
    oom_alone: frozenset[int] = frozenset()  # first attempts whose rerun alone on a GPU counts instead


@dataclass(frozen=True)
class RerunQueued:
    """An interrupted trial (or one that could not start for lack of file descriptors) runs again."""

    trial: TrialFacts


@dataclass(frozen=True)
class CloneQueued:
    """A clone row the store holds (written with its command's acknowledgement, or left by a dead engine)."""

    clone_id: int
    source_number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class TrialAdopted:
    """A trial that outlived its engine and still runs: tracked again, the scheduler already knows it."""

    trial: TrialFacts


@dataclass(frozen=True)
class EndedUnwatched:
    """A trial that ended while no engine ran, judged finished from its logs: counted and learned from."""

    trial: TrialFacts


@dataclass(frozen=True)
class JudgeUnwatched:
    """A trial that ended while no engine ran: judged now on what it reported, as the live engine would have.

    ``history``: its steps judged before the engine died (the health checks relearn them, nothing
    is said); ``reports``: the steps no engine judged yet, in order — its last recorded step and
    what it printed while no engine read. A stop they call for is the trial's end (the StopTrial
    effect); either way the trial leaves the running ones within this one exchange.
    """

    trial: TrialFacts
    history: tuple[tuple[float, Mapping[str, float]], ...]
    reports: tuple[Reported, ...]


@dataclass(frozen=True)
class HistoryRead:
    """What the scheduler and the health checks relearn on resume, read from the database."""

    restored: tuple[RecordedTrial, ...] = ()
    curves: Mapping[int, Sequence[tuple[float, Mapping[str, float]]]] = field(default_factory=dict)
    starts: tuple[tuple[int, str, float], ...] = ()  # (trial id, metric, first value) of earlier trials


# -- launching ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotsFree:
    """``free`` more trials may run now (max_parallel, within the open-file limit): the next launch, if any."""

    free: int


@dataclass(frozen=True)
class Launched:
    """The configuration of the last Launch has a trial row (its GPU, if any, was found): consumed."""

    trial: TrialFacts


@dataclass(frozen=True)
class StartFailed:
    """The executor could not start the trial (its row is already recorded failed)."""

    trial_id: int
    reason: str


@dataclass(frozen=True)
class TrialStarted:
    """The trial runs."""

    trial: TrialFacts


@dataclass(frozen=True)
class Halt:
    """Nothing more can start (no folder, no file descriptors, the database lost): the study ends."""

    reason: str
    study_failed: bool = True  # the study's status becomes failed (not only its exit code)
    record_kind: str | None = None  # also record and say the reason as an event of this kind


# -- running ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reported:
    """One settled step of a running trial."""

    trial_id: int
    step: float
    values: Mapping[str, float]
    resource: float | None
    reports: int  # the trial's reports so far, this one included


@dataclass(frozen=True)
class TrialExited:
    """A trial's process ended; everything its end is judged and worded from."""

    trial_id: int
    code: int
    asked_status: str | None = None  # what the engine (or the executor) asked it to end as
    asked_reason: str | None = None
    reports: int = 0
    invalid: str | None = None  # the reason the trial gave for refusing its configuration
    stderr_tail: str = ""
    best: float | None = None
    best_step: float | None = None
    curve: tuple[tuple[float, float], ...] = ()
    last: Mapping[str, float] | None = None
    ran_s: float | None = None
    problems: tuple[Problem, ...] | None = None  # what its readers did not read (None: no reader)
    cuda_oom: bool = False  # its stderr says CUDA ran out of memory


@dataclass(frozen=True)
class GpuReleased:
    """The trial's end is recorded and its GPU claim gone; ``retry_alone``: it runs again alone on a GPU."""

    trial_id: int
    retry_alone: bool = False


@dataclass(frozen=True)
class Command:
    """One row of the commands table (engine/database/command_check.py filled ``problem`` for a malformed one)."""

    id: int
    action: str
    trial_number: int | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None


@dataclass(frozen=True)
class EarlierCommand:
    """A command waiting since before this engine started (sent to an engine that died): ``sent`` is when."""

    command: Command
    sent: str  # local time, as the user reads it


@dataclass(frozen=True)
class MaxParallelRead:
    """max_parallel as the study's row holds it now (set from outside the loop)."""

    value: int


@dataclass(frozen=True)
class Tick:
    """The time now, from a monotonic clock (seconds; the same clock the core was started with)."""

    now: float


@dataclass(frozen=True)
class StopSignal:
    """SIGINT (``interrupt``) or SIGTERM: the engine stops; interrupted trials run again on resume."""

    interrupt: bool


Event = (Recovered | RerunQueued | CloneQueued | TrialAdopted | EndedUnwatched | HistoryRead | SlotsFree
         | Launched | StartFailed | TrialStarted | Halt | Reported | TrialExited | GpuReleased | Command
         | EarlierCommand | MaxParallelRead | Tick | StopSignal)
