"""The hpotui App: screens, global keys, notices, and ``run_tui`` (what ``hpotui`` without a command calls).

The interface only reads the study file (through :class:`tui.data.StudyReader`) and writes
requests into its commands table (through :class:`tui.actions.Commander`); the engine runs in
its own process, so quitting here never stops a study — which the exit message says.

Notices (the study ended, its engine died, launching paused on a failure storm, a new best) are
noticed by whichever screen reads the study (:mod:`tui.notices`); the app rings the terminal
bell, shows a toast for a few seconds and keeps the line in the message history (``m``).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from rich.text import Text
from textual.app import App
from textual.binding import Binding

from .actions import Commander
from .data import StudyReader
from .dbopen import NotAStudyDatabase
from .notices import StudyState, Watcher
from .screens.help import HelpScreen
from .screens.study import StudyScreen
from .screens.study_list import StudyListScreen

QUIT_NOTE = ("hpotui: the interface closed; studies keep running in the background. "
             "Attach again with `hpotui --db {db}`, stop one with `hpotui stop NAME`.")
MAX_MESSAGES = 500
NOTICE_S = 8.0


class HpotuiApp(App[str]):
    CSS_PATH = "app.tcss"
    TITLE = "hpotui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit_tui", "Quit", id="quit", tooltip="quit the interface (studies keep running)"),
                Binding("question_mark", "help", "Help", id="help", tooltip="this help")]

    def __init__(self, db_path: str, study: str | None = None, *, clock: Callable[[], float] = time.time,
                 refresh_s: float = 1.0, ack_wait_s: float = 10.0, open_live: bool = True) -> None:
        super().__init__()
        self.db_path = db_path
        self.start_study = study
        self.open_live = open_live
        self.refresh_s = refresh_s
        self.reader = StudyReader(db_path, clock=clock)
        self.commander = Commander(db_path, wait_s=ack_wait_s)
        self.watcher = Watcher()
        self.messages: list[Text] = []

    def on_mount(self) -> None:
        self.push_screen(StudyListScreen())
        if self.start_study:
            row = self.reader.study_by_name(self.start_study)
            if row is None:
                self.notify(f"no study named {self.start_study!r} in {self.db_path}", severity="error")
            else:
                self.open_study(row.id, row.name)
        elif self.open_live:
            live = [s for s in self.reader.studies() if s.engine_alive]
            if live:  # `hpotui` alone on a file with a running study: straight onto the newest live one
                self.open_study(live[-1].id, live[-1].name)

    def open_study(self, study_id: int, name: str = "") -> None:
        self.push_screen(StudyScreen(study_id, name))

    # -- notices and the message history ---------------------------------------------------------
    def remember(self, line: Text) -> None:
        self.messages.append(line)
        del self.messages[:-MAX_MESSAGES]

    def observe(self, study_id: int, state: StudyState) -> None:
        """Feed one read of a study; what is news rings the bell and shows as a notice."""
        for notice in self.watcher.observe(study_id, state):
            stamp = time.strftime("%H:%M:%S", time.localtime(self.reader.clock()))
            self.remember(Text(f"{stamp} {notice.message}", style="bold" if notice.event != "best" else ""))
            self.bell()
            self.notify(notice.message, title=notice.event.replace("_", " "), severity=notice.severity,  # type: ignore[arg-type]
                        timeout=NOTICE_S, markup=False)

    def action_help(self) -> None:
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
    try:
        app = HpotuiApp(db_path, study)
    except NotAStudyDatabase as exc:
        print(f"hpotui: {exc}", file=sys.stderr)
        return 2
    if study and app.reader.study_by_name(study) is None:
        app.reader.close()
        print(f"hpotui: {db_path}: no study named {study!r}; `hpotui status --db {db_path}` lists them",
              file=sys.stderr)
        return 2
    note = app.run()
    if app.return_code not in (None, 0):  # the interface itself failed: no "keep running" all-clear
        print(f"hpotui: the interface stopped on an error (exit {app.return_code}); studies keep running; "
              f"`hpotui status --db {db_path}` shows them", file=sys.stderr)
        return app.return_code or 1
    print(note or QUIT_NOTE.format(db=db_path))
    return 0
