"""A trial's log: the tail of stdout (``e`` switches to stderr), following new lines while it runs.

A failed trial opens on stderr, where the reason is. The header says the follow state as it is:
"following" only while the trial runs and follow is on; a finished trial's log is complete and
says so. The state comes first in the header, so a long path is what gets cut at 80 columns.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..widgets.log_view import Chunk, LogView, read_more, read_tail

FOLLOW_S = 0.5


class LogScreen(Screen[None]):
    TITLE_TEXT = "log view"
    BINDINGS = [Binding("escape,l,q", "close", "Back", id="log_close", tooltip="back to the study"),
                Binding("e", "switch", "stdout/stderr", id="log_switch", tooltip="switch between stdout and stderr"),
                Binding("f", "follow", "Follow", id="log_follow", tooltip="follow new lines on / off (a running trial)"),
                Binding("j", "scroll(1)", show=False), Binding("k", "scroll(-1)", show=False),
                Binding("home", "edge(0)", show=False), Binding("end", "edge(1)", show=False)]

    def __init__(self, number: int, stdout_path: str, stderr_path: str, *, live: bool = True,
                 stream: str = "stdout") -> None:
        super().__init__()
        self.number = number
        self.paths = {"stdout": stdout_path, "stderr": stderr_path}
        self.stream = stream
        self.live = live
        self.follow = live
        self._busy = False

    def compose(self) -> ComposeResult:
        yield Static("", id="log-header")
        yield LogView(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._title()
        self._read(replace=True)
        self.set_interval(FOLLOW_S, self._tick)

    def follow_state(self) -> str:
        if not self.live:
            return "finished: complete log"
        return "following" if self.follow else "not following (f follows)"

    def _title(self) -> None:
        header = Text(no_wrap=True, overflow="ellipsis")
        header.append(f"trial {self.number} · {self.stream} · ", style="bold")
        header.append(self.follow_state(), style="bold green" if self.live and self.follow else "bold yellow")
        header.append(f" · {self.paths[self.stream] or '(no file)'}", style="dim")
        self.query_one("#log-header", Static).update(header)

    def _tick(self) -> None:
        if self.live and self.follow and not self._busy:
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
        view.auto_scroll = self.follow or not self.live
        view.add(chunk, replace=replace)

    def action_switch(self) -> None:
        self.stream = "stderr" if self.stream == "stdout" else "stdout"
        self._title()
        self._read(replace=True)

    def action_follow(self) -> None:
        if not self.live:
            self.query_one("#log-header", Static).update(Text(f"trial {self.number} has finished: its log is "
                                                              "complete, there is nothing to follow", style="bold"))
            return
        self.follow = not self.follow
        if self.follow:
            self.query_one("#log", LogView).scroll_end(animate=False)
        self._title()

    def action_scroll(self, delta: int) -> None:
        view = self.query_one("#log", LogView)
        view.scroll_to(y=view.scroll_y + delta, animate=False)
        if delta < 0 and self.follow:
            self.follow = False  # reading back: new lines no longer pull the view down
            self._title()

    def action_edge(self, end: int) -> None:
        view = self.query_one("#log", LogView)
        view.scroll_end(animate=False) if end else view.scroll_home(animate=False)

    def action_close(self) -> None:
        self.app.pop_screen()
