"""The GPU panel: per GPU utilisation and memory bars, which trial sits where, host CPU and RAM.

Readings come from the engine's ``gpu_samples`` / ``host_samples`` tables (the TUI never talks to
NVML itself: one process on the box polls the driver, everyone else reads the file). No rows
means the engine found no GPU or NVML failed, which the panel says in words.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..data import ResourceView

UNAVAILABLE = "GPU readings unavailable (no NVIDIA driver answered the engine, or no engine is sampling)"


def render_resources(view: ResourceView, width: int) -> Text:
    bar_w = max(5, min(20, (width - 56) // 2))
    out = Text(no_wrap=True, overflow="ellipsis")
    if not view.gpus:
        out.append(UNAVAILABLE + "\n", style="dim")
    for g in view.gpus:
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
    for h in view.hosts:
        ram = (h.ram_used / h.ram_total) if h.ram_used is not None and h.ram_total else None
        out.append(f"{h.host[:12]} ", style="bold")
        out.append("CPU ")
        out.append_text(fmt.bar(None if h.cpu_percent is None else h.cpu_percent / 100.0, bar_w))
        out.append(f" {fmt.number(h.cpu_percent)}%  RAM ")
        out.append_text(fmt.bar(ram, bar_w))
        out.append(f" {fmt.gib(h.ram_used)}/{fmt.gib(h.ram_total)}  load {fmt.number(h.load1)}\n")
    if not view.hosts:
        out.append("host readings unavailable\n", style="dim")
    if view.unplaced:
        out.append("on CPU: " + ", ".join(view.unplaced[:20]) + (" ..." if len(view.unplaced) > 20 else ""),
                   style="dim")
    out.rstrip()
    return out


class GpuPanel(Static):
    DEFAULT_CSS = "GpuPanel { height: auto; }"
