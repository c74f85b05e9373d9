"""The store's read side: what the interface and the reports ask about events, commands and clones.

Every query on those three tables lives here or in :mod:`engine.database.store` (the writer), so the
schema is spoken in one place and the answers come back as the record vocabulary of
:mod:`engine.database.records` (payload dataclasses, kinds), never as raw rows or JSON. Each function
takes an open ``sqlite3.Connection``: the TUI passes its read-only (or immutable) connection from
:mod:`tui.dbopen`, the Store its own. Nothing here writes or holds a transaction beyond one query.

A payload that does not parse (a hand-edited file, a newer engine) reads as an empty one: a
reader shows what it can instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .records import EventKind, HealthFlag, NotRead, SchedulerDecision, StudyEnd, TrialEnded, TrialStarted


@dataclass(frozen=True)
class TrialMarks:
    """A study's health flags and clone starts recorded after an event id, oldest first.

    ``last_id`` is the newest event id looked at (the next read starts after it).
    """

    last_id: int
    flags: tuple[tuple[int, HealthFlag], ...]  # (trial id, flag)
    starts: tuple[tuple[int, TrialStarted], ...]  # (trial id, started), only asked of a file without clones


@dataclass(frozen=True)
class QueuedClone:
    """A clone the engine accepted that no trial runs yet (the ``clones`` queue, schema 3)."""

    clone_id: int
    source_number: int
    params: dict[str, Any]
    note: str | None


@dataclass(frozen=True)
class AcceptedCloneCommand:
    """A ``clone_trial`` command the engine accepted, in a file older than the clones queue."""

    command_id: int
    source_number: int | None
    params: dict[str, Any]  # the edited parameters only (the rest are the source trial's)


@dataclass(frozen=True)
class StudyEndRecord:
    """The newest ``study_end`` event: its line and its payload."""

    message: str
    end: StudyEnd


@dataclass(frozen=True)
class NotReadRecord:
    """One ``not_read`` event of a trial: its line (``trial N STATUS: what``) and its payload."""

    message: str
    problem: NotRead


@dataclass(frozen=True)
class FlagRecord:
    """One ``flag`` event with the number of the trial it is about (None for a study-level one)."""

    time: float
    trial_number: int | None
    level: str
    message: str
    flag: HealthFlag


def payload(text: str | None) -> dict[str, Any]:
    """An event's or command's JSON data as a mapping; anything unreadable is an empty one."""
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# -- the clone queue ------------------------------------------------------------------------------------
def has_clone_queue(conn: sqlite3.Connection) -> bool:
    """Whether the file has the ``clones`` table (schema 3 on): trials then carry ``clone_id``."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clones'").fetchone() is not None


def clone_source_sql(has_clones: bool) -> str:
    """A column expression for a ``trials`` query: the number of the trial a clone copies (NULL when none)."""
    return "(SELECT source_number FROM clones WHERE id = trials.clone_id)" if has_clones else "NULL"


def queued_clones(conn: sqlite3.Connection, study_id: int) -> list[QueuedClone]:
    """Queued clones no trial runs yet, oldest first."""
    rows = conn.execute("SELECT id, source_number, params, note FROM clones c WHERE study_id = ? AND NOT EXISTS "
                        "(SELECT 1 FROM trials t WHERE t.clone_id = c.id) ORDER BY id", (study_id,)).fetchall()
    return [QueuedClone(clone_id, source, payload(params), note) for clone_id, source, params, note in rows]


def accepted_clone_commands(conn: sqlite3.Connection, study_id: int) -> list[AcceptedCloneCommand]:
    """``clone_trial`` commands the engine accepted, oldest first, in a file without the clones queue.

    Such a file predates ``commands.ok`` (schema 4) too: the engine of the time answered an
    accepted clone with ``clone of N ...`` and a refusal with other words, so the text is all
    there is to tell them apart. Newer files never come here.
    """
    rows = conn.execute("SELECT id, trial_number, args FROM commands WHERE study_id = ? AND action = 'clone_trial' "
                        "AND acknowledged_at IS NOT NULL AND result LIKE 'clone of %' ORDER BY id",
                        (study_id,)).fetchall()
    return [AcceptedCloneCommand(command_id, source, dict(payload(args).get("params") or {}))
            for command_id, source, args in rows]


# -- events -----------------------------------------------------------------------------------------------
def trial_marks_since(conn: sqlite3.Connection, study_id: int, after_id: int, *, clone_starts: bool) -> TrialMarks:
    """Flags (and, with ``clone_starts``, ``started`` events) of the study's trials after event ``after_id``."""
    kinds = (EventKind.FLAG, EventKind.STARTED) if clone_starts else (EventKind.FLAG,)
    rows = conn.execute(f"SELECT id, trial_id, kind, data FROM events WHERE study_id = ? AND id > ? "
                        f"AND kind IN ({', '.join('?' * len(kinds))}) ORDER BY id",
                        (study_id, after_id, *kinds)).fetchall()
    last_id = after_id
    flags: list[tuple[int, HealthFlag]] = []
    starts: list[tuple[int, TrialStarted]] = []
    for event_id, trial_id, kind, data in rows:
        last_id = event_id
        if trial_id is None:
            continue
        if kind == EventKind.STARTED:
            starts.append((trial_id, TrialStarted.from_data(payload(data))))
        else:
            flags.append((trial_id, HealthFlag.from_data(payload(data))))
    return TrialMarks(last_id, tuple(flags), tuple(starts))


def latest_study_end(conn: sqlite3.Connection, study_id: int) -> StudyEndRecord | None:
    row = conn.execute("SELECT message, data FROM events WHERE study_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                       (study_id, EventKind.STUDY_END)).fetchone()
    return None if row is None else StudyEndRecord(str(row[0] or ""), StudyEnd.from_data(payload(row[1])))


def failure_storm_since(conn: sqlite3.Connection, study_id: int, after_id: int) -> tuple[int, str | None]:
    """(newest event id of the study, line of the newest ``failure_storm`` event after ``after_id`` or None).

    A ``failure_storm`` event is written with the pause it causes (its line is the pause reason),
    so a reader tells the engine's pause from the user's by the record, not by its words. Pass
    the id returned last time to read only what is new.
    """
    row = conn.execute("SELECT message FROM events WHERE study_id = ? AND id > ? AND kind = ? ORDER BY id DESC "
                       "LIMIT 1", (study_id, after_id, EventKind.FAILURE_STORM)).fetchone()
    newest = conn.execute("SELECT MAX(id) FROM events WHERE study_id = ?", (study_id,)).fetchone()[0]
    return max(after_id, newest or 0), None if row is None else str(row[0] or "")


def trial_failure(conn: sqlite3.Connection, trial_id: int) -> TrialEnded | None:
    """The payload of the trial's newest ``failed`` event (exit code, stderr tail)."""
    row = conn.execute("SELECT data FROM events WHERE trial_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                       (trial_id, EventKind.FAILED)).fetchone()
    return None if row is None else TrialEnded.from_data(payload(row[0]))


def trial_not_read(conn: sqlite3.Connection, trial_id: int) -> list[NotReadRecord]:
    rows = conn.execute("SELECT message, data FROM events WHERE trial_id = ? AND kind = ? ORDER BY id",
                        (trial_id, EventKind.NOT_READ)).fetchall()
    return [NotReadRecord(str(message or ""), NotRead.from_data(payload(data))) for message, data in rows]


def scheduler_decisions(conn: sqlite3.Connection, trial_id: int) -> list[SchedulerDecision]:
    rows = conn.execute("SELECT data FROM events WHERE trial_id = ? AND kind = ?",
                        (trial_id, EventKind.SCHEDULER)).fetchall()
    return [SchedulerDecision.from_data(payload(data)) for (data,) in rows]


def recent_flags(conn: sqlite3.Connection, study_id: int, limit: int) -> list[FlagRecord]:
    """The study's newest ``flag`` events, newest first."""
    rows = conn.execute("SELECT e.time, t.number, e.level, e.message, e.data FROM events e LEFT JOIN trials t "
                        "ON t.id = e.trial_id WHERE e.study_id = ? AND e.kind = ? ORDER BY e.id DESC LIMIT ?",
                        (study_id, EventKind.FLAG, limit)).fetchall()
    return [FlagRecord(when, number, level or "warning", message or "", HealthFlag.from_data(payload(data)))
            for when, number, level, message, data in rows]
