"""The first screen: every study in the file, one line each; Enter opens one.

Refreshes like every screen here: a 1 s timer checks ``PRAGMA data_version`` on the UI thread
(microseconds) and only when it moved starts a worker that re-reads the (small) studies table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from .. import format as fmt
from ..data import StudySummary

if TYPE_CHECKING:
    from ..app import HpotuiApp

COLUMNS = ("study", "stage", "status", "trials", "best", "engine")


def counts_text(counts: dict[str, int] | object) -> Text:
    out = Text()
    for status in ("running", "queued", "completed", "pruned", "stopped", "diverged", "failed", "interrupted"):
        n = counts.get(status) if isinstance(counts, dict) else None  # type: ignore[union-attr]
        if n:
            if out:
                out.append(" ")
            out.append(f"{n} {status}", style=fmt.STATUS_STYLES.get(status, ""))
    return out or Text("no trials", style="dim")


class StudyListScreen(Screen[None]):
    TITLE_TEXT = "study list"
    BINDINGS = [Binding("enter", "open", "Open", id="open_study", tooltip="open the highlighted study"),
                Binding("escape", "noop", "", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self._version: int | None = None
        self._busy = False
        self._ids: list[int] = []

    @property
    def hpotui(self) -> "HpotuiApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="list-header")
        yield DataTable(cursor_type="row", id="studies")
        yield Static("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#studies", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.query_one("#list-header", Static).update(f"hpotui · {self.hpotui.db_path}")
        self.set_interval(self.hpotui.refresh_s, self.poll)
        self.poll(force=True)

    def on_screen_resume(self) -> None:
        self.poll(force=True)

    def poll(self, force: bool = False) -> None:
        if self._busy:
            return
        if not force and self.hpotui.reader.data_version_now() in (None, self._version):
            return  # nothing new: no worker thread on an idle tick
        self._busy = True
        self._load(force)

    @work(thread=True, group="study-list")
    def _load(self, force: bool) -> None:
        try:
            version = self.hpotui.reader.data_version()
            if version == self._version and not force:
                return
            self._version = version
            studies = self.hpotui.reader.studies()
            self.app.call_from_thread(self._show, studies)
        finally:
            self._busy = False

    def _show(self, studies: list[StudySummary]) -> None:
        table = self.query_one("#studies", DataTable)
        keep = table.cursor_row
        table.clear()
        self._ids = [s.id for s in studies]
        for s in studies:
            stage = f"{s.stage}" + (f" ← {s.parent}" if s.parent else "")
            status = fmt.status(s.status)
            if s.launching_paused and s.status == "running":
                status.append(" (launching paused)", style="yellow")
            best = fmt.number(s.best) + f" {s.objective}" if s.best is not None else "-"
            engine = Text("alive", style="green") if s.engine_alive else Text("-", style="dim")
            table.add_row(s.name, stage, status, counts_text(dict(s.counts)), best, engine, key=str(s.id))
        if studies:
            table.move_cursor(row=min(max(keep, 0), len(studies) - 1), animate=False)
        message = self.query_one("#message", Static)
        message.update("" if studies else f"no studies in {self.hpotui.db_path} yet: "
                                          "start one with `hpotui launch SPACE`")

    @on(DataTable.RowSelected, "#studies")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one("#studies", DataTable)
        if not self._ids or table.cursor_row < 0:
            return
        self.hpotui.open_study(self._ids[table.cursor_row])

    def action_noop(self) -> None:
        pass
