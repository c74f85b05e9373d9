"""The health panel: every flag the engine raised (NaN, divergence, OOM, ...) with its hint.

Flags are ``events`` rows of kind ``flag`` whose data holds ``flag`` and ``hint``; the newest
come first because the question is "what just went wrong".
"""

from __future__ import annotations

import time
from typing import Sequence

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..data import FlagLine


def render_flags(lines: Sequence[FlagLine], width: int) -> Text:
    if not lines:
        return Text("no health flags: no trial went NaN, diverged or ran out of memory", style="dim")
    out = Text()
    for i, f in enumerate(lines):
        if i:
            out.append("\n")
        out.append(time.strftime("%H:%M:%S ", time.localtime(f.time)), style="dim")
        out.append(f"trial {f.trial_number if f.trial_number is not None else '-':<5} ")
        out.append_text(fmt.badges((f.flag,)))
        out.append(" " + f.message)
        if f.hint and f.hint not in f.message:
            out.append(f" — {f.hint}", style="italic")
    return out


class HealthPanel(Static):
    DEFAULT_CSS = "HealthPanel { height: auto; }"
