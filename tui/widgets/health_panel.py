"""The health panel: the study's warnings, then every flag the engine raised (NaN, divergence, OOM, ...).

Warnings are the engine's ``studies.warnings`` lines (a search pinned to a range boundary, a
pattern that never matched, an objective never reported): they come first and in full, because
the header only has room to count them. Flags are ``events`` rows of kind ``flag`` whose data
holds ``flag`` and ``hint``; the newest come first because the question is "what just went wrong".
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


def render_health(warnings: Sequence[str], lines: Sequence[FlagLine], width: int) -> Text:
    """The warnings (each one whole: the panel wraps and scrolls), a blank line, then the flags."""
    flags = render_flags(lines, width)
    if not warnings:
        return flags
    out = Text(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''} from the engine:", style="bold yellow")
    for warning in warnings:
        out.append("\n  ⚠ ", style="yellow")
        out.append(warning)
    out.append("\n\n")
    out.append_text(flags)
    return out


class HealthPanel(Static):
    DEFAULT_CSS = "HealthPanel { height: auto; }"
