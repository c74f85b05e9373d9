"""The trials table: one row per trial, updated in place so 10,000 rows stay cheap.

Why the diffing: rebuilding a DataTable of 10,000 rows every second would cost the UI thread
hundreds of milliseconds. Rows are keyed by trial id; a refresh compares each row's cells
with what is shown, rewrites only the cells that changed and appends new trials. Only a new
sort order or filter (rows in another order) clears and refills the table, keeping the cursor
on the same trial.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui import format as fmt
from tui.data import TrialInfo

FIXED_COLUMNS = ("id", "status")
TAIL_COLUMNS = ("last", "best", "step", "flags", "gpu", "run", "eta")
MAX_PARAM_COLUMNS = 4

Cells = tuple[object, ...]


def trial_cells(t: TrialInfo, params: Sequence[str], max_step: float | None, marked: bool) -> Cells:
    """The row as shown; plain strings and Rich Text so equality tells whether a row changed."""
    ident = Text(("*" if marked else " ") + str(t.number), style="bold" if marked else "")
    return (ident, fmt.status(t.shown_status),
            *(fmt.param(t.params.get(p, "")) for p in params),
            fmt.number(t.last), fmt.number(t.best), fmt.step(t.last_step, max_step),
            fmt.badges(t.flags), t.gpus or "-", fmt.duration(t.run_s), fmt.duration(t.eta_s))


class TrialsTable(DataTable):
    """A DataTable that knows trials; ``trial_id`` is the highlighted trial's id (or None)."""

    DEFAULT_CSS = "TrialsTable { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._params: tuple[str, ...] | None = None
        self._order: list[int] = []
        self._cells: dict[int, Cells] = {}
        self.column_names: tuple[str, ...] = ()

    @property
    def trial_id(self) -> int | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def trial_ids(self) -> list[int]:
        return list(self._order)

    def _set_columns(self, params: tuple[str, ...]) -> None:
        self.clear(columns=True)
        self._params = params
        self.column_names = (*FIXED_COLUMNS, *params, *TAIL_COLUMNS)
        for name in self.column_names:
            self.add_column(name, key=name)
        self._order, self._cells = [], {}

    def show(self, trials: Sequence[TrialInfo], params: Sequence[str], max_step: float | None,
             marked: set[int]) -> None:
        params = tuple(params[:MAX_PARAM_COLUMNS])
        if params != self._params:
            self._set_columns(params)
        rows = {t.id: trial_cells(t, params, max_step, t.id in marked) for t in trials}
        order = [t.id for t in trials]
        if order[:len(self._order)] == self._order:
            for tid in self._order:
                old, new = self._cells[tid], rows[tid]
                if old != new:
                    for name, a, b in zip(self.column_names, old, new):
                        if a != b:
                            self.update_cell(str(tid), name, b)
            for tid in order[len(self._order):]:
                self.add_row(*rows[tid], key=str(tid))
        else:
            keep = self.trial_id
            self.clear()
            for tid in order:
                self.add_row(*rows[tid], key=str(tid))
            if keep in rows:
                self.move_cursor(row=order.index(keep), animate=False)
        self._order, self._cells = order, rows
