"""The record vocabulary: statuses, event kinds and event payloads, shared by the engine and the TUI.

The engine writes these records into the study file and the TUI reads them back with the same
classes, so the two sides cannot drift apart (the TUI once read a ``step`` the engine never
wrote). The stored values are the plain strings they always were: every enum member *is* its
string (``TrialStatus.COMPLETED == "completed"``), so an existing study file reads unchanged and
a ``sqlite3`` shell shows the same words.

Payload classes read leniently (``from_data``): a field of the wrong type reads as missing, never
as an exception, because an older engine or a hand-edited row may have written it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping


class StoredText(str, Enum):
    """An enum whose members are the exact strings stored in the database.

    ``f"{member}"`` gives the bare value on 3.10 too (str-mixin enums format differently there).
    """

    def __str__(self) -> str:
        return self.value


EXIT_UNKNOWN = -1000  # a trial ended where its exit code could not be read (adopted, or the executor lost it)


class TrialStatus(StoredText):
    """Where a trial is; everything but queued / running / interrupted is final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PRUNED = "pruned"  # the scheduler stopped it early
    STOPPED = "stopped"  # the user, max_time or a health check stopped it
    FAILED = "failed"  # non-zero exit, or it could not start
    DIVERGED = "diverged"  # NaN / exploding objective
    INTERRUPTED = "interrupted"  # the engine died or was stopped under it: runs again on resume
    INVALID = "invalid"  # the trial refused its configuration: ended, not counted (engine/search/invalid.py)


class StudyStatus(StoredText):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


T = TrialStatus
#: Ended and counted toward ``max_trials`` ("interrupted" runs again; "invalid" is not counted).
TERMINAL_STATUSES: frozenset[str] = frozenset({T.COMPLETED, T.PRUNED, T.STOPPED, T.FAILED, T.DIVERGED})
#: Ended, but outside ``max_trials``: the trial said its configuration cannot run.
INVALID_STATUSES: frozenset[str] = frozenset({T.INVALID})
#: Every status a trial never leaves.
ENDED_STATUSES: frozenset[str] = TERMINAL_STATUSES | INVALID_STATUSES
#: A trial (or study) the engine is, or should be, working on.
LIVE_STATUSES: frozenset[str] = frozenset({T.RUNNING, T.QUEUED})
#: Not finished in the interface's count: live, interrupted (it runs again) or invalid (not counted).
UNFINISHED_STATUSES: frozenset[str] = LIVE_STATUSES | {T.INTERRUPTED} | INVALID_STATUSES
#: Whose values say something about where the good region is (failed / diverged values do not).
RANKED_STATUSES: frozenset[str] = frozenset({T.COMPLETED, T.PRUNED, T.STOPPED})
#: Failures: the trial crashed or its objective blew up (the TUI's ``failed`` filter shows both).
FAILURE_STATUSES: frozenset[str] = frozenset({T.FAILED, T.DIVERGED})
#: Stopped early, by the scheduler or otherwise: a partial curve.
EARLY_STOPPED_STATUSES: frozenset[str] = frozenset({T.PRUNED, T.STOPPED})
#: What a warm start learns from (failures teach nothing about the objective).
LEARNED_STATUSES: frozenset[str] = frozenset({T.COMPLETED, T.PRUNED, T.STOPPED, T.DIVERGED, T.INVALID})
S = StudyStatus
#: A study's end (it gets a ``finished_at``); "running" again after a resume.
STUDY_ENDED_STATUSES: frozenset[str] = frozenset({S.COMPLETED, S.STOPPED, S.FAILED, S.INTERRUPTED})
#: A study that ended on purpose: resume has nothing to do unless work is left.
STUDY_DONE_STATUSES: frozenset[str] = frozenset({S.COMPLETED, S.STOPPED})
#: Trials a resumed engine still has to run.
WORK_LEFT_STATUSES: frozenset[str] = LIVE_STATUSES | {T.INTERRUPTED}
del T, S


class EventKind(StoredText):
    """The ``events.kind`` values the engine writes (a trial's end is written under its status)."""

    ADOPTED = "adopted"
    BAD_METRIC_LINE = "bad_metric_line"
    BOUNDARY = "boundary"
    COMMAND = "command"
    ENGINE_EXIT = "engine_exit"
    ENGINE_LOG = "engine_log"
    ERROR = "error"
    FAILURE_STORM = "failure_storm"
    FD_LIMIT = "fd_limit"
    FLAG = "flag"
    FOLDER_MODE = "folder_mode"
    FOREIGN_LOG = "foreign_log"
    GPU_CLAIMS = "gpu_claims"
    GPU_READINGS = "gpu_readings"
    INFO = "info"
    INVALID_STORM = "invalid_storm"
    LEFTOVERS = "leftovers"
    MAX_TIME = "max_time"
    NOT_READ = "not_read"
    NOTIFY = "notify"
    OOM_RETRY = "oom_retry"
    PACKING_PAUSED = "packing_paused"
    PATIENCE = "patience"
    PLACED = "placed"
    SCHEDULER = "scheduler"
    STALE_COMMAND = "stale_command"
    STARTED = "started"
    STORAGE = "storage"
    STUDY_END = "study_end"
    TRIAL_FOLDER = "trial_folder"
    WAITING = "waiting"
    WARM_START = "warm_start"
    WARNING = "warning"
    # a trial's end: the kind is its final status
    COMPLETED = "completed"
    PRUNED = "pruned"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"
    INVALID = "invalid"


# -- payloads --------------------------------------------------------------------------------------------
def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return str(value) if value is not None else ""


@dataclass(frozen=True)
class SchedulerDecision:
    """A ``scheduler`` event: the scheduler stopped a trial (``stop``) or let it go on with a note."""

    action: str  # "stop" / "continue"
    step: float | None
    value: float | None = None  # the objective at that step
    resource: float | None = None  # the step in the scheduler's resource unit
    rung: float | None = None  # the rung a stop was decided at (resume reads it: engine/schedulers/recorded.py)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action, "step": self.step, "value": self.value,
                                "resource": self.resource}
        if self.action == "stop":
            data["rung"] = self.rung
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SchedulerDecision:
        return cls(_text(data, "action"), _number(data, "step"), _number(data, "value"), _number(data, "resource"),
                   _number(data, "rung"))

    @property
    def stopped(self) -> bool:
        return self.action == "stop"


@dataclass(frozen=True)
class StudyEnd:
    """The ``study_end`` event: the status the study ended with and why, in words."""

    status: str
    reason: str

    def to_data(self) -> dict[str, Any]:
        return {"status": str(self.status), "reason": self.reason}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StudyEnd:
        return cls(_text(data, "status"), _text(data, "reason"))


@dataclass(frozen=True)
class TrialStarted:
    """The ``started`` event: the process, its GPUs and, for a clone, the trial it copies."""

    pid: int | None
    gpus: str | None = None
    clone_of: int | None = None  # the source trial's number
    placement: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {"pid": self.pid, "gpus": self.gpus, "clone_of": self.clone_of, "placement": self.placement}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TrialStarted:
        gpus, placement = data.get("gpus"), data.get("placement")
        return cls(_int(data, "pid"), gpus if isinstance(gpus, str) else None, _int(data, "clone_of"),
                   placement if isinstance(placement, str) else None)


@dataclass(frozen=True)
class TrialEnded:
    """A trial's end event (kind = its status): exit code, best value, reports; a failure's stderr tail."""

    exit_code: int | None
    best: float | None
    reports: int
    stderr_tail: str | None = None  # only on ``failed``

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"exit_code": self.exit_code, "best": self.best, "reports": self.reports}
        if self.stderr_tail is not None:
            data["stderr_tail"] = self.stderr_tail
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TrialEnded:
        tail = data.get("stderr_tail")
        return cls(_int(data, "exit_code"), _number(data, "best"), _int(data, "reports") or 0,
                   str(tail) if tail is not None else None)


@dataclass(frozen=True)
class HealthFlag:
    """A ``flag`` event: a health detector's (or the OOM check's) finding about one trial."""

    flag: str
    step: float | None = None
    value: float | None = None
    hint: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"flag": self.flag, "step": self.step, "value": self.value, "hint": self.hint}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> HealthFlag:
        return cls(_text(data, "flag"), _number(data, "step"), _number(data, "value"), _text(data, "hint"))


@dataclass(frozen=True)
class NotRead:
    """A ``not_read`` event: something a trial wrote that hpotui could not read (what, and the problem)."""

    problem: str
    what: str

    def to_data(self) -> dict[str, Any]:
        return {"problem": self.problem, "what": self.what}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> NotRead:
        return cls(_text(data, "problem"), _text(data, "what"))


# -- commands --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandResult:
    """The answer to a command: done (``ok``) or refused / not applied, and the line to show.

    Stored with the acknowledgement (``commands.ok``, schema 4) so the sender knows the severity
    without reading the words. ``ok`` is None only for an acknowledgement an older engine wrote.
    """

    ok: bool | None
    message: str

    @classmethod
    def done(cls, message: str) -> CommandResult:
        return cls(True, message)

    @classmethod
    def refused(cls, message: str) -> CommandResult:
        return cls(False, message)
