"""The hpotui App: screens, global keys, and ``run_tui`` (what ``hpotui`` without a command calls).

The interface only reads the study file (through :class:`tui.data.StudyReader`) and writes
requests into its commands table (through :class:`tui.actions.Commander`); the engine runs in
its own process, so quitting here never stops a study — which the exit message says.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from textual.app import App
from textual.binding import Binding

from .actions import Commander
from .data import StudyReader

QUIT_NOTE = ("hpotui: the interface closed; studies keep running in the background. "
             "Attach again with `hpotui --db {db}`, stop one with `hpotui stop NAME`.")


class HpotuiApp(App[str]):
    CSS_PATH = "app.tcss"
    TITLE = "hpotui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit_tui", "Quit", id="quit", tooltip="quit the interface (studies keep running)"),
                Binding("question_mark", "help", "Help", id="help", tooltip="this help")]

    def __init__(self, db_path: str, study: str | None = None, *, clock: Callable[[], float] = time.time,
                 refresh_s: float = 1.0, ack_wait_s: float = 10.0) -> None:
        super().__init__()
        self.db_path = db_path
        self.start_study = study
        self.refresh_s = refresh_s
        self.reader = StudyReader(db_path, clock=clock)
        self.commander = Commander(db_path, wait_s=ack_wait_s)

    def on_mount(self) -> None:
        from .screens.study_list import StudyListScreen

        self.push_screen(StudyListScreen())
        if self.start_study:
            row = self.reader.study_by_name(self.start_study)
            if row is None:
                self.notify(f"no study named {self.start_study!r} in {self.db_path}", severity="error")
            else:
                self.open_study(row.id)

    def open_study(self, study_id: int) -> None:
        from .screens.study import StudyScreen

        self.push_screen(StudyScreen(study_id))

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen, list(self.BINDINGS)))  # type: ignore[arg-type]

    def action_quit_tui(self) -> None:
        self.exit(QUIT_NOTE.format(db=self.db_path))

    def on_unmount(self) -> None:
        self.commander.close()
        self.reader.close()


def run_tui(db_path: str, study: str | None) -> int:
    """Open the interface on ``db_path`` (optionally straight on ``study``); returns the exit code."""
    if not Path(db_path).exists():
        print(f"hpotui: {db_path}: no study database here; start a study with `hpotui launch SPACE` "
              "or pass --db PATH", file=sys.stderr)
        return 2
    try:
        app = HpotuiApp(db_path, study)
    except Exception as exc:  # not a database, unreadable
        print(f"hpotui: {db_path}: cannot open the study database ({exc}); check --db", file=sys.stderr)
        return 2
    note = app.run()
    print(note or QUIT_NOTE.format(db=db_path))
    return 0
