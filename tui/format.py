"""How numbers look on screen: durations, objective values, bars and status colours.

Kept apart from the widgets so the same text appears in the table, the header and the tests.
Colours are Rich styles; under NO_COLOR Textual drops them and the words still say it all.
"""

from __future__ import annotations

import math

from rich.text import Text

STATUS_STYLES = {
    "running": "bold cyan", "paused": "bold magenta", "queued": "dim", "completed": "green",
    "pruned": "yellow", "stopped": "magenta", "failed": "bold red", "diverged": "bold red",
    "interrupted": "yellow",
}
FLAG_BADGES = {"nan": "NaN", "divergence": "DIV", "oom": "OOM", "plateau": "FLAT", "not_learning": "FLAT",
               "overfitting": "OVFT", "overfit": "OVFT", "slow": "SLOW", "dead": "DEAD"}


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def param(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def step(last: float | None, maximum: float | None) -> str:
    if last is None:
        return "-"
    if maximum is None:
        return f"{last:g}"
    return f"{last:g}/{maximum:g}"


def status(text: str) -> Text:
    return Text(text, style=STATUS_STYLES.get(text, ""))


def badges(flags: tuple[str, ...]) -> Text:
    out = Text()
    for i, flag in enumerate(flags):
        if i:
            out.append(" ")
        out.append(FLAG_BADGES.get(flag, flag[:4].upper()), style="reverse red" if flag in ("nan", "divergence",
                                                                                              "oom") else "reverse yellow")
    return out


def bar(fraction: float | None, width: int) -> Text:
    """``[#####.....]``-style bar; unicode blocks for the filled part, dots for the rest."""
    if fraction is None or not math.isfinite(fraction):
        return Text("NA".ljust(width), style="dim")
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    style = "green" if fraction < 0.5 else "yellow" if fraction < 0.85 else "red"
    return Text.assemble(("█" * filled, style), ("·" * (width - filled), "dim"))


def gib(n: int | None) -> str:
    return "NA" if n is None else f"{n / 2**30:.1f}G"
