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
from typing import Any, Sequence

from rich.style import Style
from rich.text import Span, Text
from textual.message import Message
from textual.widgets import Static

PLOT_LOCK = threading.Lock()
COLORS = (10, 9, 12, 11, 13, 14, 3, 6)  # terminal palette indices: green, red, blue, yellow, ...
MARKERS = ("braille", "dot", "+", "x", "*", "o", "#", "%")  # told apart without colour (NO_COLOR)
CUTOFF_COLOR = 3
MIN_WIDTH, MIN_HEIGHT = 16, 5


@dataclass(frozen=True)
class Series:
    label: str
    steps: Sequence[float]
    values: Sequence[float]


def _legend(series: Sequence[Series], title: str, color: bool, cutoffs: Sequence[float]) -> Text:
    line = Text(title, style="bold")
    for i, s in enumerate(series):
        mark = "──" if color else {0: "⠒⠒", 1: "••"}.get(i, MARKERS[i % len(MARKERS)] * 2)
        line.append("  ")
        line.append(mark, style=Style(color=f"color({COLORS[i % len(COLORS)]})") if color else "")
        line.append(f" {s.label}")
    if cutoffs:
        line.append("  ")
        line.append("│", style=Style(color=f"color({CUTOFF_COLOR})") if color else "")
        line.append(" pruned at " + ", ".join(f"{c:g}" for c in cutoffs))
    return line


def render_chart(series: Sequence[Series], width: int, height: int, *, title: str = "", log_y: bool = False,
                 cutoffs: Sequence[float] = (), color: bool = True, empty: str = "no reports yet",
                 lines: bool = True, log_x: bool = False) -> Text:
    """A chart of ``width`` x ``height`` cells (legend line included); safe to call from any thread."""
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    if log_y:
        series = [Series(s.label, *_positive(s.steps, s.values)) for s in series]
    if log_x:
        series = [Series(s.label, *reversed(_positive(s.values, s.steps))) for s in series]
    drawn = [s for s in series if s.steps]
    head = _legend(series, title + (" (log y)" if log_y else ""), color, cutoffs)
    head.truncate(width)
    if not drawn:
        body = Text(f"\n  {empty}", style="dim")
        return Text.assemble(head, body)
    import plotext as plt

    with PLOT_LOCK:
        fig = plt.figure
        fig.clear()
        fig.theme("dark" if color else "colorless")
        fig.canvas("default")
        fig.plot_size(width, height - 1)
        for i, s in enumerate(series):
            if not s.steps:
                continue
            pixel = plt.pixel(foreground=COLORS[i % len(COLORS)]) if color else None
            marker = plt.marker(MARKERS[0] if color else MARKERS[i % len(MARKERS)], pixel)
            xs, ys = list(s.steps), list(s.values)
            if len(xs) == 1:  # a single point would make a zero-width axis
                xs, ys = [xs[0], xs[0] + 1e-9], [ys[0], ys[0]]
            fig.draw(fig.signal(xs, ys, marker=marker).lines(lines))
        if cutoffs:
            lo = min(min(s.values) for s in drawn)
            hi = max(max(s.values) for s in drawn)
            for c in cutoffs:
                cut_pixel = plt.pixel(foreground=CUTOFF_COLOR) if color else None
                fig.draw(fig.signal([c, c], [lo, hi], marker=plt.marker("braille", cut_pixel)).lines(True))
        if log_y:
            fig.ruler(1).scale("log")
        if log_x:
            fig.ruler(0).scale("log")
        text = fig.build().string(colorless=not color)
        fig.clear()
    body = Text.from_ansi(text, no_wrap=True)
    body.spans = [Span(s.start, s.end, _foreground_only(s.style)) for s in body.spans]
    return Text("\n").join([head, body])


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
