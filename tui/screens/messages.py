"""The message history (``m``): every acknowledgement, refusal and notice of this session, in full.

The study screen has one line for messages, and an engine acknowledgement ("next stage launched
... engine pid 4242") is longer than 80 columns; the line shows its start and this screen shows
all of it, wrapped, newest last.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from .scrolling import ScrollingModal


class MessagesScreen(ScrollingModal):
    SCROLL_ID = "messages-scroll"
    BINDINGS = [Binding("escape,m,q", "close", "Close", id="messages_close")]

    def __init__(self, lines: Sequence[Text]) -> None:
        super().__init__()
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        body = Text("\n").join(self.lines) if self.lines else Text("no messages yet", style="dim")
        with Vertical(id="dialog", classes="messages"):
            yield Static(Text("Messages (newest last) — Esc, m or q closes", style="bold"))
            with VerticalScroll(id="messages-scroll"):
                yield Static(body, id="messages-text")

    def on_mount(self) -> None:
        self.scroller.scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
