"""A trial's log: the tail of stdout (``e`` switches to stderr), following new lines while open."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..widgets.log_view import Chunk, LogView, read_more, read_tail

FOLLOW_S = 0.5


class LogScreen(Screen[None]):
    TITLE_TEXT = "log view"
    BINDINGS = [Binding("escape,l", "close", "Back", id="log_close", tooltip="back to the study"),
                Binding("e", "switch", "stdout/stderr", id="log_switch", tooltip="switch between stdout and stderr"),
                Binding("f", "follow", "Follow", id="log_follow", tooltip="follow new lines on / off")]

    def __init__(self, number: int, stdout_path: str, stderr_path: str) -> None:
        super().__init__()
        self.number = number
        self.paths = {"stdout": stdout_path, "stderr": stderr_path}
        self.stream = "stdout"
        self.follow = True
        self._busy = False

    def compose(self) -> ComposeResult:
        yield Static("", id="log-header")
        yield LogView(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._title()
        self._read(replace=True)
        self.set_interval(FOLLOW_S, self._tick)

    def _title(self) -> None:
        state = "following" if self.follow else "paused (f follows)"
        self.query_one("#log-header", Static).update(
            f"trial {self.number} · {self.stream} · {self.paths[self.stream] or '(no file)'} · {state}")

    def _tick(self) -> None:
        if self.follow and not self._busy:
            self._read(replace=False)

    def _read(self, replace: bool) -> None:
        self._busy = True
        view = self.query_one("#log", LogView)
        self._load(self.paths[self.stream], None if replace else view.file_offset, replace)

    @work(thread=True, group="log-tail")
    def _load(self, path: str, offset: int | None, replace: bool) -> None:
        try:
            if not path:
                chunk = Chunk((), 0, "this trial has no log file yet")
            else:
                chunk = read_tail(path) if offset is None else read_more(path, offset)
            if chunk.lines or replace or chunk.missing:
                self.app.call_from_thread(self._show, chunk, replace)
        finally:
            self._busy = False

    def _show(self, chunk: Chunk, replace: bool) -> None:
        view = self.query_one("#log", LogView)
        if chunk.missing and not replace and view.line_count:
            return  # the file vanished after we showed it: keep what is on screen
        view.add(chunk, replace=replace)

    def action_switch(self) -> None:
        self.stream = "stderr" if self.stream == "stdout" else "stdout"
        self._title()
        self._read(replace=True)

    def action_follow(self) -> None:
        self.follow = not self.follow
        self._title()

    def action_close(self) -> None:
        self.app.pop_screen()
