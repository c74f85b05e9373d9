"""Noticing, between two refreshes, the things a user on another tmux window wants to hear about.

The study ended, its engine died, launching paused on a storm of identical failures, the best so
far changed: each is a change of state between two reads, so the watcher keeps the last state
per study and returns the notices for what changed. The first read of a study only records its
state (opening the interface on a finished study is not news). The app rings the terminal bell
and shows each notice; they also go into the message history.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.database.records import LIVE_STATUSES

LIVE = LIVE_STATUSES


@dataclass(frozen=True)
class StudyState:
    """The part of a study the notices compare."""

    name: str
    status: str
    engine_alive: bool
    launching_paused: bool
    pause_reason: str | None
    best: float | None
    best_trial: int | None = None
    end_reason: str = ""
    mode: str = "max"
    storm_paused: bool = False  # paused by the engine's failure storm (its event), not by the user

    def beats(self, other: float | None) -> bool:
        """Whether this state's best is strictly better than ``other``."""
        if self.best is None:
            return False
        return other is None or (self.best > other if self.mode == "max" else self.best < other)


@dataclass(frozen=True)
class Notice:
    study: str
    event: str  # ended | engine_died | paused | best
    message: str
    severity: str = "information"


def changes(before: StudyState | None, now: StudyState) -> list[Notice]:
    """The notices for going from ``before`` to ``now`` (none on the first sight of a study)."""
    if before is None:
        return []
    found = (_ended_or_died(before, now), _paused(before, now), _best(before, now))
    return [n for n in found if n is not None]


def _ended_or_died(before: StudyState, now: StudyState) -> Notice | None:
    name = now.name
    if before.status in LIVE and now.status not in LIVE:
        why = f": {now.end_reason}" if now.end_reason else ""
        return Notice(name, "ended", f"study {name} {now.status}{why}")
    if now.status in LIVE and before.engine_alive and not now.engine_alive:
        return Notice(name, "engine_died", f"the engine of {name} is gone; `hpotui resume {name}` (or R on its "
                                           "screen) carries it on", "error")
    return None


def _paused(before: StudyState, now: StudyState) -> Notice | None:
    # from the engine's failure_storm record, not the words of the reason; its event may follow the pause
    # by one read, so the notice is given when the storm pause is first seen, not when the pause is
    if now.launching_paused and now.storm_paused and not (before.launching_paused and before.storm_paused):
        return Notice(now.name, "paused", f"{now.name}: {now.pause_reason}", "warning")
    return None


def _best(before: StudyState, now: StudyState) -> Notice | None:
    if before.best is None or not now.beats(before.best):  # a change of best, not the first one seen
        return None
    which = f" (trial {now.best_trial})" if now.best_trial is not None else ""
    return Notice(now.name, "best", f"{now.name}: new best {now.best:.4g}{which}")


class Watcher:
    """Last seen state per study id; feed it every read, it answers with what is news."""

    def __init__(self) -> None:
        self._seen: dict[int, StudyState] = {}

    def observe(self, study_id: int, state: StudyState) -> list[Notice]:
        before = self._seen.get(study_id)
        news = changes(before, state)
        if before is not None and not state.beats(before.best):  # two readers may round a best differently
            state = StudyState(**{**state.__dict__, "best": before.best, "best_trial": before.best_trial})
        self._seen[study_id] = state
        return news
