"""The study's own state that decisions read and change: how it ends, and whether it may launch."""

from __future__ import annotations

from dataclasses import dataclass

from ..database.records import StudyStatus

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 130, 143


@dataclass
class StudyState:
    max_parallel: int
    launching_paused: bool
    headless: bool  # no one can resume launching interactively: a storm ends the study
    stop_reason: str | None = None  # set once no new trial may start
    final_status: str = StudyStatus.COMPLETED
    exit_code: int = EXIT_OK
    stopping_on_signal: bool = False  # interrupted trials do not run again: the engine is going

    def fail(self, reason: str) -> None:
        """No new trial: the study ends failed (exit 1)."""
        self.stop_reason = reason
        self.final_status, self.exit_code = StudyStatus.FAILED, EXIT_FAILED
