"""What a screen may ask of the running interface: the reader, the commander and the message history.

The screens are typed against this protocol rather than against :class:`tui.app.HpotuiApp`, so
the app imports its screens and no screen imports the app back. ``HpotuiApp`` provides it.
"""

from __future__ import annotations

from typing import Protocol

from rich.text import Text

from .actions import Commander
from .data import StudyReader
from .notices import StudyState


class Monitor(Protocol):
    db_path: str
    refresh_s: float
    reader: StudyReader
    commander: Commander
    messages: list[Text]

    def observe(self, study_id: int, state: StudyState) -> None:
        """Feed one read of a study; what is news becomes a notice."""

    def remember(self, line: Text) -> None:
        """Keep a line in the message history (``m``)."""

    def open_study(self, study_id: int, name: str = "") -> None:
        """Show one study's screen."""
