"""The ``?`` screen: every key of the screen below, built from its bindings so it never drifts."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from .scrolling import ScrollingModal


def key_label(key: str) -> str:
    names = {"question_mark": "?", "plus": "+", "minus": "-", "space": "space", "escape": "Esc", "enter": "Enter",
             "slash": "/"}
    return "/".join(names.get(k, k) for k in key.split(","))


class HelpScreen(ScrollingModal):
    SCROLL_ID = "help-scroll"
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close", id="help_close")]

    def __init__(self, below: Screen, app_bindings: list[Binding]) -> None:
        super().__init__()
        self.below = below
        self.app_bindings = app_bindings

    def compose(self) -> ComposeResult:
        lines = [f"[b]Keys — {getattr(self.below, 'TITLE_TEXT', 'hpotui')}[/b]", ""]
        for b in [*getattr(self.below, "BINDINGS", []), *self.app_bindings]:
            if isinstance(b, Binding) and b.description:
                lines.append(f"  [b]{key_label(b.key):<10}[/b] {b.tooltip or b.description}")
        lines += ["", "In every list: j/k or arrows move, Home/End go to the first / last row.",
                  "Quitting never stops a study: its engine runs on in the background.",
                  "Esc, q or ? closes this help."]
        with Vertical(id="dialog"):
            with VerticalScroll(id="help-scroll"):
                yield Static("\n".join(lines), id="help-text")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
