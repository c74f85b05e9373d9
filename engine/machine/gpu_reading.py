"""One GPU at one moment, and what can list them: the value the monitor produces and placement decides on.

Its own module so that :mod:`engine.machine.resources` (which reads GPUs) and :mod:`engine.gpus.placement`
(pure functions over readings) both import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment; ``None`` in any field means "unavailable" (shown as NA).

    ``index`` is NVML's index, which is PCI bus order; trials get it through
    ``CUDA_VISIBLE_DEVICES`` together with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA
    numbers the GPUs the same way (see :func:`engine.gpus.placement.trial_gpu_env`).
    """

    index: int
    uuid: str | None = None
    name: str | None = None
    util_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


class GpuLister(Protocol):
    """What lists GPU readings and says why it cannot (:class:`engine.machine.resources.ResourceMonitor`)."""

    unavailable_reason: str | None

    def gpus(self) -> list[GpuReading]: ...
