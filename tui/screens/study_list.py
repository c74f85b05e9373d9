"""The first screen: every study in the file, one line each; Enter opens one.

Refreshes like every screen here: a 1 s timer checks ``PRAGMA data_version`` on the UI thread
(microseconds) and only when it moved starts a worker that re-reads the (small) studies table.
An engine that dies writes nothing, so every few ticks the list also asks the process table
whether the engines it showed alive still are. At 80 columns the columns shrink to fit: the
study, its status (which says when its engine is gone), the trial counts, best and engine.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...engine.database.records import StudyStatus
from ...engine.database.store import StudyRow
from ...engine.trials.liveness import engine_alive
from .. import format as fmt
from ..data import StudySummary
from ..header import counts_text as short_counts
from ..monitor import Monitor
from ..notices import StudyState

COLUMNS = ("study", "stage", "status", "best", "engine", "trials")  # the long counts last: cut first
LIVENESS_EVERY = 2  # ticks between process-table checks of the engines shown alive


def counts_text(counts: dict[str, int] | object, short: bool = False) -> Text:
    if not isinstance(counts, dict) or not counts:
        return Text("no trials", style="dim")
    return short_counts(counts, short)


class StudyTable(DataTable[object]):
    """Textual's DataTable with the keys of every other list here: j/k, Home/End to the first / last row."""

    BINDINGS = [Binding("j", "cursor_down", show=False), Binding("k", "cursor_up", show=False),
                Binding("home", "first", show=False), Binding("end", "last", show=False)]

    def action_first(self) -> None:
        self.move_cursor(row=0, animate=False)

    def action_last(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1), animate=False)


class StudyListScreen(Screen[None]):
    TITLE_TEXT = "study list"
    BINDINGS = [Binding("enter", "open", "Open", id="open_study", tooltip="open the highlighted study"),
                Binding("escape", "noop", "", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self._version: int | None = None
        self._busy = False
        self._ids: list[int] = []
        self._alive: list[StudyRow] = []
        self._ticks = 0

    @property
    def hpotui(self) -> Monitor:
        """The running interface, as the screens know it (tui.monitor; the app is not imported)."""
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="list-header")
        yield StudyTable(cursor_type="row", id="studies")
        yield Static("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#studies", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        readonly = " · read-only snapshot" if self.hpotui.reader.immutable else ""
        self.query_one("#list-header", Static).update(f"hpotui · {self.hpotui.db_path}{readonly}")
        self.set_interval(self.hpotui.refresh_s, self.poll)
        self.poll(force=True)

    def on_screen_resume(self) -> None:
        self.poll(force=True)

    def poll(self, force: bool = False) -> None:
        if self._busy:
            return
        self._ticks += 1
        died = self._ticks % LIVENESS_EVERY == 0 and any(not engine_alive(row) for row in self._alive)
        if not force and not died and self.hpotui.reader.data_version_now() in (None, self._version):
            return  # nothing new: no worker thread on an idle tick
        self._busy = True
        self._load(force or died)

    @work(thread=True, group="study-list")
    def _load(self, force: bool) -> None:
        try:
            version = self.hpotui.reader.data_version()
            if version == self._version and not force:
                return
            self._version = version
            studies = self.hpotui.reader.studies()
            rows = {s.id: self.hpotui.reader.study(s.id) for s in studies if s.engine_alive}
            self.app.call_from_thread(self._show, studies, [r for r in rows.values() if r is not None])
        finally:
            self._busy = False

    def _show(self, studies: list[StudySummary], alive_rows: list[StudyRow]) -> None:
        self._alive = alive_rows
        table = self.query_one("#studies", DataTable)
        keep = table.cursor_row
        table.clear()
        self._ids = [s.id for s in studies]
        short = self.size.width < 120
        for s in studies:
            table.add_row(*self._cells(s, short), key=str(s.id))
            self.hpotui.observe(s.id, StudyState(name=s.name, status=s.status, engine_alive=s.engine_alive,
                                                 launching_paused=s.launching_paused, pause_reason=s.pause_reason,
                                                 best=None, mode=s.mode, storm_paused=s.storm_paused))  # best: the study screen's
        if studies:
            table.move_cursor(row=min(max(keep, 0), len(studies) - 1), animate=False)
        message = self.query_one("#message", Static)
        message.update("" if studies else f"no studies in {self.hpotui.db_path} yet: "
                                          "start one with `hpotui launch SPACE`")

    @staticmethod
    def _cells(s: StudySummary, short: bool) -> tuple[object, ...]:
        stage = f"{s.stage}" + (f"←{s.parent}" if s.parent else "")
        if s.engine_died:
            status = Text("engine gone", style="bold red")
            engine = Text("gone: R on it / hpotui resume" if not short else "gone", style="bold red")
        else:
            status = fmt.status(s.status)
            if s.launching_paused and s.status == StudyStatus.RUNNING:
                status.append(" paused" if short else " (launching paused)", style="yellow")
            engine = Text("alive", style="green") if s.engine_alive else Text("-", style="dim")
        best = fmt.number(s.best) + ("" if short else f" {s.objective}") if s.best is not None else "-"
        return (s.name, stage, status, best, engine, counts_text(dict(s.counts), short))

    @on(DataTable.RowSelected, "#studies")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one("#studies", DataTable)
        if not self._ids or table.cursor_row < 0:
            return
        study_id = self._ids[table.cursor_row]
        row = self.hpotui.reader.study(study_id)
        self.hpotui.open_study(study_id, row.name if row else "")

    def action_noop(self) -> None:
        pass
