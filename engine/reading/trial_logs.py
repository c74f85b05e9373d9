"""A running trial's output turned into reports: its two logs, its progress bars and its metric files.

The loop (:mod:`engine.study`) owns the trials and the decisions; this module owns reading. For each
trial it reads what was appended to ``stdout.log`` / ``stderr.log`` since the committed offsets,
parses ``@hpotui`` lines and regex / progress-bar metrics, polls CSV and TensorBoard sources, and
buffers metrics, notes and offsets in the store. Each step's values go back to the loop's ``decide``
callback once the step settled (or at once for NaN / inf), so health checks and the scheduler stay
with the loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..database.records import EventKind
from ..database.store import Store, TrialRow
from ..executors.base import TrialProcess
from ..search.invalid import invalid_reason
from ..space_file.space import Space
from . import trial_reading as reading
from .logtail import LogTail, Piece
from .metricline import RegexMetrics, Rejected, Report, parse_metric_line

DRAIN_BATCH_BYTES = 256 * 1024  # log bytes read per stream per loop turn: a flood lands in steady batches
BAD_LINE_NOTES = 20  # per trial: a flood of bad lines must not flood the events table


@dataclass
class LiveTrial:
    """What the loop tracks about one running trial beyond its database row."""

    row: TrialRow
    proc: TrialProcess
    stdout: LogTail
    stderr: LogTail
    reports: int
    best: float | None = None
    best_step: float | None = None
    last_step: float | None = None
    regex: RegexMetrics | None = None
    rejected_notes: int = 0
    curve: list[tuple[float, float]] = field(default_factory=list)  # (resource, objective): the rung model's input
    last: dict[str, float] = field(default_factory=dict)  # every metric's last value (several objectives)
    invalid: str | None = None  # the trial said `@hpotui {"invalid": "why"}`
    reading: reading.TrialReading | None = None  # regex and file sources, and what they did not read


def follow(store: Store, space: Space, row: TrialRow, proc: TrialProcess | None, stdout_path: Path,
           stderr_path: Path) -> LiveTrial:
    """Start reading a trial from its recorded offsets (``proc`` None: one that ended while no engine ran)."""
    logs = space.logs
    live = LiveTrial(row=row, proc=proc,  # type: ignore[arg-type]  # None only for a final drain
                     stdout=LogTail(stdout_path, row.stdout_offset, logs.max_line_bytes, keep_bytes=logs.max_bytes),
                     stderr=LogTail(stderr_path, row.stderr_offset, logs.max_line_bytes, keep_bytes=logs.max_bytes),
                     reports=row.reports, best=row.best_value, best_step=row.best_step, last_step=row.last_step)
    live.reading = reading.open_reading(store, space, row)  # its regex and file sources
    live.regex = live.reading.regex
    return live


class TrialLogReader:
    """Reads trials' output into the store and hands each settled step to ``decide``.

    ``flush``: called between the batches of a long final drain, so offsets land with their rows.
    """

    def __init__(self, store: Store, space: Space, study_id: int,
                 decide: Callable[[LiveTrial, Report | None], None], flush: Callable[[], None]) -> None:
        self.store, self.space, self.study_id = store, space, study_id
        self._decide, self._flush = decide, flush

    def drain(self, live: LiveTrial, final: bool = False) -> bool:
        """Read what both logs gained (``final``: to their end, in bounded batches); True if anything came."""
        got = False
        for stream in (live.stdout, live.stderr):
            while True:  # a final drain reads to the end in bounded batches (a trial may exit mid-flood)
                lines = stream.read_pieces(final=final, budget=DRAIN_BATCH_BYTES)
                got = got or bool(lines)
                self._handle_pieces(live, lines, stream is live.stderr)
                if not final or stream.at_eof:
                    break
                if lines:  # a long final drain lands batch by batch, offsets with their rows
                    self._buffer_progress(live)
                    self._flush()
            self._note_refused_log(live, stream)
        got |= self._flush_regex(live, final)
        if got:
            self._buffer_progress(live)
        return got

    def poll_files(self, live: LiveTrial, final: bool = False) -> None:
        """CSV / TensorBoard sources, read as they grow (every quarter second) and once more at the end."""
        if live.reading is None or not live.reading.sources:
            return
        now = time.monotonic()
        if not final and now - live.reading.last_poll < reading.FILE_POLL_S:
            return
        live.reading.last_poll = now
        reports = reading.read_sources(live.reading, final)
        for report in reports:
            self._handle_report(live, report)
        if reports:
            self._buffer_progress(live)

    def settle(self, lives: list[LiveTrial], final: bool = False) -> None:
        """Judge the steps that stood still for SETTLE_S (``final``: each trial's last step, it ended)."""
        now = time.monotonic()
        for live in lives:
            if live.reading is not None:
                held = live.reading.open_step.take() if final else live.reading.open_step.due(now)
                if held is not None:
                    self._decide(live, held)

    def _flush_regex(self, live: LiveTrial, final: bool) -> bool:
        """What a progress bar said new, as soon as it was written; at the end, its last step."""
        if live.regex is None:
            return False
        ended_on_its_own = live.proc is None or live.proc.final_status is None
        reports = live.regex.finish(ended_on_its_own) if final else live.regex.flush(time.monotonic())
        for report in reports:
            self._handle_report(live, report)
        return bool(reports)

    def _handle_pieces(self, live: LiveTrial, pieces: list[Piece], on_stderr: bool) -> None:
        """One batch of pieces; a whole line with no regex to feed goes straight to the line parser."""
        for text, _offset, ends_line, partial, cut in pieces:
            if live.regex is None and not (cut or partial):  # the common case: @hpotui lines only
                self._handle_line(live, text)
            else:
                self._handle_piece(live, text, ends_line, partial, cut, on_stderr)

    def _handle_piece(self, live: LiveTrial, text: str, ends_line: bool, partial: bool, cut: bool,
                      on_stderr: bool) -> None:
        """A line or progress-bar segment: regex metrics from every piece, ``@hpotui`` from whole lines."""
        if live.regex is not None:
            for report in live.regex.feed(text, ends_line=ends_line, partial=partial,
                                          stream="err" if on_stderr else "out", now=time.monotonic()):
                self._handle_report(live, report)
        if cut and live.reading is not None:
            live.reading.cut_lines += 1
        if not partial:
            self._handle_line(live, text)

    def _note_refused_log(self, live: LiveTrial, stream: LogTail) -> None:
        """A log that is a planted link or another user's file is not read: the trial's events say so, once."""
        if stream.refused and not stream.refusal_recorded:
            stream.refusal_recorded = True
            self.store.buffer_event(self.study_id, live.row.id, EventKind.FOREIGN_LOG, f"trial {live.row.number}: "
                                    f"{stream.refused}", level="error")

    def _buffer_progress(self, live: LiveTrial) -> None:
        self.store.buffer_progress(live.row.id, stdout_offset=live.stdout.offset,
                                   stderr_offset=live.stderr.offset, reports=live.reports,
                                   last_step=live.last_step, best_value=live.best, best_step=live.best_step)

    def _handle_line(self, live: LiveTrial, line: str) -> None:
        reason = invalid_reason(line)
        if reason is not None:
            live.invalid = reason  # recorded when it exits: status `invalid`, the sampler asked again
            return
        parsed = parse_metric_line(line, live.reports, self.space.scheduler.resource, self.space.logs.max_line_bytes)
        if parsed is None:
            return
        if isinstance(parsed, Rejected):
            if live.rejected_notes < BAD_LINE_NOTES:
                live.rejected_notes += 1
                self.store.buffer_event(self.study_id, live.row.id, EventKind.BAD_METRIC_LINE,
                                        f"trial {live.row.number}: {parsed.reason}", level="warning")
            return
        if parsed.ignored and live.rejected_notes < BAD_LINE_NOTES:
            live.rejected_notes += 1
            self.store.buffer_event(self.study_id, live.row.id, EventKind.BAD_METRIC_LINE,
                                    f"trial {live.row.number}: non-numeric values ignored for "
                                    f"{', '.join(parsed.ignored)}", level="warning")
        self._handle_report(live, parsed)

    def _new_reading(self, live: LiveTrial) -> reading.TrialReading:
        """Reading state for a trial followed without one (its best goes on from the recorded one)."""
        live.reading = reading.TrialReading(regex=None, best=reading.StepBest(
            self.space.objective.better, closed=live.best, closed_step=live.best_step))
        return live.reading

    def _handle_report(self, live: LiveTrial, report: Report) -> None:
        """Record one report (metrics, best, curve), then hand each step to ``decide`` once it settled.

        Called once per metric line of a flood, so it reads each field once and checks the values'
        finiteness with one sum (see :func:`_all_finite`).
        """
        step, values = report.step, report.values
        live.reports += 1
        live.last_step = step
        self.store.buffer_metrics(live.row.id, step, values, time.time())
        objective = values.get(self.space.objective.metric)
        live.last.update(values)
        if objective is not None:  # best of what was recorded, decided or not
            if _isfinite(objective):
                live.curve.append((report.resource if report.resource is not None else step, objective))
            noted = live.reading or self._new_reading(live)
            noted.objective_seen = True  # the best: each step counts with its last value (a bar revises its step)
            live.best, live.best_step = noted.best.add(step, objective)
        proc = live.proc
        if proc is not None and proc.final_status is not None:
            return  # already being stopped: record (best too), do not decide again
        state = live.reading
        if state is None:
            self._decide(live, report)
            return
        settled = state.open_step.add(report, time.monotonic())  # judged on the step's last values
        if settled is not None:
            self._decide(live, settled)
        if not _all_finite(values):  # NaN / inf: judged at once
            self._decide(live, state.open_step.take())


_isfinite = math.isfinite


def _all_finite(values: dict[str, float]) -> bool:
    """Whether no value is NaN or infinite: a sum of floats is finite only if every term is (a
    finite sum proves it in one C call; an overflowing or non-finite one is checked value by value)."""
    try:
        if _isfinite(sum(values.values())):
            return True
    except (OverflowError, TypeError):
        pass
    return all(_isfinite(v) for v in values.values())
