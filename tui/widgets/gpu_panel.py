"""The GPU panel: per GPU utilisation and memory bars, which trial sits where, host CPU and RAM.

Readings come from the engine's ``gpu_samples`` / ``host_samples`` tables (the TUI never talks to
NVML itself: one process on the box polls the driver, everyone else reads the file). No rows
means the engine found no GPU or NVML failed, which the panel says in words.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..data import GpuLine, HostLine, ResourceView

UNAVAILABLE = "GPU readings unavailable (no NVIDIA driver answered the engine, or no engine is sampling)"
LIVE_S = 15.0  # the engine samples every 5 s: older than this, nobody is sampling (a finished study)


def render_resources(view: ResourceView, width: int) -> Text:
    """Per GPU: utilisation, memory used, trials; claimed vs used and other users' memory when known.

    "claimed" is what every hpotui trial on the host (any study, database or user) holds by its
    claims; "other" is memory of processes that belong to no claim: colleagues' jobs. Readings
    older than :data:`LIVE_S` say how old they are instead of passing for live ones.
    """
    bar_w = max(5, min(20, (width - 56) // 2))
    out = Text(no_wrap=True, overflow="ellipsis")
    if not view.gpus:
        out.append(UNAVAILABLE + "\n", style="dim")
    stale = _staleness(view)
    if stale:
        out.append(stale + "\n", style="yellow")
    for g in view.gpus:
        _gpu_line(out, g, width, bar_w)
    for h in view.hosts:
        _host_line(out, h, bar_w)
    if not view.hosts:
        out.append("host readings unavailable\n", style="dim")
    if view.unplaced:
        out.append("on CPU: " + ", ".join(view.unplaced[:20]) + (" ..." if len(view.unplaced) > 20 else ""),
                   style="dim")
    out.rstrip()
    return out


def _host_line(out: Text, h: HostLine, bar_w: int) -> None:
    ram = (h.ram_used / h.ram_total) if h.ram_used is not None and h.ram_total else None
    out.append(f"{h.host[:12]} ", style="bold")
    out.append("CPU ")
    out.append_text(fmt.bar(None if h.cpu_percent is None else h.cpu_percent / 100.0, bar_w))
    out.append(f" {fmt.number(h.cpu_percent)}%  RAM ")
    out.append_text(fmt.bar(ram, bar_w))
    out.append(f" {fmt.gib(h.ram_used)}/{fmt.gib(h.ram_total)}  load {fmt.number(h.load1)}\n")


def _gpu_line(out: Text, g: GpuLine, width: int, bar_w: int) -> None:
    util = None if g.util is None else g.util / 100.0
    mem = (g.memory_used / g.memory_total) if g.memory_used is not None and g.memory_total else None
    out.append(f"GPU{g.gpu} ", style="bold")
    out.append(f"{g.name[:14]:<14} " if width >= 100 else "")
    out.append("util ")
    out.append_text(fmt.bar(util, bar_w))
    out.append(f" {fmt.number(g.util) if g.util is not None else 'NA':>4}% mem ")
    out.append_text(fmt.bar(mem, bar_w))
    out.append(f" {fmt.gib(g.memory_used)}/{fmt.gib(g.memory_total)}")
    out.append("  " + (", ".join(g.trials) if g.trials else "free"), style="cyan" if g.trials else "dim")
    out.append("\n")
    sharing = _sharing(g)
    if sharing:
        out.append("     " + sharing + "\n", style="dim")


def _sharing(g: GpuLine) -> str:
    """``claimed 17.5G of 80.0G by 2 trials (all engines) · used 12.0G · other 4.0G``; "" when unknown."""
    parts = []
    if g.claimed_trials:
        trials = f"{g.claimed_trials} trial" + ("s" if g.claimed_trials != 1 else "")
        parts.append(f"claimed {fmt.gib(g.claimed_memory)}/{fmt.gib(g.memory_total)} by {trials} (all engines)")
        parts.append(f"used {fmt.gib(g.memory_used)}")
    if g.other_memory:
        parts.append(f"other {fmt.gib(g.other_memory)}")
    return " · ".join(parts)


def _staleness(view: ResourceView) -> str:
    times = [g.time for g in view.gpus if g.time is not None]
    if not times or view.now is None:
        return ""
    age = view.now - max(times)
    if age <= LIVE_S:
        return ""
    return f"last reading {fmt.duration(age)} ago, not live (no engine is sampling this box)"


class GpuPanel(Static):
    DEFAULT_CSS = "GpuPanel { height: auto; }"
