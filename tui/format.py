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
    "interrupted": "yellow", "gone": "bold red", "unwatched": "yellow",
    "invalid": "italic yellow",  # the trial refused its configuration: not a failure, not counted
}
FLAG_BADGES = {"nan": "NaN", "divergence": "DIV", "oom": "OOM", "plateau": "FLAT", "not_learning": "FLAT",
               "overfitting": "OVFT", "overfit": "OVFT", "underfitting": "UNDR", "initial_loss": "INIT",
               "update_ratio": "UPDR", "low_gpu_util": "LOWGPU", "slow": "SLOW", "dead": "DEAD"}
FLAG_WORDS = {"nan": "NaN", "divergence": "diverging", "oom": "out of memory", "plateau": "flat",
              "not_learning": "not learning", "overfitting": "overfitting", "overfit": "overfitting",
              "underfitting": "underfitting", "initial_loss": "bad initial loss", "update_ratio": "update ratio",
              "low_gpu_util": "low GPU use"}
"""The same flags in words, used when the flags column has the room (wide terminals)."""
SEVERE_FLAGS = ("nan", "divergence", "oom")


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


def badge(flag: str, wide: bool = False) -> str:
    if wide:
        return FLAG_WORDS.get(flag, flag.replace("_", " "))
    return FLAG_BADGES.get(flag, flag[:6].upper())


def badges(flags: tuple[str, ...], width: int | None = None, clone_of: int | None = None) -> Text:
    """Flag badges, in words when ``width`` leaves room for them, cut to ``+N`` when it does not."""
    wide = width is not None and badges_width(flags, True, clone_of) <= width
    items = [(f"↻#{clone_of}", "cyan")] if clone_of is not None else []
    items += [(badge(f, wide), "reverse red" if f in SEVERE_FLAGS else "reverse yellow") for f in flags]
    out = Text()
    for i, (label, style) in enumerate(items):
        if width is not None and i and not _fits(out, label, width, last=i == len(items) - 1):
            out.append(f" +{len(items) - i}", style="bold")
            break
        out.append(" " if i else "")
        out.append(label, style=style)
    return out


def _fits(shown: Text, label: str, width: int, last: bool) -> bool:
    """Whether ``label`` still fits after ``shown``, leaving room for a ``+N`` unless it is the last one."""
    return shown.cell_len + 1 + len(label) + (0 if last else 3) <= width


def badges_width(flags: tuple[str, ...], wide: bool, clone_of: int | None = None) -> int:
    labels = [badge(f, wide) for f in flags] + ([f"↻#{clone_of}"] if clone_of is not None else [])
    return sum(len(x) for x in labels) + max(0, len(labels) - 1)


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
