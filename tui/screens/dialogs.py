"""Small modal dialogs: a y/n confirmation and the clone-with-edited-parameters form."""

from __future__ import annotations

from typing import Any, Mapping

import yaml
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from .. import format as fmt


class ConfirmScreen(ModalScreen[bool]):
    """Asks one question; ``y`` accepts, ``n`` or Escape declines (a stray key never stops a trial)."""

    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm_yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm_no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            yield Static("[b]y[/b] yes    [b]n[/b] / [b]Esc[/b] no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def parse_value(text: str, original: Any) -> Any:
    """What the user typed, read as YAML (3 -> int, 1e-3 -> float, adam -> str), typed like the original."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


class CloneScreen(ModalScreen["dict[str, Any] | None"]):
    """Every parameter of the source trial in an input; Enter queues the clone with the changed ones."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="clone_cancel")]

    def __init__(self, number: int, params: Mapping[str, Any]) -> None:
        super().__init__()
        self.number = number
        self.params = dict(params)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Clone trial {self.number} with edited parameters", id="question")
            with VerticalScroll(id="fields"):
                for name, value in self.params.items():
                    yield Label(name)
                    yield Input(fmt.param(value) if not isinstance(value, float) else repr(value),
                                id=f"param-{name}", classes="param")
            yield Static("[b]Enter[/b] queue the clone    [b]Esc[/b] cancel", classes="hint")

    def on_mount(self) -> None:
        first = self.query(Input).first() if self.query(Input) else None
        if first is not None:
            first.focus()

    @on(Input.Submitted)
    def submit(self) -> None:
        changed: dict[str, Any] = {}
        for name, original in self.params.items():
            text = self.query_one(f"#param-{name}", Input).value.strip()
            value = parse_value(text, original)
            if value != original:
                changed[name] = value
        self.dismiss(changed)

    def action_cancel(self) -> None:
        self.dismiss(None)
