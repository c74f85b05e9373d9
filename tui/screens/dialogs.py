"""Small modal dialogs: a y/n confirmation and the clone-with-edited-parameters form."""

from __future__ import annotations

from typing import Any, Mapping

import yaml
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
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
            yield Static(Text(self.question), id="question")
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


def range_note(name: str, value: Any, spec: Mapping[str, Any]) -> str:
    """Why a typed value lies outside the searched range (accepted, but the user should know), or ''."""
    if spec.get("type") == "choice":
        values = list(spec.get("values", []))
        return "" if not values or value in values else f"{name}={value!r} is not one of {values}"
    low, high = spec.get("low"), spec.get("high")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if isinstance(low, (int, float)) and value < low or isinstance(high, (int, float)) and value > high:
        return f"{name}={value:g} is outside the searched range [{low:g}, {high:g}]"
    return ""


class CloneScreen(ModalScreen["tuple[dict[str, Any], str] | None"]):
    """Every parameter of the source trial on one line each; Enter queues the clone with the changed ones.

    A value outside the range the study searched is accepted (that is what a clone is for) with
    a visible note, here while typing and in the acknowledgement afterwards.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="clone_cancel")]

    def __init__(self, number: int, params: Mapping[str, Any], ranges: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> None:
        super().__init__()
        self.number = number
        self.params = dict(params)
        self.ranges = dict(ranges or {})

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="clone"):
            yield Static(f"Clone trial {self.number} with edited parameters", id="question")
            yield Static("[b]Enter[/b] queue the clone   [b]Tab[/b] next field   [b]Esc[/b] cancel", classes="hint")
            with VerticalScroll(id="fields"):
                for name, value in self.params.items():
                    with Horizontal(classes="field-row"):
                        yield Label(name, classes="field-name")
                        yield Input(fmt.param(value) if not isinstance(value, float) else repr(value),
                                    id=f"param-{name}", classes="param")
            yield Static("", id="clone-note")

    def on_mount(self) -> None:
        first = self.query(Input).first() if self.query(Input) else None
        if first is not None:
            first.focus()

    def _changed(self) -> tuple[dict[str, Any], list[str]]:
        changed: dict[str, Any] = {}
        notes = []
        for name, original in self.params.items():
            text = self.query_one(f"#param-{name}", Input).value.strip()
            value = parse_value(text, original)
            if value != original:
                changed[name] = value
                note = range_note(name, value, self.ranges.get(name, {}))
                if note:
                    notes.append(note)
        return changed, notes

    @on(Input.Changed)
    def _typed(self) -> None:
        _, notes = self._changed()
        self.query_one("#clone-note", Static).update(
            Text("; ".join(notes) + " — accepted, outside the search", style="bold yellow") if notes else Text())

    @on(Input.Submitted)
    def submit(self) -> None:
        changed, notes = self._changed()
        self.dismiss((changed, "; ".join(n + " (outside the search, accepted)" for n in notes)))

    def action_cancel(self) -> None:
        self.dismiss(None)
