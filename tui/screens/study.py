"""The study screen: trials table on top, the highlighted trial's reason and curves (or compare / GPU /
health / parameters) below, two header lines and one message line.

How it stays light with a big study and a busy engine (the dolphie pattern): a 1 s timer asks
for a refresh; a refresh is one thread worker that first reads ``PRAGMA data_version`` and
re-queries only when the file changed (or the user changed what is shown). A new refresh is
never started while one runs: requests made meanwhile are merged and served right after.
Charts are built inside that worker (plotext's figure is global: one builder at a time), sized
to the widgets measured just before it started. The engine's death changes nothing in the file,
so the tick also asks the process table (microseconds) whether the engine still lives.

Every key that acts on the engine writes a command row from a worker (:mod:`tui.actions`)
and shows the engine's acknowledgement in the message line; ``m`` shows every message in full.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input, Static

from ...engine.database.records import LIVE_STATUSES, CommandResult, TrialStatus
from ...engine.trials.liveness import engine_alive
from .. import state as saved
from ..data import STATUS_FILTERS, StudyReader, StudyView, TrialInfo
from ..header import Shown, header_lines
from ..monitor import Monitor
from ..notices import StudyState
from ..ordering import BASE_SORTS, param_sort, sort_label
from ..reasons import trial_reason
from ..widgets.curve_chart import CurveChart, Series, render_chart
from ..widgets.gpu_panel import GpuPanel, render_resources
from ..widgets.health_panel import HealthPanel, render_health
from ..widgets.param_view import ParamPanel, Scored, render_param_view
from ..widgets.trials_table import TrialsTable
from .dialogs import CloneScreen, ConfirmScreen
from .log import LogScreen
from .messages import MessagesScreen
from .refine import RefineScreen

VIEWS = ("curves", "compare", "gpu", "health", "params")
COMPARE_DEFAULT = 5  # trials overlaid when none is marked: the best few
FORCED_REFRESH_S = 10.0  # run times and ETAs move even when nothing is written


@dataclass(frozen=True)
class Request:
    """What the UI shows right now, copied for the worker (which must not touch widgets)."""

    study_id: int
    table: bool
    detail: bool
    status: str | None
    text: str
    sort: str
    descending: bool
    view: str
    trial_id: int | None
    marked: tuple[int, ...]
    metric: str | None
    log_y: bool
    color: bool
    chart_sizes: tuple[tuple[int, int], ...]
    panel_width: int


@dataclass(frozen=True)
class Loaded:
    view: StudyView | None = None
    detail: tuple[Text, ...] | None = None
    detail_for: tuple[Any, ...] = ()
    metrics: tuple[str, ...] = ()
    sizes: tuple[tuple[int, int], ...] = ()
    reason: Text | None = None
    problem: str = ""


@dataclass
class UiState:
    status_index: int = 0
    sort: str = "number"
    descending: bool = False
    text: str = ""
    view: str = "curves"
    marked: set[int] = field(default_factory=set)
    metric: str | None = None
    log_y: bool = False

    def remembered(self) -> dict[str, Any]:
        return {"sort": self.sort, "descending": self.descending, "status": STATUS_FILTERS[self.status_index],
                "text": self.text, "view": self.view, "log_y": self.log_y, "metric": self.metric}

    def restore(self, values: dict[str, Any]) -> None:
        if "status" in values and values["status"] in STATUS_FILTERS:
            self.status_index = STATUS_FILTERS.index(values["status"])
        if isinstance(values.get("sort"), str):
            self.sort = values["sort"]
        self.descending = bool(values.get("descending", False))
        self.text = str(values.get("text") or "")
        if values.get("view") in VIEWS:
            self.view = values["view"]
        self.log_y = bool(values.get("log_y", False))
        self.metric = values["metric"] if isinstance(values.get("metric"), str) else None


def pick_pair(names: list[str], word: str) -> list[str]:
    """train_X then val_X (then anything else with the word), at most three."""
    found = [n for n in names if word in n.lower()]
    found.sort(key=lambda n: (0 if n.startswith("train") else 1 if n.startswith("val") else 2, n))
    return found[:3]


Detail = tuple[tuple[Text, ...], tuple[str, ...]]


def build_detail(reader: StudyReader, req: Request, view: StudyView | None) -> Detail:
    """The texts of the detail pane for ``req.view`` (and the metric names it found); runs in the worker."""
    if req.view == "gpu":
        return (render_resources(reader.resources(), req.panel_width),), ()
    study = view.study if view else reader.study(req.study_id)
    if req.view == "health":
        warnings = study.warnings if study is not None else ()
        return (render_health(warnings, reader.flags(req.study_id), req.panel_width),), ()
    if study is None:
        return (Text(), Text()), ()
    if req.view == "params":
        return _params_detail(reader, req, study)
    if req.view == "compare":
        return _compare(reader, req, view, study)
    return _curves_detail(reader, req)


def _params_detail(reader: StudyReader, req: Request, study: Any) -> Detail:
    plan = reader.plan(study)
    scored = [Scored(n, p, v) for n, p, v in reader.scored_numbers(study)]
    pareto: list[tuple[int, tuple[float, float]]] = []
    if len(plan.objectives) >= 2:
        pareto = [(n, (v[0], v[1])) for n, v in reader.final_values(study, [m for m, _ in plan.objectives[:2]])]
    text = render_param_view(study.id, plan, study.objective_metric, study.objective_mode, scored,
                             req.panel_width - 4, req.color, pareto)
    return (text,), ()


def chart_groups(names: list[str], metric: str | None) -> list[tuple[str, list[str]]]:
    """The two charts of a trial: losses and accuracies, the chosen metric in the second, or the first two."""
    groups = [("loss", pick_pair(names, "loss")), ("accuracy", pick_pair(names, "acc"))]
    if metric and all(metric not in g for _, g in groups):
        groups[1] = (metric, [metric])
    if not groups[0][1] and not groups[1][1]:
        groups = [(n, [n]) for n in names[:2]] or groups
    return groups


def _curves_detail(reader: StudyReader, req: Request) -> Detail:
    if req.trial_id is None or req.trial_id < 0:
        empty = Text("no trial selected" if req.trial_id is None else "a queued clone: no curves yet", style="dim")
        return (empty, Text()), ()
    names = reader.metric_names([req.trial_id])
    cutoffs = reader.cutoffs(req.trial_id)
    charts = []
    for (title, group), (w, h) in zip(chart_groups(names, req.metric), req.chart_sizes):
        series = [Series(n, *_xy(reader.curve(req.trial_id, n, 2 * w))) for n in group]
        charts.append(render_chart(series, w, h, title=title, log_y=req.log_y, cutoffs=cutoffs, color=req.color))
    while len(charts) < 2:
        charts.append(Text())
    return tuple(charts), tuple(names)


def compared_trials(req: Request, view: StudyView | None, mode: str) -> list[int]:
    """The marked trials, or the best few when none is marked."""
    marked = [t for t in req.marked if t > 0]
    if marked or view is None:
        return marked
    scored = [t for t in view.trials if t.best is not None and not t.pending]
    scored.sort(key=lambda t: t.best or 0.0, reverse=mode == "max")
    return [t.id for t in scored[:COMPARE_DEFAULT]]


def _compare(reader: StudyReader, req: Request, view: StudyView | None, study: Any) -> Detail:
    trial_ids = compared_trials(req, view, study.objective_mode)
    metric = req.metric or study.objective_metric
    w, h = req.chart_sizes[0]
    numbers = {t.id: t.number for t in view.trials} if view else {}
    series = [Series(f"#{numbers.get(tid, tid)}", *_xy(reader.curve(tid, metric, 2 * w))) for tid in trial_ids[:8]]
    which = "marked" if req.marked else "best"
    chart = render_chart(series, w, h, title=f"compare {metric} ({which})", log_y=req.log_y, color=req.color,
                         empty="no trial to compare: mark trials with space")
    return (chart,), tuple(reader.metric_names(trial_ids[:1]))


def _xy(curve: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return curve.steps, curve.values


def finished_best(trials: tuple[TrialInfo, ...], mode: str) -> TrialInfo | None:
    """The best finished trial: what "the best so far changed" is about (running trials move every step)."""
    done = [t for t in trials if not t.is_live and not t.pending and t.best is not None and math.isfinite(t.best)]
    if not done:
        return None
    return (max if mode == "max" else min)(done, key=lambda t: t.best or 0.0)


def sort_keys(params: tuple[str, ...]) -> list[str]:
    """What ``o`` cycles through: every column of the table, parameters included."""
    return [*BASE_SORTS[:2], *(param_sort(p) for p in params), *BASE_SORTS[2:]]


class StudyScreen(Screen[None]):
    TITLE_TEXT = "study screen"
    BINDINGS = [
        Binding("s", "stop_trial", "Stop", id="stop_trial", tooltip="stop the highlighted trial (asks y/n)"),
        Binding("S", "stop_study", "Stop study", id="stop_study", show=False,
                tooltip="stop the whole study: running trials stop, no new ones (asks y/n)"),
        Binding("p", "toggle_launching", "Pause", id="toggle_launching",
                tooltip="pause / resume launching new trials (running ones go on)"),
        Binding("P", "toggle_trial", "Pause trial", id="toggle_trial", show=False,
                tooltip="pause / resume the highlighted trial (SIGSTOP / SIGCONT)"),
        Binding("R", "resume_study", "Resume", id="resume_study", show=False,
                tooltip="the engine is gone: run `hpotui resume` in the background"),
        Binding("c", "clone", "Clone", id="clone", show=False, tooltip="queue a copy of the highlighted trial with edited params"),
        Binding("plus", "parallel(1)", "+par", id="more_parallel", show=False, tooltip="raise max_parallel by one"),
        Binding("minus", "parallel(-1)", "-par", id="less_parallel", show=False, tooltip="lower max_parallel by one"),
        Binding("r", "refine", "Refine", id="refine", show=False, tooltip="refine the ranges and launch the next stage"),
        Binding("space", "mark", "Mark", id="mark", show=False, tooltip="mark / unmark the trial for compare"),
        Binding("v", "view('compare')", "Compare", id="compare", show=False,
                tooltip="compare view: val curves of marked trials (the best ones if none marked)"),
        Binding("t", "view('curves')", "Curves", id="curves", show=False, tooltip="curves of the highlighted trial"),
        Binding("g", "view('gpu')", "GPU", id="gpu", show=False, tooltip="GPU panel: utilisation, memory, who sits where"),
        Binding("h", "view('health')", "Health", id="health", show=False,
                tooltip="the study's warnings, then health flags with hints"),
        Binding("a", "view('params')", "Params", id="params",
                tooltip="parameter view: objective against each parameter, importances, Pareto front"),
        Binding("l,enter", "log", "Log", id="log", tooltip="the highlighted trial's log (tail, follow)"),
        Binding("L", "log_y", "Log-y", id="log_y", show=False, tooltip="toggle a logarithmic y axis"),
        Binding("n", "cycle_metric", "Metric", id="cycle_metric", show=False,
                tooltip="cycle the metric shown in compare (and in the second chart)"),
        Binding("slash", "search", "Search", id="search",
                tooltip="search: trial number (#12), status or parameter text (lr=0.01); Enter keeps, Esc clears"),
        Binding("f", "filter", "Filter", id="filter", show=False, tooltip="cycle the status filter"),
        Binding("F", "reset_filter", "Reset filter", id="reset_filter", show=False,
                tooltip="reset the status filter and the search"),
        Binding("o", "sort", "Sort", id="sort", show=False, tooltip="sort by the next column (or click a header)"),
        Binding("O", "reverse", "Reverse", id="reverse", show=False, tooltip="reverse the sort order"),
        Binding("m", "messages", "Messages", id="messages", tooltip="every message of this session, in full"),
        Binding("escape", "back", "Back", id="back", show=False, tooltip="back to the study list"),
    ]

    def __init__(self, study_id: int, study_name: str = "") -> None:
        super().__init__()
        self.study_id = study_id
        self.study_name = study_name
        self.ui = UiState()
        self.view: StudyView | None = None
        self.trials: dict[int, TrialInfo] = {}
        self.metric_names: tuple[str, ...] = ()
        self._version: int | None = None
        self._busy = False
        self._want_table = True
        self._want_detail = True
        self._pending = False
        self._last_forced = 0.0
        self._repin = True
        self._said_state_problem = False
        self._params_for = -1  # finished trials the parameter view was last drawn for
        self._warned: set[str] | None = None  # the engine's warnings already put in the message history

    @property
    def hpotui(self) -> Monitor:
        """The running interface, as the screens know it (tui.monitor; the app is not imported)."""
        return self.app  # type: ignore[return-value]

    # -- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="study-header")
        yield TrialsTable(id="trials")
        with ContentSwitcher(initial="curves", id="detail"):
            with Vertical(id="curves"):
                yield Static("", id="reason")
                with Horizontal(id="charts"):
                    yield CurveChart(id="loss-chart")
                    yield CurveChart(id="acc-chart")
            yield CurveChart(id="compare")
            with VerticalScroll(id="gpu"):
                yield GpuPanel(id="gpu-panel")
            with VerticalScroll(id="health"):
                yield HealthPanel(id="health-panel")
            with VerticalScroll(id="params"):
                yield ParamPanel(id="params-panel")
        yield Input(placeholder="search: #12, running, lr=0.01, adam … (Enter keeps, Esc clears)", id="search-box")
        yield Static("", id="message")
        yield Footer()

    @property
    def table(self) -> TrialsTable:
        return self.query_one("#trials", TrialsTable)

    def on_mount(self) -> None:
        if self.study_name:
            self.ui.restore(saved.load(self.hpotui.db_path, self.study_name))
        self.query_one("#detail", ContentSwitcher).current = self.ui.view
        self.query_one("#search-box", Input).display = False
        self.table.focus()
        self.set_interval(self.hpotui.refresh_s, self.poll)
        self.request(table=True, detail=True)

    def on_resize(self) -> None:
        self.request(detail=True)

    # -- refresh ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """The 1 s tick: a version check and an engine liveness check on the UI thread, a worker only on change."""
        now = time.monotonic()
        view = self.view
        if view is not None and view.alive and not engine_alive(view.study):
            self.request(table=True, detail=True)  # the engine died: nothing in the file says so
            return
        moving = view is not None and (bool(view.counts.get(TrialStatus.RUNNING)) and view.alive)
        if moving and now - self._last_forced >= FORCED_REFRESH_S:
            self._last_forced = now
            self.request(table=True)
            return
        version = self.hpotui.reader.data_version_now()
        if version is not None and version != self._version:
            self.request()

    def request(self, *, table: bool = False, detail: bool = False) -> None:
        if not self.is_attached:  # a timer or message that fired after the screen was left
            return
        self._want_table |= table
        self._want_detail |= detail
        if self._busy:
            self._pending = True
            return
        self._busy = True
        self._pending = False
        self._load(self._snapshot_request())
        self._want_table = self._want_detail = False

    def _snapshot_request(self) -> Request:
        if self.ui.view == "curves":
            sizes = tuple(self.query_one(f"#{i}", CurveChart).chart_size() for i in ("loss-chart", "acc-chart"))
        else:
            sizes = (self.query_one("#compare", CurveChart).chart_size(),)
        return Request(study_id=self.study_id, table=self._want_table, detail=self._want_detail,
                       status=STATUS_FILTERS[self.ui.status_index], text=self.ui.text, sort=self.ui.sort,
                       descending=self.ui.descending, view=self.ui.view, trial_id=self.table.trial_id,
                       marked=tuple(sorted(self.ui.marked)), metric=self.ui.metric, log_y=self.ui.log_y,
                       color=not self.app.no_color, chart_sizes=sizes, panel_width=self.size.width)

    @work(thread=True, group="study-refresh")
    def _load(self, req: Request) -> None:
        reader = self.hpotui.reader
        try:
            loaded = self._read(reader, req)
            if loaded is None:
                self.app.call_from_thread(self._gone)
            else:
                self.app.call_from_thread(self._apply, loaded)
        except Exception as exc:  # a locked or vanished file must not kill the interface
            self.app.call_from_thread(self.say, f"could not read {reader.path}: {exc}", "error")
        finally:
            self.app.call_from_thread(self._done)

    def _read(self, reader: StudyReader, req: Request) -> Loaded | None:
        version = reader.data_version()
        changed = version != self._version
        view = None
        if changed or req.table:
            view = reader.study_view(req.study_id, status=req.status, text=req.text, sort=req.sort,
                                     descending=req.descending)
            if view is None:
                return None
            self._version = view.data_version
            if req.trial_id is None and view.trials:  # first load: curves of the first row at once
                req = replace(req, trial_id=view.trials[0].id)
        current = view or self.view
        if not (req.detail or changed and self._detail_may_change(req, current)):
            return Loaded(view=view, sizes=req.chart_sizes)
        return self._detail(reader, req, view, current)

    def _detail(self, reader: StudyReader, req: Request, view: StudyView | None, current: StudyView | None) -> Loaded:
        reason = self._reason(reader, req, current)
        try:
            detail, names = build_detail(reader, req, current)
        except Exception as exc:  # a chart that cannot be drawn: say so there, never keep the last trial's charts
            problem = Text(f"could not draw this view: {exc}", style="bold red")
            return Loaded(view=view, detail=(problem, Text()), detail_for=(req.view, req.trial_id),
                          sizes=req.chart_sizes, reason=reason, problem=f"could not draw the {req.view} view: {exc}")
        return Loaded(view=view, detail=detail, detail_for=(req.view, req.trial_id), metrics=names,
                      sizes=req.chart_sizes, reason=reason)

    def _detail_may_change(self, req: Request, view: StudyView | None) -> bool:
        """Whether new rows can change the pane below: a finished trial's curves never do, the parameter
        view only when a trial finished; redrawing them anyway each second was most of the live CPU."""
        if view is None:
            return True
        if req.view == "curves":
            return self._trial_may_change(req.trial_id, view)
        if req.view == "params":
            finished = view.total - sum(view.counts.get(s, 0) for s in LIVE_STATUSES)
            if finished == self._params_for:
                return False
            self._params_for = finished
        return True

    def _trial_may_change(self, trial_id: int | None, view: StudyView) -> bool:
        trial = next((t for t in view.trials if t.id == trial_id), None)
        before = self.trials.get(trial_id or 0)  # live until this read: draw its last points
        return trial is None or before is None or trial.is_live or before.is_live

    def _reason(self, reader: StudyReader, req: Request, view: StudyView | None) -> Text | None:
        if req.view != "curves" or view is None:
            return None
        trial = next((t for t in view.trials if t.id == req.trial_id), None) or self.trials.get(req.trial_id or 0)
        if trial is None:
            return Text()
        failure = reader.failure(trial.id) if trial.status == TrialStatus.FAILED else None
        return trial_reason(trial, failure, view.study.name, req.panel_width, _not_read(reader, trial))

    def _done(self) -> None:
        self._busy = False
        if self._pending or self._want_table or self._want_detail:
            self.request()

    def _gone(self) -> None:
        self.say("this study is no longer in the database", "error")

    def _apply(self, loaded: Loaded) -> None:
        if not self.is_attached:  # the user left the screen while its read ran: nothing to draw on
            return
        if loaded.view is not None:
            self.view = loaded.view
            self.study_name = loaded.view.study.name
            self.trials = {t.id: t for t in loaded.view.trials}
            self.table.show(loaded.view.trials, loaded.view.plan.params or _param_names(loaded.view.trials),
                            loaded.view.max_step, self.ui.marked, sort=(self.ui.sort, self.ui.descending),
                            pin=not self._repin)
            self._repin = False
            self._header()
            self._notice(loaded.view)
            self._new_warnings(loaded.view)
        if loaded.metrics:
            self.metric_names = loaded.metrics
        if loaded.problem:
            self.say(loaded.problem, "error")
        if loaded.reason is not None:
            self.query_one("#reason", Static).update(loaded.reason)
        if loaded.detail is not None:
            self._show_detail(loaded)

    def _show_detail(self, loaded: Loaded) -> None:
        view_name, trial_id = loaded.detail_for
        detail = loaded.detail or ()
        if view_name == "curves":
            self.query_one("#loss-chart", CurveChart).show(detail[0], loaded.sizes[0])
            self.query_one("#acc-chart", CurveChart).show(detail[1], loaded.sizes[-1])
        elif view_name == "compare":
            self.query_one("#compare", CurveChart).show(detail[0], loaded.sizes[0])
        elif view_name == "gpu":
            self.query_one("#gpu-panel", GpuPanel).update(detail[0])
        elif view_name == "health":
            self.query_one("#health-panel", HealthPanel).update(detail[0])
        elif view_name == "params":
            self.query_one("#params-panel", ParamPanel).update(detail[0])
        if view_name != self.ui.view or (view_name == "curves" and trial_id != self.table.trial_id):
            self._want_detail = True  # the user moved on while this was built

    def _notice(self, v: StudyView) -> None:
        s = v.study
        best = finished_best(v.trials, s.objective_mode)
        state = StudyState(name=s.name, status=s.status, engine_alive=v.alive, launching_paused=s.launching_paused,
                           pause_reason=s.pause_reason, best=best.best if best else None,  # finished trials only
                           best_trial=best.number if best else None, end_reason=v.end_reason,
                           mode=s.objective_mode, storm_paused=v.storm_paused)
        self.hpotui.observe(s.id, state)

    def _new_warnings(self, v: StudyView) -> None:
        """Each engine warning goes into the ``m`` history once; one that appears while watching is also said.

        Those already there when the screen opened only go to the history: the header counts them
        and ``h`` lists them, and the message line keeps what the user did last.
        """
        first = self._warned is None
        warned = self._warned if self._warned is not None else set()
        for warning in v.warnings:
            if warning in warned:
                continue
            warned.add(warning)
            if first:
                stamp = time.strftime("%H:%M:%S", time.localtime(self.hpotui.reader.clock()))
                self.hpotui.remember(Text(f"{stamp} warning: {warning}", style="yellow"))
            else:
                self.say(f"warning: {warning}", "warning")
        self._warned = warned

    def shown(self) -> Shown:
        return Shown(status=STATUS_FILTERS[self.ui.status_index], text=self.ui.text, sort=self.ui.sort,
                     descending=self.ui.descending, view=self.ui.view)

    def _header(self) -> None:
        if self.view is not None:
            self.query_one("#study-header", Static).update(header_lines(self.view, self.shown(),
                                                                        max(20, self.size.width - 2)))

    @on(CurveChart.Resized)
    def _chart_resized(self) -> None:
        self.request(detail=True)

    @on(TrialsTable.Highlighted)
    def _highlighted(self) -> None:
        if self.ui.view == "curves":
            self.request(detail=True)

    @on(TrialsTable.SortRequested)
    def _header_clicked(self, event: TrialsTable.SortRequested) -> None:
        if event.sort == self.ui.sort:
            self.ui.descending = not self.ui.descending
        else:
            self.ui.sort, self.ui.descending = event.sort, False
        self._changed_view(f"sorted by {sort_label(self.ui.sort)}{' (reversed)' if self.ui.descending else ''}")

    # -- messages -------------------------------------------------------------------------------------
    def say(self, text: str, level: str = "info") -> None:
        style = {"error": "bold red", "warning": "yellow"}.get(level, "")
        stamp = time.strftime("%H:%M:%S", time.localtime(self.hpotui.reader.clock()))
        line = Text(f"{stamp} {text}", style=style)
        self.hpotui.remember(line)
        shown = line.copy()
        shown.no_wrap, shown.overflow = True, "ellipsis"
        room = max(10, self.size.width - 2)
        if shown.cell_len > room:
            shown.truncate(room - 12, overflow="ellipsis")
            shown.append(" (m: all)", style="dim")
        self.query_one("#message", Static).update(shown)

    def highlighted(self) -> TrialInfo | None:
        tid = self.table.trial_id
        return self.trials.get(tid) if tid is not None else None

    def send(self, action: str, *, trial_number: int | None = None, args: dict[str, Any] | None = None,
             note: str = "") -> None:
        self.say(note or f"{action.replace('_', ' ')}: sent, waiting for the engine ...")
        self._send(action, trial_number, args)

    @work(thread=True, group="commands")
    def _send(self, action: str, trial_number: int | None, args: dict[str, Any] | None) -> None:
        try:
            result = self.hpotui.commander.send(self.study_id, action, trial_number=trial_number, args=args)
        except Exception as exc:
            result = CommandResult.refused(f"{action} failed: {exc}")
        # severity from the acknowledgement's ok flag, never from its words (ok None: not answered yet)
        self.app.call_from_thread(self.say, result.message, "warning" if result.ok is False else "info")
        self.app.call_from_thread(self.request, table=True, detail=True)

    def _engine_needed(self, what: str) -> bool:
        """True when an engine runs the study; otherwise says what to do instead (and returns False)."""
        v = self.view
        if v is None:
            return False
        if v.alive:
            return True
        name = v.study.name
        if v.engine_died:
            self.say(f"{what}: the engine of {name} is gone; R resumes it (`hpotui resume {name}`)", "warning")
        else:
            self.say(f"study {name} is {v.study.status}: nothing runs it ({what}); r refines a next stage",
                     "warning")
        return False

    # -- actions ---------------------------------------------------------------------------------------
    def action_stop_trial(self) -> None:
        trial = self.highlighted()
        if trial is None:
            self.say("no trial highlighted", "warning")
            return
        if trial.pending:
            self.say(f"this clone of #{trial.clone_of} has not started; it starts when launching resumes", "warning")
            return
        if not trial.is_live:
            self.say(f"trial {trial.number} is {trial.shown_status}: nothing to stop", "warning")
            return
        number, params = trial.number, _params_text(trial)

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop_trial", trial_number=number, note=f"stopping trial {number} ...")
            else:
                self.say("stop cancelled")

        self.app.push_screen(_confirm(f"Stop trial {number}? ({trial.shown_status}; {params})\n"
                                      "Its curves and logs are kept."), answered)

    def action_stop_study(self) -> None:
        v = self.view
        name = v.study.name if v else str(self.study_id)
        if v is not None and not v.alive and not any(t.is_live for t in v.trials):
            if v.study.status in LIVE_STATUSES:
                self.say(f"study {name}: its engine is gone and no trial runs; R resumes it", "warning")
            else:
                self.say(f"study {name} is {v.study.status}: nothing to stop", "warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop_study", note=f"stopping study {name} ...")
            else:
                self.say("stop cancelled")

        self.app.push_screen(_confirm(f"Stop study {name}? Running trials stop and no new trial starts."),
                             answered)

    def action_toggle_launching(self) -> None:
        if not self._engine_needed("launching"):
            return
        paused = self.view is not None and self.view.study.launching_paused
        self.send("resume_launching" if paused else "pause_launching")

    def action_toggle_trial(self) -> None:
        trial = self.highlighted()
        if trial is None or trial.shown_status not in (TrialStatus.RUNNING, "paused"):
            self.say("highlight a running trial to pause or resume it", "warning")
            return
        if not self._engine_needed("pausing a trial"):
            return
        self.send("resume_trial" if trial.paused else "pause_trial", trial_number=trial.number)

    def action_resume_study(self) -> None:
        v = self.view
        if v is None:
            return
        if v.alive:
            self.say(f"study {v.study.name} is already run by its engine", "warning")
            return
        if not v.engine_died:
            self.say(f"study {v.study.name} is {v.study.status}: nothing to resume; r refines the next stage",
                     "warning")
            return
        self.say(f"resuming {v.study.name} in the background ...")
        self._resume(v.study.name)

    @work(thread=True, group="commands")
    def _resume(self, name: str) -> None:
        try:
            result = self.hpotui.commander.resume(name)
        except Exception as exc:
            result = CommandResult.refused(f"resume failed: {exc}")
        self.app.call_from_thread(self.say, result.message, "warning" if result.ok is False else "info")
        self.app.call_from_thread(self.request, table=True, detail=True)

    def action_parallel(self, delta: int) -> None:
        if self.view is None or not self._engine_needed("max_parallel"):
            return
        current = self.view.study.max_parallel or self.view.plan.max_parallel or 1
        value = max(1, current + delta)
        if value == current:
            self.say(f"max_parallel is already {current}", "warning")
            return
        self.send("set_max_parallel", args={"value": value}, note=f"max_parallel {current} → {value} ...")

    def action_clone(self) -> None:
        trial = self.highlighted()
        if trial is None or trial.pending:
            self.say("highlight a trial to clone", "warning")
            return
        if not self._engine_needed("clone"):
            return
        number = trial.number
        plan = self.view.plan if self.view else None

        def done(result: tuple[dict[str, Any], str] | None) -> None:
            if result is None:
                self.say("clone cancelled")
                return
            changed, note = result
            self.send("clone_trial", trial_number=number, args={"params": changed},
                      note=f"cloning trial {number} ..." + (f" ({note})" if note else ""))

        self.app.push_screen(CloneScreen(number, trial.params, plan.ranges if plan else {}), done)

    def action_refine(self) -> None:
        if self.view is None:
            return

        def done(result: str | None) -> None:
            if result:
                self.say(result)

        self.app.push_screen(RefineScreen(self.view.study, self.view.plan), done)

    def action_mark(self) -> None:
        tid = self.table.trial_id
        if tid is None or tid < 0:
            return
        self.ui.marked ^= {tid}
        number = self.trials[tid].number if tid in self.trials else tid
        self.say(f"trial {number} {'marked' if tid in self.ui.marked else 'unmarked'} "
                 f"({len(self.ui.marked)} marked; v compares them)")
        self.request(table=True, detail=self.ui.view == "compare")
        self.table.move_cursor(row=self.table.cursor_row + 1)

    def action_view(self, name: str) -> None:
        if self.ui.view == name and name != "curves":
            name = "curves"  # the same key again goes back to the curves
        self.ui.view = name
        self.query_one("#detail", ContentSwitcher).current = name
        self._remember()
        self._header()
        self.call_after_refresh(self.request, detail=True)

    def action_log(self) -> None:
        trial = self.highlighted()
        if trial is None or trial.pending:
            self.say("highlight a started trial to read its log", "warning")
            return
        self.app.push_screen(LogScreen(trial.number, trial.stdout_path, trial.stderr_path,
                                       live=trial.shown_status in (TrialStatus.RUNNING, "paused", "unwatched"),
                                       stream="stderr" if trial.status == TrialStatus.FAILED else "stdout"))

    def action_log_y(self) -> None:
        self.ui.log_y = not self.ui.log_y
        self._remember()
        self.say("log y axis" if self.ui.log_y else "linear y axis")
        self.request(detail=True)

    def action_cycle_metric(self) -> None:
        names = list(self.metric_names) or ([self.view.study.objective_metric] if self.view else [])
        if not names:
            return
        current = self.ui.metric or (self.view.study.objective_metric if self.view else names[0])
        index = names.index(current) + 1 if current in names else 0
        self.ui.metric = names[index % len(names)]
        self._remember()
        self.say(f"metric: {self.ui.metric}")
        self.request(detail=True)

    def action_filter(self) -> None:
        self.ui.status_index = (self.ui.status_index + 1) % len(STATUS_FILTERS)
        self._changed_view(f"filter: {STATUS_FILTERS[self.ui.status_index] or 'all trials'}")

    def action_reset_filter(self) -> None:
        self.ui.status_index, self.ui.text = 0, ""
        self.query_one("#search-box", Input).value = ""
        self._changed_view("filter reset: all trials")

    def action_search(self) -> None:
        box = self.query_one("#search-box", Input)
        box.display = True
        box.value = self.ui.text
        box.cursor_position = len(box.value)
        box.focus()

    @on(Input.Changed, "#search-box")
    def _search_typed(self, event: Input.Changed) -> None:
        if event.input.display and event.value != self.ui.text:
            self.ui.text = event.value
            self._changed_view("", say=False)

    @on(Input.Submitted, "#search-box")
    def _search_kept(self) -> None:
        self._close_search()
        self.say(f"search: {self.ui.text}" if self.ui.text else "search cleared")

    def _close_search(self) -> None:
        box = self.query_one("#search-box", Input)
        box.display = False
        self.table.focus()

    def action_sort(self) -> None:
        keys = sort_keys(self.view.plan.params if self.view else ())
        index = keys.index(self.ui.sort) + 1 if self.ui.sort in keys else 0
        self.ui.sort, self.ui.descending = keys[index % len(keys)], False
        self._changed_view(f"sorted by {sort_label(self.ui.sort)} (O reverses)")

    def action_reverse(self) -> None:
        self.ui.descending = not self.ui.descending
        self._changed_view(f"sorted by {sort_label(self.ui.sort)}{' (reversed)' if self.ui.descending else ''}")

    def _changed_view(self, message: str, say: bool = True) -> None:
        """The user changed what the table shows: the highlighted trial follows, and it is remembered."""
        self._repin = True
        self._remember()
        if say:
            self.say(message)
        self._header()
        self.request(table=True, detail=True)

    def _remember(self) -> None:
        if not self.study_name:
            return
        problem = saved.save(self.hpotui.db_path, self.study_name, self.ui.remembered())
        if problem and not self._said_state_problem:
            self._said_state_problem = True
            self.say(problem, "warning")

    def action_messages(self) -> None:
        self.app.push_screen(MessagesScreen(self.hpotui.messages))

    def action_back(self) -> None:
        box = self.query_one("#search-box", Input)
        if box.display:
            self.ui.text = ""
            box.value = ""
            self._close_search()
            self._changed_view("search cleared")
            return
        self.app.pop_screen()

    def on_screen_resume(self) -> None:
        self.request(table=True, detail=True)


def _not_read(reader: StudyReader, trial: TrialInfo) -> list[str]:
    """What the engine could not read from a finished trial (it judges that only when the trial ends)."""
    return reader.not_read(trial.id) if trial.finished_at is not None and not trial.pending else []


def _confirm(question: str) -> Screen[bool]:
    return ConfirmScreen(question)


def _params_text(trial: TrialInfo) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()]
    return " ".join(parts) or "no parameters"


def _param_names(trials: tuple[TrialInfo, ...]) -> tuple[str, ...]:
    for t in trials:
        if t.params:
            return tuple(t.params)
    return ()
