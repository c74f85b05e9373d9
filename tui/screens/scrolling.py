"""A modal screen of long text that scrolls by key: the help (``?``) and the message history (``m``)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen


class ScrollingModal(ModalScreen[None]):
    """``j``/``k``, the arrows, Home and End scroll the ``VerticalScroll`` whose id is ``SCROLL_ID``.

    Subclasses add their own close binding; Textual merges their BINDINGS with these.
    """

    SCROLL_ID: ClassVar[str]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j,down", "scroll(1)", show=False), Binding("k,up", "scroll(-1)", show=False),
        Binding("home", "edge(0)", show=False), Binding("end", "edge(1)", show=False)]

    @property
    def scroller(self) -> VerticalScroll:
        return self.query_one(f"#{self.SCROLL_ID}", VerticalScroll)

    def action_scroll(self, delta: int) -> None:
        self.scroller.scroll_to(y=self.scroller.scroll_y + delta, animate=False)

    def action_edge(self, end: int) -> None:
        self.scroller.scroll_end(animate=False) if end else self.scroller.scroll_home(animate=False)
