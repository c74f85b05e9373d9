"""The NVML layer: one small interface, the real one over ``pynvml`` and a fake for tests.

Why an interface at all: NVML is hardware. Placement, the NA handling and the
trial-to-GPU mapping must be tested on machines with no GPU (CI, laptops), so everything
above this file talks to :class:`NvmlLike` and never to ``pynvml`` directly. The real
backend stays thin: it turns device indices into handles and units into ours (watts,
bytes); it raises whatever NVML raises. Turning errors into "unavailable" is the job of
:class:`engine.machine.resources.ResourceMonitor`, in one place, like nvitop's ``nvmlQuery``.

:class:`FakeNvml` is a deliberate part of the engine, not of the tests only: it is the
simulated hardware the placement and monitor tests (and any demo of the GPU panel)
run against. It can be told to fail, at start or in the middle of a run.

:class:`FileFakeNvml` is the same simulated hardware for *other processes*: with
``HPOTUI_FAKE_NVML=DIR`` every engine (and ``hpotui launch``'s GPU check) reads its GPUs from
``DIR/gpus.json``, and trial processes "allocate" device memory with :func:`fake_cuda_allocate`,
which refuses what does not fit, as ``cudaMalloc`` does. That is how several engines, several
database files and several Unix users are tested against one scripted box without a GPU.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

GIB = 1024 ** 3
FAKE_ENV = "HPOTUI_FAKE_NVML"


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


# --- the same simulated box shared by processes (HPOTUI_FAKE_NVML) ---------------------------------

def default_backend() -> NvmlLike:
    """The real NVML, or the file-backed fake when ``HPOTUI_FAKE_NVML`` names its folder."""
    folder = os.environ.get(FAKE_ENV)
    return FileFakeNvml(Path(folder)) if folder else PynvmlBackend()


def write_fake_box(folder: Path, gpus: list[FakeGpu]) -> None:
    """Describe the simulated GPUs in ``folder/gpus.json`` (memory_used: what other jobs hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "allocations").mkdir(exist_ok=True)
    os.chmod(folder, 0o777)  # trials of other users in the multi-user tests allocate here too
    os.chmod(folder / "allocations", 0o777)
    rows = [{"name": g.name, "memory_total": g.memory_total, "memory_used": g.memory_used, "util": g.util,
             "processes": {str(pid): used for pid, used in g.processes.items()}} for g in gpus]
    (folder / "gpus.json").write_text(json.dumps(rows))
    os.chmod(folder / "gpus.json", 0o644)
    (folder / "allocations.lock").touch()
    os.chmod(folder / "allocations.lock", 0o644)  # flock needs only a read-only descriptor


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fake_allocations(folder: Path) -> dict[int, dict[int, int]]:
    """GPU index -> {pid: bytes} that live processes allocated on the simulated box."""
    result: dict[int, dict[int, int]] = {}
    for path in (folder / "allocations").glob("*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(int(entry["pid"])):
            table = result.setdefault(int(entry["gpu"]), {})
            table[int(entry["pid"])] = table.get(int(entry["pid"]), 0) + int(entry["bytes"])
    return result


def fake_cuda_allocate(folder: Path, gpu: int, size: int, pid: int | None = None) -> bool:
    """Take ``size`` bytes on simulated GPU ``gpu`` for process ``pid`` (default: this one).

    Refused (False) when it does not fit beside what other jobs and live processes hold;
    the check and the write happen under one lock, so two processes never both get the
    last bytes. A process's memory is freed when it exits (or :func:`fake_cuda_free`).
    """
    pid = os.getpid() if pid is None else pid
    with open(folder / "allocations.lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        box = json.loads((folder / "gpus.json").read_text())
        used = int(box[gpu]["memory_used"]) + sum(fake_allocations(folder).get(gpu, {}).values())
        if used + size > int(box[gpu]["memory_total"]):
            return False
        target = folder / "allocations" / f"{pid}-{gpu}-{os.urandom(4).hex()}.json"
        target.write_text(json.dumps({"pid": pid, "gpu": gpu, "bytes": size}))
        os.chmod(target, 0o666)
        return True


def fake_cuda_free(folder: Path, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    for path in (folder / "allocations").glob(f"{pid}-*.json"):
        path.unlink(missing_ok=True)


class FileFakeNvml(FakeNvml):
    """:class:`FakeNvml` whose GPUs are ``folder/gpus.json`` plus the live fake allocations, re-read on each query."""

    def __init__(self, folder: Path) -> None:
        super().__init__(0)
        self.folder = folder

    def _reload(self) -> None:
        try:
            rows = json.loads((self.folder / "gpus.json").read_text())
        except (OSError, ValueError) as exc:
            raise FakeNvmlError(f"fake NVML box unreadable: {exc}") from None
        allocated = fake_allocations(self.folder)
        gpus = []
        for index, row in enumerate(rows):
            processes: dict[int, int | None] = {int(pid): used for pid, used in (row.get("processes") or {}).items()}
            mine = allocated.get(index, {})
            processes.update(mine)
            gpus.append(FakeGpu(name=row.get("name", "Fake GPU 80GB"), memory_total=int(row["memory_total"]),
                                memory_used=int(row.get("memory_used", 0)) + sum(mine.values()),
                                util=float(row.get("util", 0.0)), processes=processes))
        self.gpus = gpus

    def init(self) -> None:
        super().init()
        self._reload()

    def device_count(self) -> int:
        self._reload()
        return super().device_count()

    def memory(self, index: int) -> tuple[int, int]:
        self._reload()
        return super().memory(index)

    def processes(self, index: int) -> dict[int, int | None]:
        self._reload()
        return super().processes(index)
