"""Line charts drawn with plotext, turned into Rich text for a Textual ``Static``.

Why our own small widget instead of textual-plotext: that package pins an older plotext and
reaches into its internals. Here plotext is used through its public figure API, the built
matrix becomes ``rich.text.Text.from_ansi``, and the widget only ever shows finished text.

plotext keeps one global figure, so :func:`render_chart` holds :data:`PLOT_LOCK` while it
builds: one builder at a time, and it runs in worker threads, never on the UI thread.
The legend is drawn by us in the first line (plotext's legend box would cover the curves on
small charts), and every background is stripped so the chart sits on the app's theme.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Span, Text
from textual.message import Message
from textual.widgets import Static

PLOT_LOCK = threading.Lock()
COLORS = ((0, 200, 80), (230, 50, 50), (60, 120, 255), (230, 200, 0), (200, 60, 220), (0, 200, 220),
          (255, 140, 0), (200, 200, 200))
"""Truecolor RGB, chosen so they stay eight different colours when a 256-colour terminal downgrades them
(palette indices such as 10 and 2 go through the theme and can come out the same)."""
MARKERS = ("braille", "dot", "+", "x", "*", "o", "#", "%")  # told apart without colour (NO_COLOR)
SCATTER_MARKERS = ("•", "◆", "x", "+", "o", "*", "#", "%")  # a scatter's points, told apart with or without colour
CUTOFF_COLOR = (255, 170, 0)
MIN_WIDTH, MIN_HEIGHT = 16, 5


@dataclass(frozen=True)
class Series:
    label: str
    steps: Sequence[float]
    values: Sequence[float]


def series_style(i: int, color: bool) -> Style:
    return Style(color=Color.from_rgb(*COLORS[i % len(COLORS)])) if color else Style()


def _legend(series: Sequence[Series], title: str, color: bool, cutoffs: Sequence[float], lines: bool = True) -> Text:
    """Title, the rung cut-off (first: it is what a pruned trial's chart is about), then each series."""
    line = Text(title, style="bold")
    if cutoffs:
        line.append("  ")
        line.append("│", style=Style(color=Color.from_rgb(*CUTOFF_COLOR)) if color else "")
        line.append(" cut at " + ", ".join(f"{c:g}" for c in cutoffs))
    for i, s in enumerate(series):
        mark = "──" if color else {0: "⠒⠒", 1: "••"}.get(i, MARKERS[i % len(MARKERS)] * 2)
        if not lines:
            mark = SCATTER_MARKERS[i % len(SCATTER_MARKERS)]
        line.append("  ")
        line.append(mark, style=series_style(i, color))
        line.append(f" {s.label}")
    return line


def y_limits(values: Sequence[float], log_y: bool) -> tuple[float, float]:
    """Limits that always hold a visible band: a constant series gets room around it, a series that
    never goes below zero never gets a negative axis, and a log axis never reaches zero."""
    lo, hi = min(values), max(values)
    if log_y:
        return (lo / 2, hi * 2) if hi <= lo * 1.0001 else (lo / 1.15, hi * 1.15)
    span = hi - lo
    pad = span * 0.05 if span > 1e-12 * max(1.0, abs(hi)) else max(abs(hi) * 0.1, 1e-3)
    low = lo - pad
    if lo >= 0 > low:
        low = 0.0
    return low, hi + pad


def x_ticks(steps: Sequence[float], width: int) -> tuple[list[float], list[str]] | None:
    """Whole-number ticks for whole-number steps (epochs are never 1.7); None leaves plotext's own."""
    if not steps or any(float(x) != int(x) for x in steps):
        return None
    lo, hi = int(min(steps)), int(max(steps))
    room = max(2, width // 8)
    every = max(1, math.ceil((hi - lo) / room))
    ticks = list(range(lo, hi + 1, every))
    return [float(t) for t in ticks], [str(t) for t in ticks]


def render_chart(series: Sequence[Series], width: int, height: int, *, title: str = "", log_y: bool = False,
                 cutoffs: Sequence[float] = (), color: bool = True, empty: str = "no reports yet",
                 lines: bool = True, log_x: bool = False, xticks: tuple[list[float], list[str]] | None = None
                 ) -> Text:
    """A chart of ``width`` x ``height`` cells (legend line included); safe to call from any thread.

    On a log axis, values at or below zero cannot be drawn: they are left out and the title says
    how many, and a series with nothing left says so instead of a chart.
    """
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    note = ""
    if log_y:
        series, note, empty = _positive_y(series, empty)
    if log_x:
        series = [Series(s.label, *reversed(_positive(s.values, s.steps))) for s in series]
    drawn = [s for s in series if s.steps]
    head = _legend(series, title + note, color, cutoffs, lines)
    head.truncate(width)
    if not drawn:
        return Text.assemble(head, Text(f"\n  {empty}", style="dim"))
    with PLOT_LOCK:
        text = _plot(series, drawn, width, height - 1, Axes(log_y, log_x, tuple(cutoffs), xticks), color=color,
                     lines=lines)
    body = Text.from_ansi(text, no_wrap=True)
    body.spans = [Span(s.start, s.end, _foreground_only(s.style)) for s in body.spans]
    return Text("\n").join([head, body])


def _positive_y(series: Sequence[Series], empty: str) -> tuple[list[Series], str, str]:
    """The series without values at or below zero, the title's note, and what to say if nothing is left."""
    kept = [Series(s.label, *_positive(s.steps, s.values)) for s in series]
    dropped = sum(len(a.steps) - len(b.steps) for a, b in zip(series, kept))
    if not dropped:
        return kept, " (log y)", empty
    return (kept, f" (log y; {dropped} values ≤ 0 not drawn)",
            f"no value above zero to draw on a log axis ({dropped} at or below zero); L turns log-y off")


@dataclass(frozen=True)
class Axes:
    log_y: bool
    log_x: bool
    cutoffs: tuple[float, ...]
    xticks: tuple[list[float], list[str]] | None


def log_ticks(lo: float, hi: float, count: int = 4) -> tuple[list[float], list[str]]:
    """Tick positions (in log10 space) and labels (the real values) between two log10 limits."""
    first, last = math.ceil(lo), math.floor(hi)
    if last - first >= 1:
        step = max(1, math.ceil((last - first + 1) / max(2, count)))
        positions = [float(p) for p in range(first, last + 1, step)]
    else:  # less than a decade: the 1-2-5 values inside, else evenly spaced
        nice = [math.log10(m * 10.0 ** k) for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
        positions = [p for p in nice if lo <= p <= hi]
        if len(positions) < 2:
            positions = [lo + (hi - lo) * i / max(1, count - 1) for i in range(count)]
    return positions, [f"{10 ** p:.3g}" for p in positions]


def _plot(series: Sequence[Series], drawn: Sequence[Series], width: int, height: int, axes: Axes, *, color: bool,
          lines: bool) -> str:
    """plotext's global figure, built and cleared under :data:`PLOT_LOCK` (the caller holds it).

    Log axes are drawn as linear axes over log10 of the (positive) data with the real values as
    tick labels: plotext's own log scale pads a constant series below zero and fails on it.
    """
    import plotext as plt  # lazy: ~0.3 s to import, paid in the chart worker, not at start-up

    fig = plt.figure
    fig.clear()
    try:
        fig.theme("dark" if color else "colorless")
        fig.canvas("default")
        fig.plot_size(width, height)
        _draw_series(plt, fig, series, axes, color, lines)
        _draw_axes(plt, fig, drawn, width, height, axes, color)
        return fig.build().string(colorless=not color)
    finally:
        fig.clear()


def _scale(log: bool) -> Callable[[float], float]:
    return math.log10 if log else float


def _draw_series(plt: Any, fig: Any, series: Sequence[Series], axes: Axes, color: bool, lines: bool) -> None:
    fx, fy = _scale(axes.log_x), _scale(axes.log_y)
    for i, s in enumerate(series):  # NO_COLOR: the first is a line below, the others' marks land on top of it
        if not s.steps:
            continue
        pixel = plt.pixel(foreground=COLORS[i % len(COLORS)]) if color else None
        marker = plt.marker(_shape(i, color, lines), pixel)
        xs, ys = [fx(x) for x in s.steps], [fy(y) for y in s.values]
        if len(xs) == 1:  # a single point would make a zero-width axis
            xs, ys = [xs[0], xs[0] + 1e-9], [ys[0], ys[0]]
        joined = lines and (color or i == 0)  # NO_COLOR: only the first is a line, the rest are marks
        fig.draw(fig.signal(xs, ys, marker=marker).lines(joined))


def _shape(i: int, color: bool, lines: bool) -> str:
    if not lines:
        return SCATTER_MARKERS[i % len(SCATTER_MARKERS)]
    return MARKERS[0] if color else MARKERS[i % len(MARKERS)]


def _draw_axes(plt: Any, fig: Any, drawn: Sequence[Series], width: int, height: int, axes: Axes, color: bool) -> None:
    fx, fy = _scale(axes.log_x), _scale(axes.log_y)  # cut-off lines and limits in the drawn (log10) space
    lo, hi = y_limits([v for s in drawn for v in s.values], axes.log_y)
    lo, hi = fy(lo), fy(hi)
    for c in axes.cutoffs:
        cut_pixel = plt.pixel(foreground=CUTOFF_COLOR) if color else None
        fig.draw(fig.signal([fx(c), fx(c)], [lo, hi], marker=plt.marker("braille", cut_pixel)).lines(True))
    fig.ruler(1).lim(lo, hi)
    if axes.log_y:
        fig.ruler(1).ticks(*log_ticks(lo, hi, max(2, height // 3)))
    ticks = _bottom_ticks(drawn, width, axes)
    if ticks is not None:
        fig.ruler(0).ticks(*ticks)


def _bottom_ticks(drawn: Sequence[Series], width: int, axes: Axes) -> tuple[list[float], list[str]] | None:
    steps = [x for s in drawn for x in s.steps]
    if axes.log_x:
        return log_ticks(math.log10(min(steps)), math.log10(max(steps)), max(2, width // 10))
    return axes.xticks or x_ticks(steps + list(axes.cutoffs), width)


def _foreground_only(style: str | Style) -> Style:
    if isinstance(style, str):
        style = Style.parse(style)
    return Style(color=style.color, bold=style.bold)


def _positive(steps: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(steps, values) if y > 0 and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class CurveChart(Static):
    """Shows a chart built elsewhere (a worker); asks for a rebuild when its size no longer matches."""

    DEFAULT_CSS = "CurveChart { height: 1fr; width: 1fr; }"

    class Resized(Message):
        """The chart's box changed size after it was drawn (a header grew, the terminal resized)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.built_for: tuple[int, int] | None = None

    def show(self, text: Text, size: tuple[int, int] | None = None) -> None:
        self.built_for = size
        self.update(text)
        if size is not None and size != self.chart_size():
            self.post_message(self.Resized())

    def on_resize(self) -> None:
        if self.built_for is not None and self.built_for != self.chart_size():
            self.post_message(self.Resized())

    def chart_size(self) -> tuple[int, int]:
        size = self.content_size
        return max(size.width, MIN_WIDTH), max(size.height, MIN_HEIGHT)
