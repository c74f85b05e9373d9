"""The NVML layer: one small interface, the real one over ``pynvml`` and a fake for tests.

Why an interface at all: NVML is hardware. Placement, the NA handling and the
trial-to-GPU mapping must be tested on machines with no GPU (CI, laptops), so everything
above this file talks to :class:`NvmlLike` and never to ``pynvml`` directly. The real
backend stays thin: it turns device indices into handles and units into ours (watts,
bytes); it raises whatever NVML raises. Turning errors into "unavailable" is the job of
:class:`engine.resources.ResourceMonitor`, in one place, like nvitop's ``nvmlQuery``.

:class:`FakeNvml` is a deliberate part of the engine, not of the tests only: it is the
simulated hardware the placement and monitor tests (and any demo of the GPU panel)
run against. It can be told to fail, at start or in the middle of a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

GIB = 1024 ** 3


class NvmlLike(Protocol):
    """What the monitor needs from NVML, by device index. Any method may raise."""

    def init(self) -> None:
        """Load the library and initialise it; raises when there is no driver."""

    def shutdown(self) -> None:
        """Release the library (paired with each successful ``init``)."""

    def device_count(self) -> int: ...

    def name(self, index: int) -> str: ...

    def uuid(self, index: int) -> str: ...

    def utilization(self, index: int) -> float:
        """Percent of the last sample period in which a kernel ran (0-100)."""

    def memory(self, index: int) -> tuple[int, int]:
        """(used bytes, total bytes) of device memory."""

    def temperature(self, index: int) -> float:
        """Degrees Celsius of the GPU die."""

    def power_w(self, index: int) -> float:
        """Board power draw in watts."""

    def processes(self, index: int) -> dict[int, int | None]:
        """Compute processes on the device: pid -> bytes of device memory (None: not reported)."""


class PynvmlBackend:
    """:class:`NvmlLike` over ``nvidia-ml-py`` (imported as ``pynvml``).

    ``pynvml`` is imported in :meth:`init`, not at module import, so that a machine without
    the package still imports the engine and simply reports "GPU readings unavailable".
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: dict[int, Any] = {}

    def init(self) -> None:
        import pynvml  # noqa: PLC0415 - see the class docstring

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = {}  # handles from a previous init are not valid after a re-init

    def shutdown(self) -> None:
        if self._nvml is not None:
            self._handles = {}
            self._nvml.nvmlShutdown()

    def _handle(self, index: int) -> Any:
        if self._nvml is None:
            raise RuntimeError("NVML is not initialised")
        if index not in self._handles:
            self._handles[index] = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return self._handles[index]

    def device_count(self) -> int:
        if self._nvml is None:
            raise RuntimeError("NVML is not initialised")
        return int(self._nvml.nvmlDeviceGetCount())

    def name(self, index: int) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handle(index)))

    def uuid(self, index: int) -> str:
        return _text(self._nvml.nvmlDeviceGetUUID(self._handle(index)))

    def utilization(self, index: int) -> float:
        return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle(index)).gpu)

    def memory(self, index: int) -> tuple[int, int]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle(index))
        return int(info.used), int(info.total)

    def temperature(self, index: int) -> float:
        return float(self._nvml.nvmlDeviceGetTemperature(self._handle(index), self._nvml.NVML_TEMPERATURE_GPU))

    def power_w(self, index: int) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle(index)) / 1000.0  # NVML reports milliwatts

    def processes(self, index: int) -> dict[int, int | None]:
        handle = self._handle(index)
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)  # v3: drivers >= 510
        except self._nvml.NVMLError_FunctionNotFound:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle)
        result: dict[int, int | None] = {}
        for proc in procs:
            pid, used = int(proc.pid), proc.usedGpuMemory  # pynvml turns NVML_VALUE_NOT_AVAILABLE into None
            previous = result.get(pid, 0)  # one pid can hold several contexts: add them up
            result[pid] = None if used is None or previous is None else previous + int(used)
        return result


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class FakeNvmlError(RuntimeError):
    """What :class:`FakeNvml` raises, standing in for ``pynvml.NVMLError``."""


@dataclass
class FakeGpu:
    """One simulated GPU; change the fields between readings to simulate load."""

    name: str = "Fake GPU 80GB"
    memory_total: int = 80 * GIB
    memory_used: int = 0
    util: float = 0.0
    temperature: float = 35.0
    power_w: float = 60.0
    processes: dict[int, int | None] = field(default_factory=dict)
    unsupported: frozenset[str] = frozenset()  # e.g. {"power_w"}: that reading raises "Not Supported"


class FakeNvml:
    """Simulated NVML for tests: GPU count, load, foreign processes, failure on demand.

    ``calls`` counts every device query so tests can see the monitor's cache at work.
    """

    def __init__(self, gpus: int | list[FakeGpu] = 0, init_error: str | None = None) -> None:
        self.gpus: list[FakeGpu] = [FakeGpu() for _ in range(gpus)] if isinstance(gpus, int) else list(gpus)
        self.init_error = init_error
        self.failure: str | None = None
        self.initialised = False
        self.calls = 0

    def fail(self, message: str = "GPU is lost") -> None:
        """From now on every call raises, as NVML does when the driver goes away mid-run."""
        self.failure = message

    def recover(self) -> None:
        self.failure = None

    def _check(self, index: int | None = None, reading: str | None = None) -> FakeGpu | None:
        self.calls += 1
        if self.failure is not None:
            raise FakeNvmlError(self.failure)
        if not self.initialised:
            raise FakeNvmlError("Uninitialized")
        if index is None:
            return None
        if not 0 <= index < len(self.gpus):
            raise FakeNvmlError("Invalid Argument")
        gpu = self.gpus[index]
        if reading in gpu.unsupported:
            raise FakeNvmlError("Not Supported")
        return gpu

    def init(self) -> None:
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        if self.failure is not None:
            raise FakeNvmlError(self.failure)
        self.initialised = True

    def shutdown(self) -> None:
        self.initialised = False

    def device_count(self) -> int:
        self._check()
        return len(self.gpus)

    def name(self, index: int) -> str:
        return self._gpu(index, "name").name

    def uuid(self, index: int) -> str:
        self._gpu(index, "uuid")
        return f"GPU-fake-{index:04d}"

    def utilization(self, index: int) -> float:
        return self._gpu(index, "util").util

    def memory(self, index: int) -> tuple[int, int]:
        gpu = self._gpu(index, "memory")
        return gpu.memory_used, gpu.memory_total

    def temperature(self, index: int) -> float:
        return self._gpu(index, "temperature").temperature

    def power_w(self, index: int) -> float:
        return self._gpu(index, "power_w").power_w

    def processes(self, index: int) -> dict[int, int | None]:
        return dict(self._gpu(index, "processes").processes)

    def _gpu(self, index: int, reading: str) -> FakeGpu:
        gpu = self._check(index, reading)
        assert gpu is not None
        return gpu
