"""The study screen's two header lines, built so that what a user decides on fits in 80 columns.

Line one says which study and how far it is (trials by status, best). Line two says what state
it is in and what the table shows: a dead engine and how to go on, launching paused, how many
warnings the engine recorded (``h`` lists them), the status filter, the search, the sort, then
ETA and parallelism, then (a finished study) why it ended.
Each line is cut at the terminal's width, the least important parts last, so a narrow terminal
loses the ETA before it loses "launching paused" or "filter running".
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from ..engine.database.records import LIVE_STATUSES, TrialStatus
from . import format as fmt
from .data import StudyView
from .ordering import sort_label

ORDER = (TrialStatus.RUNNING, "unwatched", "gone", TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.STOPPED,
         TrialStatus.DIVERGED, TrialStatus.FAILED, TrialStatus.QUEUED, TrialStatus.INTERRUPTED, TrialStatus.INVALID)
SHORT = {"running": "run", "completed": "done", "pruned": "pruned", "stopped": "stop", "diverged": "div",
         "failed": "fail", "queued": "queue", "interrupted": "intr", "unwatched": "unwatched", "gone": "gone",
         "invalid": "inval"}


@dataclass(frozen=True)
class Shown:
    """What the table shows, as the header reports it."""

    status: str | None
    text: str
    sort: str
    descending: bool
    view: str


def counts_text(counts: dict[str, int], short: bool) -> Text:
    out = Text()
    for status in ORDER:
        n = counts.get(status)
        if n:
            if out:
                out.append(" ")
            out.append(f"{n} {SHORT[status] if short else status}", style=fmt.STATUS_STYLES.get(status, ""))
    return out


def header_lines(v: StudyView, shown: Shown, width: int) -> Text:
    s = v.study
    short = width < 120
    one = Text(no_wrap=True, overflow="ellipsis")
    one.append(s.name, style="bold")
    one.append(f" · stage {s.stage} · ")
    one.append_text(fmt.status(s.status))
    if v.best is not None:
        one.append(f" · best {s.objective_metric if not short else ''}".rstrip() + " ")
        one.append(f"{fmt.number(v.best.best)} (#{v.best.number})", style="bold")
    if v.clones_waiting:
        one.append(f" · {v.clones_waiting} clone{'s' if v.clones_waiting > 1 else ''} waiting", style="cyan")
    # invalid trials do not count toward max_trials (the engine runs another configuration instead)
    one.append(f" · {v.counted}/{v.plan.max_trials}: " if v.plan.max_trials else f" · {v.total}: ")
    one.append_text(counts_text(dict(v.counts), short))
    one.truncate(width, overflow="ellipsis")
    return Text("\n").join([one, state_line(v, shown, width)])


def state_line(v: StudyView, shown: Shown, width: int) -> Text:
    two = Text(no_wrap=True, overflow="ellipsis")
    for part in (_engine_part(v), _warnings_part(v), _table_part(v, shown), _pace_part(v)):
        two.append_text(part)
    two.truncate(width, overflow="ellipsis")
    return two


def _engine_part(v: StudyView) -> Text:
    """First: can anything happen to this study (engine alive, gone, or ended), launching paused."""
    s = v.study
    out = Text()
    if v.engine_died:
        out.append(f"engine gone: R resumes (hpotui resume {s.name})", style="bold red")
    elif v.alive:
        out.append("engine alive", style="green")
    else:
        out.append("ended", style="dim")
    if s.launching_paused:
        out.append(" · ")
        out.append("launching paused", style="bold yellow")
    return out


def _warnings_part(v: StudyView) -> Text:
    """Right after the engine: how many warnings the engine recorded (what was not read, boundaries).

    A count, not the lines, so it fits 80 columns next to the engine state; ``h`` lists them in full.
    """
    n = len(v.warnings)
    if not n:
        return Text()
    return Text.assemble(" · ", (f"{n} warning{'s' if n > 1 else ''} (h)", "bold yellow"))


def _table_part(v: StudyView, shown: Shown) -> Text:
    """Then: what the table shows (filter, search, sort, the view below it)."""
    out = Text()
    if shown.status:
        out.append(f" · filter {shown.status}", style="bold")
    if shown.text:
        out.append(f" · /{shown.text}", style="bold")
    if shown.sort != "number" or shown.descending:
        out.append(f" · sort {sort_label(shown.sort)}{'▼' if shown.descending else '▲'}")
    if shown.view != "curves":
        out.append(f" · {shown.view}")
    return out


def _pace_part(v: StudyView) -> Text:
    """Last (cut first): ETA and parallelism of a live study, or why a finished one ended."""
    s = v.study
    out = Text()
    if s.status in LIVE_STATUSES and v.alive:
        out.append(" · ETA " + ("paused" if v.eta_paused else fmt.duration(v.eta_s)))
        out.append(f" · parallel {s.max_parallel or v.plan.max_parallel or '-'}")
    if v.immutable:
        out.append(" · read-only snapshot", style="dim")
    if v.end_reason and not v.engine_died:
        out.append(f" · {v.end_reason}", style="italic")
    return out
