"""What hpotui could and could not read from each trial, said loudly.

A study whose trials print nothing hpotui can read "completes" with no metric at all unless
someone says so: a regex that never matches, a CSV that never appears, a progress bar that
prints nothing when stdout is not a terminal (Lightning's rich bar), a line past the cap.
Each trial's reading state lives in :class:`TrialReading`; when the trial ends,
:class:`ReadingLedger` turns what was not read into per-trial events (kind ``not_read``,
rebuilt from the database on resume) and into the study's warning lines, which
``hpotui status``, the export's ``study.warnings``, headless output and the TUI all show.

Ten trials in a row that end without one report of the objective are a broken pattern, not
bad luck: the ledger counts them, and the loop pauses launching and names what never matched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..database.records import EventKind
from .metric_files import open_sources, read_source
from .metricline import RegexMetrics, Report

NOT_READ_EVENT = EventKind.NOT_READ
SETTLE_S = 0.3  # a step with no new value for this long is judged (health, scheduler)
FILE_POLL_S = 0.25  # how often a running trial's CSV / TensorBoard files are looked at
RESUME_LOOKBACK = 64 * 1024  # bytes before the committed offset searched for the step a re-adopted bar is at
SILENT_STREAK = 10  # trials in a row without the objective before launching pauses
MAX_LISTED = 8  # trial numbers listed in one warning line
_isnan = math.isnan


@dataclass
class StepBest:
    """The best objective where each step counts with its *last* value (a bar revises its step)."""

    better: Callable[[float, float], bool]
    closed: float | None = None  # best over steps that are over
    closed_step: float | None = None
    open_step: float | None = None
    open_value: float | None = None

    def add(self, step: float, value: float) -> tuple[float | None, float | None]:
        """Take ``value`` at ``step`` (a new step closes the open one); returns :meth:`best`.

        Called once per report, so :meth:`best` is inlined on the fields just read.
        """
        open_step, open_value, closed = self.open_step, self.open_value, self.closed
        if open_step is not None and step != open_step and open_value is not None:
            if closed is None or self.better(open_value, closed):
                closed = self.closed = open_value
                self.closed_step = open_step
        self.open_step, self.open_value = step, value
        if value is None or _isnan(value):
            return closed, self.closed_step
        if closed is None or self.better(value, closed):
            return value, step
        return closed, self.closed_step

    def best(self) -> tuple[float | None, float | None]:
        if self.open_value is None or math.isnan(self.open_value):
            return self.closed, self.closed_step
        if self.closed is None or self.better(self.open_value, self.closed):
            return self.open_value, self.open_step
        return self.closed, self.closed_step


@dataclass
class OpenStep:
    """A trial's newest step, held until it settles: the health checks and the scheduler judge a
    step by its *last* values (a bar revises its step; a trial may report one step twice).

    A step settles when a report at another step arrives, when ``SETTLE_S`` pass without a new
    value at it, or when the trial ends; a NaN or an infinity is judged at once.
    """

    report: Report | None = None
    since: float = 0.0

    def add(self, report: Report, now: float) -> Report | None:
        """Hold ``report``; returns the step it settles (the one before), if any."""
        held, self.since = self.report, now
        if held is not None and held.step == report.step:
            self.report = Report(step=held.step, values={**held.values, **report.values},
                                 resource=report.resource if report.resource is not None else held.resource)
            return None
        self.report = report
        return held

    def due(self, now: float) -> Report | None:
        return self.take() if self.report is not None and now - self.since >= SETTLE_S else None

    def take(self) -> Report | None:
        held, self.report = self.report, None
        return held


@dataclass
class TrialReading:
    """One trial's readers (regex over its output, file sources) and what they saw."""

    regex: RegexMetrics | None
    best: StepBest
    sources: list[Any] = field(default_factory=list)  # metric_files sources
    open_step: OpenStep = field(default_factory=OpenStep)
    cut_lines: int = 0  # pieces longer than logs.max_line_kb, read in parts
    objective_seen: bool = False
    last_poll: float = 0.0


def _text_before(path: str, offset: int) -> str:
    """The output just before ``offset`` (what a re-adopted trial's regex last saw)."""
    try:
        with open(path, "rb") as f:
            start = max(0, offset - RESUME_LOOKBACK)
            f.seek(start)
            return f.read(offset - start).decode("utf-8", "replace")
    except OSError:
        return ""


def open_reading(store: Any, space: Any, row: Any) -> TrialReading:
    """A trial's readers; a re-adopted one's go on where the database stops (nothing read twice)."""
    regex = None
    if space.metric_regex:
        regex = RegexMetrics(space.metric_regex)
        if row.reports:  # re-adopted: go on counting where the recorded values stop, at the step it printed
            regex.resume(store.metric_counts(row.id), row.last_step,
                         (_text_before(row.stdout_path, row.stdout_offset),
                          _text_before(row.stderr_path, row.stderr_offset)))
    recorded = None
    if row.reports:
        recorded = {(m.name, m.step, "nan" if math.isnan(m.value) else m.value) for m in store.metrics(row.id)}
    values: dict[str, Any] = dict(row.params, trial_id=row.number, trial_dir=row.trial_dir)
    if space.scheduler.max_resource is not None:
        mr = space.scheduler.max_resource
        values["max_resource"] = int(mr) if mr == int(mr) else mr
    sources = open_sources(space.metric_files, values, space.workdir, recorded)
    best = StepBest(space.objective.better, closed=row.best_value, closed_step=row.best_step)
    return TrialReading(regex=regex, best=best, sources=sources, objective_seen=row.best_value is not None)


def read_sources(reading: TrialReading, final: bool) -> list[Report]:
    reports: list[Report] = []
    for source in reading.sources:
        reports += read_source(source, final)
    return reports


@dataclass(frozen=True)
class Problem:
    kind: str  # no_objective | never_matched | never_appeared | no_rows | cut_lines
    what: str  # the metric, pattern or source concerned (the key in the space file)
    detail: str  # one line for the trial's event


def trial_problems(reading: TrialReading, objective: str, patterns: tuple[tuple[str, str], ...],
                   max_line_bytes: int) -> list[Problem]:
    """What this finished trial's readers did not read."""
    problems: list[Problem] = []
    if reading.regex is not None:
        for name, pattern in patterns:
            if name not in reading.regex.matched:
                problems.append(Problem("never_matched", f"metrics.regex.{name}",
                                        f"metrics.regex.{name} ({pattern!r}) never matched its output"))
    for source in reading.sources:
        if not source.appeared:
            problems.append(Problem("never_appeared", f"metrics.{source.kind}",
                                    f"{source.describe()} never appeared"))
        elif source.rows == 0:
            problems.append(Problem("no_rows", f"metrics.{source.kind}",
                                    f"{source.describe()} held no metric"))
    if reading.cut_lines:
        problems.append(Problem("cut_lines", "logs.max_line_kb",
                                f"{reading.cut_lines} piece(s) of output longer than logs.max_line_kb "
                                f"({max_line_bytes // 1024} KB) were read in parts; an @hpotui line that long is "
                                "ignored"))
    if not reading.objective_seen:
        problems.append(Problem("no_objective", objective, f"never reported the objective {objective}"))
    return problems


class ReadingLedger:
    """The study's record of what was not read, as warning lines and a streak of silent trials."""

    def __init__(self, objective: str) -> None:
        self.objective = objective
        self.trials: dict[tuple[str, str], list[int]] = {}  # (kind, what) -> trial numbers
        self.finished = 0
        self.silent_streak = 0

    def add(self, number: int, problem_kind: str, what: str) -> None:
        numbers = self.trials.setdefault((problem_kind, what), [])
        if number not in numbers:
            numbers.append(number)

    def trial_finished(self, number: int, problems: list[Problem], counts_for_streak: bool) -> None:
        self.finished += 1
        for p in problems:
            self.add(number, p.kind, p.what)
        if not counts_for_streak:
            return
        silent = any(p.kind == "no_objective" for p in problems)
        self.silent_streak = self.silent_streak + 1 if silent else 0

    def unmatched(self) -> list[str]:
        """Patterns and sources that failed in the trials that never reported the objective."""
        return sorted({what for (kind, what) in self.trials if kind in ("never_matched", "never_appeared", "no_rows")})

    def lines(self) -> list[str]:
        out = []
        order = ("no_objective", "never_matched", "never_appeared", "no_rows", "cut_lines")
        for (kind, what), numbers in sorted(self.trials.items(), key=lambda item: order.index(item[0][0])):
            listed = ", ".join(str(n) for n in numbers[:MAX_LISTED]) + (", ..." if len(numbers) > MAX_LISTED else "")
            which = f"{len(numbers)} trial{'s' if len(numbers) != 1 else ''} ({listed})"
            out.append({
                "no_objective": f"{which} finished without reporting the objective {what}"
                                + (f"; not read: {', '.join(self.unmatched())}" if self.unmatched() else ""),
                "never_matched": f"{what} never matched the output of {which}: check the pattern against "
                                 "the trial's stdout.log",
                "never_appeared": f"{what} never appeared for {which}: check the path (relative to workdir)",
                "no_rows": f"{what} held no metric for {which}",
                "cut_lines": f"output longer than logs.max_line_kb was read in parts in {which}; raise "
                             "logs.max_line_kb if an @hpotui line is that long",
            }[kind])
        return out

    def pause_message(self, study: str) -> str:
        unmatched = self.unmatched()
        cause = (f"{', '.join(unmatched)} never matched" if unmatched
                 else f"no `@hpotui` line (or metric source) carried {self.objective}")
        return (f"launching paused: {self.silent_streak} trials in a row finished without reporting the objective "
                f"{self.objective} ({cause}); fix it, then `hpotui resume {study}`")

    def rebuild(self, events: list[Any], numbers: dict[int, int]) -> None:
        """On resume: the problems recorded by the engine before (events of kind ``not_read``)."""
        for event in events:
            number = numbers.get(event.trial_id) if event.trial_id is not None else None
            kind, what = event.data.get("problem"), event.data.get("what")
            if number is not None and isinstance(kind, str) and isinstance(what, str):
                self.add(number, kind, what)
