"""The study screen: trials table on top, the highlighted trial's curves (or compare / GPU / health) below.

How it stays light with a big study and a busy engine (the dolphie pattern): a 1 s timer asks
for a refresh; a refresh is one thread worker that first reads ``PRAGMA data_version`` and
re-queries only when the file changed (or the user changed what is shown). A new refresh is
never started while one runs: requests made meanwhile are merged and served right after.
Charts are built inside that worker (plotext's figure is global: one builder at a time), sized
to the widgets measured just before it started.

Every key that acts on the engine writes a command row from a worker (:mod:`tui.actions`)
and shows the engine's acknowledgement in the message line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static

from .. import format as fmt
from ..data import SORT_KEYS, STATUS_FILTERS, StudyReader, StudyView, TrialInfo
from ..widgets.curve_chart import CurveChart, Series, render_chart
from ..widgets.gpu_panel import GpuPanel, render_resources
from ..widgets.health_panel import HealthPanel, render_flags
from ..widgets.trials_table import TrialsTable

if TYPE_CHECKING:
    from ..app import HpotuiApp

VIEWS = ("curves", "compare", "gpu", "health")
COMPARE_DEFAULT = 5  # trials overlaid when none is marked: the best few


@dataclass(frozen=True)
class Request:
    """What the UI shows right now, copied for the worker (which must not touch widgets)."""

    study_id: int
    table: bool
    detail: bool
    status: str | None
    sort: str
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


@dataclass
class UiState:
    status_index: int = 0
    sort_index: int = 0
    view: str = "curves"
    marked: set[int] = field(default_factory=set)
    metric: str | None = None
    log_y: bool = False


def pick_pair(names: list[str], word: str) -> list[str]:
    """train_X then val_X (then anything else with the word), at most three."""
    found = [n for n in names if word in n.lower()]
    found.sort(key=lambda n: (0 if n.startswith("train") else 1 if n.startswith("val") else 2, n))
    return found[:3]


def build_detail(reader: StudyReader, req: Request, view: StudyView | None) -> tuple[tuple[Text, ...], tuple[str, ...]]:
    """The texts of the detail pane for ``req.view``; runs in the worker."""
    width = req.panel_width
    if req.view == "gpu":
        return (render_resources(reader.resources(), width),), ()
    if req.view == "health":
        return (render_flags(reader.flags(req.study_id), width),), ()
    study = view.study if view else reader.study(req.study_id)
    objective = study.objective_metric if study else None
    if req.view == "compare":
        trial_ids = list(req.marked)
        if not trial_ids and view is not None:
            ranked = sorted((t for t in view.trials if t.best is not None), key=lambda t: t.best or 0.0,
                            reverse=study is not None and study.objective_mode == "max")
            trial_ids = [t.id for t in ranked[:COMPARE_DEFAULT]]
        metric = req.metric or objective or "val_loss"
        w, h = req.chart_sizes[0]
        numbers = {t.id: t.number for t in view.trials} if view else {}
        series = [Series(f"#{numbers.get(tid, tid)}", *_xy(reader.curve(tid, metric, 2 * w)))
                  for tid in trial_ids[:8]]
        which = "marked" if req.marked else "best"
        chart = render_chart(series, w, h, title=f"compare {metric} ({which})", log_y=req.log_y, color=req.color,
                             empty="no trial to compare: mark trials with space")
        return (chart,), tuple(reader.metric_names(trial_ids[:1]))
    if req.trial_id is None:
        empty = Text("no trial selected", style="dim")
        return (empty, Text()), ()
    names = reader.metric_names([req.trial_id])
    cutoffs = reader.cutoffs(req.trial_id)
    groups = [("loss", pick_pair(names, "loss")), ("accuracy", pick_pair(names, "acc"))]
    if req.metric and all(req.metric not in g for _, g in groups):
        groups[1] = (req.metric, [req.metric])
    if not groups[0][1] and not groups[1][1]:
        groups = [(n, [n]) for n in names[:2]] or groups
    charts = []
    for (title, group), (w, h) in zip(groups, req.chart_sizes):
        series = [Series(n, *_xy(reader.curve(req.trial_id, n, 2 * w))) for n in group]
        charts.append(render_chart(series, w, h, title=title, log_y=req.log_y, cutoffs=cutoffs, color=req.color))
    while len(charts) < 2:
        charts.append(Text())
    return tuple(charts), tuple(names)


def _xy(curve: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return curve.steps, curve.values


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
        Binding("c", "clone", "Clone", id="clone", show=False, tooltip="queue a copy of the highlighted trial with edited params"),
        Binding("plus", "parallel(1)", "+par", id="more_parallel", show=False, tooltip="raise max_parallel by one"),
        Binding("minus", "parallel(-1)", "-par", id="less_parallel", show=False, tooltip="lower max_parallel by one"),
        Binding("r", "refine", "Refine", id="refine", tooltip="refine the ranges and launch the next stage"),
        Binding("space", "mark", "Mark", id="mark", show=False, tooltip="mark / unmark the trial for compare"),
        Binding("v", "view('compare')", "Compare", id="compare",
                tooltip="compare view: val curves of marked trials (the best ones if none marked)"),
        Binding("t", "view('curves')", "Curves", id="curves", show=False, tooltip="curves of the highlighted trial"),
        Binding("g", "view('gpu')", "GPU", id="gpu", tooltip="GPU panel: utilisation, memory, who sits where"),
        Binding("h", "view('health')", "Health", id="health", show=False, tooltip="health flags with hints"),
        Binding("l,enter", "log", "Log", id="log", tooltip="the highlighted trial's log (tail, follow)"),
        Binding("L", "log_y", "Log-y", id="log_y", show=False, tooltip="toggle a logarithmic y axis"),
        Binding("n", "cycle_metric", "Metric", id="cycle_metric", show=False,
                tooltip="cycle the metric shown in compare (and in the second chart)"),
        Binding("f", "filter", "Filter", id="filter", tooltip="cycle the status filter"),
        Binding("o", "sort", "Sort", id="sort", show=False, tooltip="cycle the sort order (or click a header)"),
        Binding("escape", "back", "Back", id="back", show=False, tooltip="back to the study list"),
    ]

    def __init__(self, study_id: int) -> None:
        super().__init__()
        self.study_id = study_id
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

    @property
    def hpotui(self) -> "HpotuiApp":
        return self.app  # type: ignore[return-value]

    # -- layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="study-header")
        yield TrialsTable(id="trials")
        with ContentSwitcher(initial="curves", id="detail"):
            with Horizontal(id="curves"):
                yield CurveChart(id="loss-chart")
                yield CurveChart(id="acc-chart")
            yield CurveChart(id="compare")
            with VerticalScroll(id="gpu"):
                yield GpuPanel(id="gpu-panel")
            with VerticalScroll(id="health"):
                yield HealthPanel(id="health-panel")
        yield Static("", id="message")
        yield Footer()

    @property
    def table(self) -> TrialsTable:
        return self.query_one("#trials", TrialsTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.set_interval(self.hpotui.refresh_s, self.poll)
        self.request(table=True, detail=True)

    def on_resize(self) -> None:
        self.request(detail=True)

    # -- refresh ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """The 1 s tick: a version check on the UI thread, a worker only on change; clocks redrawn every 10 s."""
        now = time.monotonic()
        running = self.view is not None and bool(self.view.counts.get("running"))
        if running and now - self._last_forced >= 10.0:
            self._last_forced = now
            self.request(table=True)
            return
        version = self.hpotui.reader.data_version_now()
        if version is not None and version != self._version:
            self.request()

    def request(self, *, table: bool = False, detail: bool = False) -> None:
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
                       status=STATUS_FILTERS[self.ui.status_index], sort=SORT_KEYS[self.ui.sort_index],
                       view=self.ui.view, trial_id=self.table.trial_id, marked=tuple(sorted(self.ui.marked)),
                       metric=self.ui.metric, log_y=self.ui.log_y, color=not self.app.no_color,
                       chart_sizes=sizes, panel_width=self.size.width)

    @work(thread=True, group="study-refresh")
    def _load(self, req: Request) -> None:
        reader = self.hpotui.reader
        try:
            version = reader.data_version()
            changed = version != self._version
            view = None
            if changed or req.table:
                view = reader.study_view(req.study_id, status=req.status, sort=req.sort,
                                         descending=False)
                if view is None:
                    self.app.call_from_thread(self._gone)
                    return
                self._version = view.data_version
                if req.trial_id is None and view.trials:  # first load: curves of the first row at once
                    req = replace(req, trial_id=view.trials[0].id)
            detail: tuple[Text, ...] | None = None
            names: tuple[str, ...] = ()
            if changed or req.detail:
                detail, names = build_detail(reader, req, view or self.view)
            loaded = Loaded(view=view, detail=detail, detail_for=(req.view, req.trial_id), metrics=names,
                            sizes=req.chart_sizes)
            self.app.call_from_thread(self._apply, loaded)
        except Exception as exc:  # a locked or vanished file must not kill the interface
            self.app.call_from_thread(self.say, f"could not read {reader.path}: {exc}", "error")
        finally:
            self.app.call_from_thread(self._done)

    def _done(self) -> None:
        self._busy = False
        if self._pending or self._want_table or self._want_detail:
            self.request()

    def _gone(self) -> None:
        self.say("this study is no longer in the database", "error")

    def _apply(self, loaded: Loaded) -> None:
        if loaded.view is not None:
            self.view = loaded.view
            self.trials = {t.id: t for t in loaded.view.trials}
            self.table.show(loaded.view.trials, loaded.view.plan.params or _param_names(loaded.view.trials),
                            loaded.view.max_step, self.ui.marked)
            self._header()
        if loaded.metrics:
            self.metric_names = loaded.metrics
        if loaded.detail is not None:
            view_name, trial_id = loaded.detail_for
            if view_name == "curves":
                self.query_one("#loss-chart", CurveChart).show(loaded.detail[0], loaded.sizes[0])
                self.query_one("#acc-chart", CurveChart).show(loaded.detail[1], loaded.sizes[-1])
            elif view_name == "compare":
                self.query_one("#compare", CurveChart).show(loaded.detail[0], loaded.sizes[0])
            elif view_name == "gpu":
                self.query_one("#gpu-panel", GpuPanel).update(loaded.detail[0])
            elif view_name == "health":
                self.query_one("#health-panel", HealthPanel).update(loaded.detail[0])
            if view_name != self.ui.view or (view_name == "curves" and trial_id != self.table.trial_id):
                self._want_detail = True  # the user moved on while this was built

    def _header(self) -> None:
        v = self.view
        if v is None:
            return
        s = v.study
        line = Text()
        line.append(s.name, style="bold")
        line.append(f" · stage {s.stage}")
        line.append(" · ")
        line.append_text(fmt.status(s.status))
        line.append(" · engine ")
        line.append("alive", style="green") if v.alive else line.append("not running", style="dim")
        line.append(f" · {v.total}" + (f"/{v.plan.max_trials}" if v.plan.max_trials else "") + " trials: ")
        parts = [(n, st) for st in ("running", "completed", "pruned", "stopped", "diverged", "failed", "queued",
                                   "interrupted") if (n := v.counts.get(st))]
        for i, (n, st) in enumerate(parts):
            line.append(("" if i == 0 else " ") + f"{n} {st}", style=fmt.STATUS_STYLES.get(st, ""))
        if v.best is not None:
            line.append(f" · best {s.objective_metric} {fmt.number(v.best.best)} (#{v.best.number})")
        if s.status in ("running", "queued"):
            line.append(f" · ETA {fmt.duration(v.eta_s)}")
            line.append(f" · parallel {s.max_parallel or v.plan.max_parallel or '-'}")
        if s.launching_paused:
            line.append(" · launching paused", style="bold yellow")
        status = STATUS_FILTERS[self.ui.status_index]
        if status:
            line.append(f" · filter {status}", style="bold")
        sort = SORT_KEYS[self.ui.sort_index]
        if sort != "number":
            line.append(f" · sort {sort}")
        self.query_one("#study-header", Static).update(line)

    @on(CurveChart.Resized)
    def _chart_resized(self) -> None:
        self.request(detail=True)

    @on(TrialsTable.Highlighted)
    def _highlighted(self) -> None:
        if self.ui.view == "curves":
            self.request(detail=True)

    @on(TrialsTable.SortRequested)
    def _header_clicked(self, event: TrialsTable.SortRequested) -> None:
        self.ui.sort_index = SORT_KEYS.index(event.sort)
        self.say(f"sorted by {event.sort}")
        self.request(table=True)

    # -- messages -------------------------------------------------------------------------------------
    def say(self, text: str, level: str = "info") -> None:
        style = {"error": "bold red", "warning": "yellow"}.get(level, "")
        stamp = time.strftime("%H:%M:%S", time.localtime(self.hpotui.reader.clock()))
        self.query_one("#message", Static).update(Text(f"{stamp} {text}", style=style))

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
            result = f"{action} failed: {exc}"
        refused = result.startswith(("refused", "cannot")) or "no running engine" in result \
            or "nothing to stop" in result
        self.app.call_from_thread(self.say, result, "warning" if refused else "info")
        self.app.call_from_thread(self.request, table=True, detail=True)

    # -- actions ---------------------------------------------------------------------------------------
    def action_stop_trial(self) -> None:
        trial = self.highlighted()
        if trial is None:
            self.say("no trial highlighted", "warning")
            return
        if trial.status not in ("running", "queued"):
            self.say(f"trial {trial.number} is {trial.status}: nothing to stop", "warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop_trial", trial_number=trial.number, note=f"stopping trial {trial.number} ...")
            else:
                self.say("stop cancelled")

        self.app.push_screen(_confirm(f"Stop trial {trial.number}? Its curves and logs are kept."), answered)

    def action_stop_study(self) -> None:
        name = self.view.study.name if self.view else str(self.study_id)

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop_study", note=f"stopping study {name} ...")
            else:
                self.say("stop cancelled")

        self.app.push_screen(_confirm(f"Stop study {name}? Running trials stop and no new trial starts."),
                             answered)

    def action_toggle_launching(self) -> None:
        paused = self.view is not None and self.view.study.launching_paused
        self.send("resume_launching" if paused else "pause_launching")

    def action_toggle_trial(self) -> None:
        trial = self.highlighted()
        if trial is None or trial.status != "running":
            self.say("highlight a running trial to pause or resume it", "warning")
            return
        self.send("resume_trial" if trial.paused else "pause_trial", trial_number=trial.number)

    def action_parallel(self, delta: int) -> None:
        if self.view is None:
            return
        current = self.view.study.max_parallel or self.view.plan.max_parallel or 1
        value = max(1, current + delta)
        if value == current:
            self.say(f"max_parallel is already {current}", "warning")
            return
        self.send("set_max_parallel", args={"value": value}, note=f"max_parallel {current} → {value} ...")

    def action_clone(self) -> None:
        from .dialogs import CloneScreen

        trial = self.highlighted()
        if trial is None:
            self.say("no trial highlighted", "warning")
            return

        def done(changed: dict[str, Any] | None) -> None:
            if changed is None:
                self.say("clone cancelled")
                return
            self.send("clone_trial", trial_number=trial.number, args={"params": changed},
                      note=f"cloning trial {trial.number} ...")

        self.app.push_screen(CloneScreen(trial.number, trial.params), done)

    def action_refine(self) -> None:
        from .refine import RefineScreen

        if self.view is None:
            return

        def done(result: str | None) -> None:
            if result:
                self.say(result)

        self.app.push_screen(RefineScreen(self.view.study, self.view.plan), done)

    def action_mark(self) -> None:
        tid = self.table.trial_id
        if tid is None:
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
        self.call_after_refresh(self.request, detail=True)

    def action_log(self) -> None:
        from .log import LogScreen

        trial = self.highlighted()
        if trial is None:
            self.say("no trial highlighted", "warning")
            return
        self.app.push_screen(LogScreen(trial.number, trial.stdout_path, trial.stderr_path))

    def action_log_y(self) -> None:
        self.ui.log_y = not self.ui.log_y
        self.say("log y axis" if self.ui.log_y else "linear y axis")
        self.request(detail=True)

    def action_cycle_metric(self) -> None:
        names = list(self.metric_names) or ([self.view.study.objective_metric] if self.view else [])
        if not names:
            return
        current = self.ui.metric or (self.view.study.objective_metric if self.view else names[0])
        index = names.index(current) + 1 if current in names else 0
        self.ui.metric = names[index % len(names)]
        self.say(f"metric: {self.ui.metric}")
        self.request(detail=True)

    def action_filter(self) -> None:
        self.ui.status_index = (self.ui.status_index + 1) % len(STATUS_FILTERS)
        self.say(f"filter: {STATUS_FILTERS[self.ui.status_index] or 'all trials'}")
        self.request(table=True, detail=True)

    def action_sort(self) -> None:
        self.ui.sort_index = (self.ui.sort_index + 1) % len(SORT_KEYS)
        self.say(f"sorted by {SORT_KEYS[self.ui.sort_index]}")
        self.request(table=True)

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_screen_resume(self) -> None:
        self.request(table=True, detail=True)


def _confirm(question: str) -> Screen[bool]:
    from .dialogs import ConfirmScreen

    return ConfirmScreen(question)


def _param_names(trials: tuple[TrialInfo, ...]) -> tuple[str, ...]:
    for t in trials:
        if t.params:
            return tuple(t.params)
    return ()
