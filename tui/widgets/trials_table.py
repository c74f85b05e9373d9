"""The trials table: a virtual list that draws only the rows on screen, so 10,000 trials cost nothing.

Why not Textual's DataTable: it keeps every cell of every row and measures them all; filling
it with 10,000 trials took seconds on the UI thread. This widget uses the Line API
(``ScrollView.render_line``): it holds the ordered trials and builds the cells of a row only
when the row is drawn, caching them per trial object (the data layer returns the same object
for a trial that did not change). Columns have fixed widths; parameters get the room that is
left after id, status, objective, step, flags, GPU, run time and ETA, so 80 columns still show
what matters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import format as fmt
from ..data import TrialInfo
from ..ordering import param_sort, pin_row

PARAM_MIN, PARAM_MAX = 8, 20
FLAGS_MIN, FLAGS_MAX = 7, 30
GAP = 1

Cells = tuple[Text, ...]


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    sort: str | None = None  # the sort key a click on the header asks for


CORE_HEAD = (Column("id", 5, "number"), Column("status", 10, "status"))
CORE_TAIL = (Column("last", 7, "last"), Column("best", 7, "best"), Column("step", 7, "step"),
             Column("flags", FLAGS_MIN, "flags"), Column("gpu", 3, "gpu"), Column("run", 6, "run"),
             Column("eta", 6, "eta"))


def layout(width: int, params: Sequence[str], flags_wanted: int = FLAGS_MIN) -> tuple[Column, ...]:
    """Core columns always; then as many parameter columns as fit, then the room left widens flags and params.

    At 80 columns that is two or three parameters and short badges; at 200 every parameter at
    full width and the flags in words.
    """
    fixed = sum(c.width + GAP for c in (*CORE_HEAD, *CORE_TAIL))
    room = max(0, width - fixed)
    count = min(len(params), room // (PARAM_MIN + GAP))
    spare = room - count * (PARAM_MIN + GAP)
    flags_width = FLAGS_MIN + min(spare, max(0, min(FLAGS_MAX, flags_wanted) - FLAGS_MIN))
    spare -= flags_width - FLAGS_MIN
    per = min(PARAM_MAX - PARAM_MIN, spare // count) if count else 0
    shown = tuple(Column(p, PARAM_MIN + per, param_sort(p)) for p in params[:count])
    tail = tuple(replace(c, width=flags_width) if c.name == "flags" else c for c in CORE_TAIL)
    return (*CORE_HEAD, *shown, *tail)


def trial_cells(t: TrialInfo, params: Sequence[str], max_step: float | None, marked: bool,
                flags_width: int = FLAGS_MIN) -> Cells:
    """One row as text cells, in column order."""
    number = "new" if t.pending else str(t.number)
    ident = Text(("*" if marked else " ") + number, style="bold" if marked else ("dim" if t.pending else ""))
    return (ident, fmt.status(t.shown_status),
            *(Text(fmt.param(t.params.get(p, ""))) for p in params),
            Text(fmt.number(t.last)), Text(fmt.number(t.best)), Text(fmt.step(t.last_step, max_step)),
            fmt.badges(t.flags, flags_width, t.clone_of), Text(t.gpus or "-"), Text(fmt.duration(t.run_s)),
            Text(fmt.duration(t.eta_s)))


class TrialsTable(ScrollView, can_focus=True):
    """Trials in order; ``trial_id`` is the highlighted one. Posts ``Highlighted`` and ``SortRequested``."""

    DEFAULT_CSS = """
    TrialsTable { height: 1fr; overflow-x: hidden; scrollbar-size-vertical: 1; }
    TrialsTable > .trials-table--header { text-style: bold; background: $panel; }
    TrialsTable > .trials-table--cursor { background: $accent 40%; }
    TrialsTable:focus > .trials-table--cursor { background: $accent; color: $text; }
    """
    COMPONENT_CLASSES = {"trials-table--header", "trials-table--cursor"}
    BINDINGS = [Binding("up,k", "move(-1)", show=False), Binding("down,j", "move(1)", show=False),
                Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False),
                Binding("home", "jump(0)", show=False), Binding("end", "jump(-1)", show=False)]

    class Highlighted(Message):
        def __init__(self, trial_id: int | None) -> None:
            super().__init__()
            self.trial_id = trial_id

    class SortRequested(Message):
        def __init__(self, sort: str) -> None:
            super().__init__()
            self.sort = sort

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._trials: list[TrialInfo] = []
        self._order: list[int] = []
        self._params: tuple[str, ...] = ()
        self._marked: set[int] = set()
        self._max_step: float | None = None
        self._made: dict[int, tuple[TrialInfo, bool, int, Cells]] = {}
        self._cursor = 0
        self._flags_wanted = FLAGS_MIN
        self._sort: tuple[str, bool] = ("number", False)

    # -- what tests and the screen read -------------------------------------------------------------
    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def row_count(self) -> int:
        return len(self._trials)

    @property
    def trial_id(self) -> int | None:
        return self._order[self._cursor] if 0 <= self._cursor < len(self._order) else None

    @property
    def trial_ids(self) -> list[int]:
        return list(self._order)

    @property
    def columns(self) -> tuple[Column, ...]:
        return layout(self.size.width, self._params, self._flags_wanted)

    def get_row_at(self, index: int) -> Cells:
        return self._shown_cells(self._trials[index], self.columns)

    def header_text(self) -> str:
        return "".join(c.plain for c in self._header_cells(self.columns))

    # -- data ----------------------------------------------------------------------------------------
    def show(self, trials: Sequence[TrialInfo], params: Sequence[str], max_step: float | None,
             marked: set[int], *, sort: tuple[str, bool] = ("number", False), pin: bool = True) -> None:
        """New rows; the cursor stays on the same trial, and (``pin``) that trial stays on the same row."""
        keep = self.trial_id
        if tuple(params) != self._params or max_step != self._max_step:
            self._made.clear()
        self._params, self._max_step, self._marked, self._sort = tuple(params), max_step, set(marked), sort
        self._set_rows(trials, keep, pin)
        self.virtual_size = Size(self.size.width, len(self._trials) + 1)
        self._scroll_to_cursor()
        self.refresh()
        if self.trial_id != keep:
            self.post_message(self.Highlighted(self.trial_id))

    def _set_rows(self, trials: Sequence[TrialInfo], keep: int | None, pin: bool) -> None:
        by_id = {t.id: t for t in trials}
        order = [t.id for t in trials]
        self._order = pin_row(order, keep, self._cursor) if pin else order
        self._trials = [by_id[i] for i in self._order]
        self._flags_wanted = max([FLAGS_MIN] + [fmt.badges_width(t.flags, True, t.clone_of) for t in trials[:500]])
        if keep in by_id:
            self._cursor = self._order.index(keep)  # type: ignore[arg-type]
        self._cursor = max(0, min(self._cursor, len(self._order) - 1))

    def _cells(self, t: TrialInfo, flags_width: int) -> Cells:
        is_marked = t.id in self._marked
        made = self._made.get(t.id)
        if made is None or made[0] is not t or made[1] != is_marked or made[2] != flags_width:
            cells = trial_cells(t, self._params, self._max_step, is_marked, flags_width)
            made = self._made[t.id] = (t, is_marked, flags_width, cells)
        return made[3]

    def _shown_cells(self, t: TrialInfo, columns: Sequence[Column]) -> Cells:
        flags_width = next(c.width for c in columns if c.name == "flags")
        cells = self._cells(t, flags_width)
        params = len(columns) - len(CORE_HEAD) - len(CORE_TAIL)
        return (*cells[:len(CORE_HEAD) + params], *cells[len(CORE_HEAD) + len(self._params):])

    def _header_cells(self, columns: Sequence[Column]) -> list[Text]:
        """Column names; the sorted one carries an arrow (▲ ascending as shown, ▼ reversed)."""
        sort, descending = self._sort
        out = []
        for c in columns:
            name = c.name
            if c.sort == sort:
                arrow = "▼" if descending else "▲"
                name = name[:c.width - 1] + arrow
            out.append(Text(name))
        return out

    # -- drawing -------------------------------------------------------------------------------------
    def _line(self, cells: Sequence[Text], columns: Sequence[Column], style: Style | None) -> Strip:
        line = Text(no_wrap=True, overflow="crop")
        for cell, col in zip(cells, columns):
            piece = cell.copy()
            piece.truncate(col.width, overflow="ellipsis", pad=True)
            line.append_text(piece)
            line.append(" " * GAP)
        line.truncate(self.size.width, pad=True)
        if style is not None:
            line.stylize(style)
        segments = list(line.render(self.app.console))
        return Strip(segments, self.size.width)

    def render_line(self, y: int) -> Strip:
        columns = self.columns
        if y == 0:
            return self._line(self._header_cells(columns), columns,
                              self.get_component_rich_style("trials-table--header"))
        index = self.scroll_offset.y + y - 1
        if index >= len(self._trials):
            return Strip([Segment(" " * self.size.width, self.rich_style)], self.size.width)
        cells = self._shown_cells(self._trials[index], columns)
        style = self.get_component_rich_style("trials-table--cursor") if index == self._cursor else None
        return self._line(cells, columns, style)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._trials) + 1)
        self.refresh()

    # -- moving --------------------------------------------------------------------------------------
    def move_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        if row == self._cursor:
            return
        self._cursor = row
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self.trial_id))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False)
        elif self._cursor >= top + visible:
            self.scroll_to(y=self._cursor - visible + 1, animate=False)

    def action_move(self, delta: int) -> None:
        self.move_cursor(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self._cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor(len(self._order) - 1 if row < 0 else row)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = 0
            for col in self.columns:
                if x <= event.x < x + col.width + GAP:
                    if col.sort:
                        self.post_message(self.SortRequested(col.sort))
                    return
                x += col.width + GAP
            return
        self.move_cursor(self.scroll_offset.y + event.y - 1)
