"""What the trials table and the detail panes know about one trial: the reader builds it, ordering sorts it.

Its own module so that :mod:`tui.ordering` (pure filter and sort) needs nothing from the reader
that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..engine.database.records import TrialStatus


@dataclass(frozen=True)
class TrialInfo:
    """What the trials table and the detail panes know about one trial."""

    id: int
    number: int
    status: str
    params: Mapping[str, Any]
    last: float | None
    best: float | None
    last_step: float | None
    flags: tuple[str, ...]
    gpus: str | None
    started_at: float | None
    finished_at: float | None
    paused: bool
    run_s: float | None
    eta_s: float | None
    stdout_path: str
    stderr_path: str
    reason: str = ""
    exit_code: int | None = None
    clone_of: int | None = None
    process: str = ""  # "" (watched by its engine), "gone" or "unwatched" (the engine is dead)
    pending: bool = False  # a clone the engine holds in its queue: not a trial row yet

    @property
    def shown_status(self) -> str:
        if self.status == TrialStatus.RUNNING:
            if self.process:
                return self.process
            if self.paused:
                return "paused"
        return self.status

    @property
    def is_live(self) -> bool:
        """Something still runs or will run: a stop means something."""
        return self.shown_status in (TrialStatus.RUNNING, "paused", "unwatched", TrialStatus.QUEUED)
