"""The refine dialog: where the good trials sit in each range, and the next stage in one Enter.

Per parameter it shows the range searched, the span of the top-K trials, a scatter of the
objective against the parameter (log x for log parameters) and a warning when the best trials
crowd a bound (the optimum may lie outside: widen, do not narrow). Enter writes the next space
file with the same code as ``hpotui refine`` (:func:`engine.search.refine.refine_study`), applies the
bounds and budget typed here, and launches the stage in the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import yaml
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ...engine.database.records import RANKED_STATUSES
from ...engine.database.store import StudyRow
from ..data import StudyPlan
from ..monitor import Monitor
from ..widgets.curve_chart import Series, render_chart

EDGE = 0.05  # a top-K span within 5 % of a bound (in the parameter's own scale) "touches" it
SCATTER_W, SCATTER_H = 38, 8


@dataclass(frozen=True)
class ParamSummary:
    name: str
    kind: str
    low: float | None
    high: float | None
    log: bool
    span: tuple[Any, Any] | None
    warning: str
    proposed: str = ""


def _position(value: float, low: float, high: float, log: bool) -> float:
    if log and low > 0 and high > 0 and value > 0:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low) if high != low else 0.5


def summarise(name: str, spec: Mapping[str, Any], top_values: list[Any]) -> ParamSummary:
    """The range, the top-K span and a boundary warning for one parameter."""
    kind = str(spec.get("type", "?"))
    log = kind == "loguniform" or bool(spec.get("log"))
    low, high = spec.get("low"), spec.get("high")
    numeric = isinstance(low, (int, float)) and isinstance(high, (int, float))
    values = [v for v in top_values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not top_values:
        return ParamSummary(name, kind, low if numeric else None, high if numeric else None, log, None,
                            "no scored trials yet")
    if not numeric or not values:
        chosen = sorted({str(v) for v in top_values})
        return ParamSummary(name, kind, None, None, False, (", ".join(chosen), ""), "")
    lo, hi = min(values), max(values)
    low, high = float(low), float(high)  # type: ignore[arg-type]  # numeric: checked above
    warning = ""
    if _position(hi, low, high, log) >= 1 - EDGE:
        warning = f"top trials reach the upper bound {high:g}: the best may lie above it — widen, do not narrow"
    elif _position(lo, low, high, log) <= EDGE:
        warning = f"top trials reach the lower bound {low:g}: the best may lie below it — widen, do not narrow"
    return ParamSummary(name, kind, low, high, log, (lo, hi), warning)


def engine_proposals(reader: Any, study: StudyRow, top: int) -> dict[str, tuple[str, str]]:
    """What ``hpotui refine`` would write for each parameter, and its boundary warning (engine code)."""
    try:
        # lazy: the refine code and the space parser cost ~0.1 s of start-up, and only this dialog needs them
        from ...engine.search.refine import param_spans
        from ...engine.space_file.space import parse_space

        base = Path(study.space_file).parent if study.space_file else Path.cwd()
        space = parse_space(yaml.safe_load(study.space_yaml), study.space_file or "space.yaml", base)
        spans = param_spans(space, reader.finished_results(study, RANKED_STATUSES), top)
    except Exception:  # an older engine, or a space file that no longer parses: show our own summary only
        return {}
    out = {}
    for span in spans:
        proposed = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                             for k, v in span.proposed.items())
        out[span.param.name] = (proposed, "; ".join(w.text for w in span.warnings))
    return out


def proposed_max_trials(reader: Any, study: StudyRow, top: int, scale: float) -> int | None:
    """``budget.max_trials`` as ``hpotui refine`` would write it (engine code), or None if it cannot say."""
    try:
        # lazy: the refine code and the space parser cost ~0.1 s of start-up, and only this dialog needs them
        from ...engine.search.refine import refine_space
        from ...engine.space_file.space import parse_space

        base = Path(study.space_file).parent if study.space_file else Path.cwd()
        space = parse_space(yaml.safe_load(study.space_yaml), study.space_file or "space.yaml", base)
        raw, _ = refine_space(space, reader.finished_results(study, RANKED_STATUSES), top, scale,
                              parent=study.name, name=study.name)
        value = (raw.get("budget") or {}).get("max_trials")
    except Exception:  # a space file that no longer parses: the field stays empty (refine decides)
        return None
    return value if isinstance(value, int) else None


class RefineScreen(ModalScreen["str | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="refine_cancel"),
                Binding("ctrl+o", "write(False)", "Write only", id="refine_write", priority=True,
                        tooltip="write the space file without launching it"),
                Binding("ctrl+l", "write(True)", "Write + launch", id="refine_launch", priority=True,
                        tooltip="write the space file and launch the next stage")]

    def __init__(self, study: StudyRow, plan: StudyPlan) -> None:
        super().__init__()
        self.study = study
        self.plan = plan
        self.summaries: dict[str, ParamSummary] = {}
        self._proposed_trials = ""
        self._budget_edited = False

    @property
    def hpotui(self) -> Monitor:
        """The running interface, as the screens know it (tui.monitor; the app is not imported)."""
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(id="refine-dialog"):
            yield Static(Text.assemble(("Refine ", "bold"), (self.study.name, "bold"),
                                       f" (stage {self.study.stage}) → stage {self.study.stage + 1}; "
                                       f"objective {self.study.objective_metric} ({self.study.objective_mode})"))
            with Horizontal(classes="refine-row"):
                yield Label("top K")
                yield Input("5", id="top", type="integer")
                yield Label("resource ×")
                yield Input("1", id="scale", type="number")
                yield Label("max_trials")
                yield Input("", placeholder="refine's choice", id="max_trials", type="integer")
            with Horizontal(classes="refine-row"):
                yield Label("write to")
                yield Input("", placeholder="beside the space file (refine's default)", id="output")
            with VerticalScroll(id="refine-params"):
                for name in self.plan.params:
                    with Vertical(classes="refine-param"):
                        yield Static(name, id=f"info-{name}")
                        spec = self.plan.ranges.get(name, {})
                        if isinstance(spec.get("low"), (int, float)):
                            with Horizontal(classes="refine-row"):
                                yield Label("new low")
                                yield Input("", placeholder="refine's choice", id=f"low-{name}", type="number")
                                yield Label("new high")
                                yield Input("", placeholder="refine's choice", id=f"high-{name}", type="number")
                        yield Static("", id=f"scatter-{name}")
            yield Static("[b]Enter[/b]/[b]ctrl+l[/b] write + launch  [b]ctrl+o[/b] write only  [b]Esc[/b] cancel",
                         classes="hint")
            yield Static("", id="refine-message")

    def on_mount(self) -> None:
        self.query_one("#top", Input).focus()
        self._compute(self._top())
        self._propose_budget(1.0)

    def _top(self) -> int:
        try:
            return max(1, int(self.query_one("#top", Input).value))
        except ValueError:
            return 5

    @on(Input.Changed, "#top")
    def _top_changed(self) -> None:
        self._compute(self._top())

    @on(Input.Changed, "#scale")
    def _scale_changed(self) -> None:
        self._propose_budget(self._scale())

    @on(Input.Changed, "#max_trials")
    def _budget_typed(self, event: Input.Changed) -> None:
        if event.value.strip() != self._proposed_trials:
            self._budget_edited = True

    def _scale(self) -> float:
        try:
            return float(self.query_one("#scale", Input).value or "1")
        except ValueError:
            return 1.0

    @work(thread=True, exclusive=True, group="refine-budget")
    def _propose_budget(self, scale: float) -> None:
        """What refine would write for max_trials at this resource scale, shown in the field as the value."""
        proposed = proposed_max_trials(self.hpotui.reader, self.study, self._top(), scale)
        if proposed is not None:
            self.app.call_from_thread(self._show_budget, str(proposed))

    def _show_budget(self, proposed: str) -> None:
        self._proposed_trials = proposed
        if not self._budget_edited:  # what is shown is what is written
            self.query_one("#max_trials", Input).value = proposed

    @work(thread=True, exclusive=True, group="refine")
    def _compute(self, top: int) -> None:
        reader = self.hpotui.reader
        best = reader.top_trials(self.study, top)
        scored = reader.scored_trials(self.study)
        color = not self.app.no_color
        proposals = engine_proposals(reader, self.study, top)
        out = []
        for name in self.plan.params:
            spec = self.plan.ranges.get(name, {})
            summary = summarise(name, spec, [p.get(name) for p, _ in best])
            if name in proposals:
                summary = replace(summary, warning=proposals[name][1] or summary.warning, proposed=proposals[name][0])
            pairs = [(float(x), v) for p, v in scored
                     if isinstance(x := p.get(name), (int, float)) and not isinstance(x, bool)]
            chart = None
            if pairs:
                chart = render_chart([Series(self.study.objective_metric, [x for x, _ in pairs],
                                             [y for _, y in pairs])], SCATTER_W, SCATTER_H,
                                     title=f"{self.study.objective_metric} vs {name}", lines=False,
                                     log_x=summary.log, color=color)
            out.append((summary, chart))
        self.app.call_from_thread(self._show, out, top)

    def _show(self, out: list[tuple[ParamSummary, Text | None]], top: int) -> None:
        for summary, chart in out:
            self.summaries[summary.name] = summary
            info = Text(summary.name, style="bold")
            if summary.low is not None:
                info.append(f"  range [{summary.low:g}, {summary.high:g}]" + (" log" if summary.log else ""))
            if summary.span is not None:
                lo, hi = summary.span
                span = f"[{lo:.4g}, {hi:.4g}]" if isinstance(lo, (int, float)) else lo
                info.append(f"  top-{top} span {span}")
            if summary.proposed:
                info.append(f"  → proposed {summary.proposed}", style="bold")
            if summary.warning:
                info.append(f"\n  ⚠ {summary.warning}", style="bold yellow")
            self.query_one(f"#info-{summary.name}", Static).update(info)
            self.query_one(f"#scatter-{summary.name}", Static).update(chart or Text())

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_write(True)

    def _edits(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str | None]:
        edits: dict[str, dict[str, Any]] = {}
        for name in self.plan.params:
            for bound in ("low", "high"):
                found = self.query(f"#{bound}-{name}")
                if not found:
                    continue
                text = found.first(Input).value.strip()
                if not text:
                    continue
                try:
                    value: float | int = float(text)
                except ValueError:
                    return {}, {}, f"{name} {bound}: {text!r} is not a number"
                if self.plan.ranges.get(name, {}).get("type") == "int":
                    value = int(value)
                edits.setdefault(name, {})[bound] = value
        for name, fields in edits.items():
            spec = self.plan.ranges.get(name, {})
            low, high = fields.get("low", spec.get("low")), fields.get("high", spec.get("high"))
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low >= high:
                return {}, {}, f"{name}: low {low:g} must be below high {high:g}"
        budget: dict[str, Any] = {}
        text = self.query_one("#max_trials", Input).value.strip()
        if text and text != self._proposed_trials:  # refine's own value keeps refine's own note in the header
            budget["max_trials"] = int(text)
        return edits, budget, None

    def action_write(self, launch: bool) -> None:
        edits, budget, problem = self._edits()
        if problem:
            self.query_one("#refine-message", Static).update(Text(problem, style="bold red"))
            return
        try:
            scale = float(self.query_one("#scale", Input).value or "1")
        except ValueError:
            scale = 0.0
        if scale <= 0:
            self.query_one("#refine-message", Static).update(Text("resource × must be a positive number",
                                                                  style="bold red"))
            return
        output = self.query_one("#output", Input).value.strip() or None
        self.query_one("#refine-message", Static).update("writing the next stage ...")
        self._write(self._top(), scale, output, edits, budget, launch)

    @work(thread=True, exclusive=True, group="refine-write")
    def _write(self, top: int, scale: float, output: str | None, edits: dict[str, dict[str, Any]],
               budget: dict[str, Any], launch: bool) -> None:
        try:
            result = self.hpotui.commander.refine(self.study, top=top, resource_scale=scale, output=output,
                                                  edits=edits, budget=budget, launch=launch)
        except Exception as exc:  # the engine's refine explains bad input in its message
            self.app.call_from_thread(self.query_one("#refine-message", Static).update,
                                      Text(f"refine failed: {exc}", style="bold red"))
            return
        if result.ok is False:  # refused (bad edits, no refine module, read-only file): stay, so it can be fixed
            self.app.call_from_thread(self.query_one("#refine-message", Static).update,
                                      Text(result.message, style="bold red"))
            return
        self.app.call_from_thread(self.dismiss, result.message)

    def action_cancel(self) -> None:
        self.dismiss(None)
