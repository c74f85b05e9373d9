"""What the box has and what each trial uses: GPU readings (NVML), host and per-trial CPU/RAM (psutil).

Why NA instead of exceptions: the engine runs for hours on a shared machine. A driver
upgrade, a GPU falling off the bus or a container without NVML must never stop a study;
it only turns the numbers into "unavailable". Every NVML call therefore goes through one
wrapper (:meth:`ResourceMonitor._query`, after nvitop's ``nvmlQuery``) that returns
``None`` on any error, and :meth:`ResourceMonitor.available` says whether NVML answers.

Readings are cached for ``cache_s`` seconds (NVML calls take about a millisecond each per
GPU, and the TUI, the placement and the sampler all ask), names and UUIDs for good.

The hints at the bottom are pure functions: history or stderr text in, hint out.
Placement lives beside this file in :mod:`engine.gpus.placement` (pure functions, no I/O); its
public functions are re-exported here so the engine has one module to import.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

import psutil

from ..gpus.placement import (
    check_request, claimed_fractions, claims_for, claims_from_rows, cuda_visible_devices, place_trial,
    trial_gpu_env, why_waiting,
)  # re-exported: the engine has one module to import for resources
from .gpu_reading import GpuReading
from .resources_nvml import NvmlLike, default_backend

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


def _locked(method: F) -> F:
    """Run a ResourceMonitor method under its lock (caches and psutil baselines are shared state)."""
    @functools.wraps(method)
    def wrapper(self: "ResourceMonitor", *args: object, **kwargs: object) -> object:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class HostReading:
    """The machine as a whole. ``ram_used_bytes`` is total minus *available* (what ``free`` calls used)."""

    cpu_percent: float | None = None
    cpu_count: int | None = None
    ram_used_bytes: int | None = None
    ram_total_bytes: int | None = None
    load_1m: float | None = None
    load_5m: float | None = None
    load_15m: float | None = None


@dataclass(frozen=True)
class TrialUsage:
    """What one trial's process tree uses.

    ``cpu_percent`` is summed over processes, so 250 means two and a half cores; it is
    ``None`` on the first reading of a trial (CPU time needs two readings). ``rss_bytes``
    sums RSS over the tree, which counts copy-on-write pages shared by forked dataloader
    workers more than once: an upper bound. ``gpu_memory_bytes`` is what NVML attributes
    to the tree's pids (``None`` when NVML is unavailable or does not report it);
    ``gpu_util_percent`` is the mean utilisation of the GPUs the trial uses, which other
    trials sharing a GPU contribute to (NVML has no reliable per-process figure).
    """

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    gpu_util_percent: float | None = None
    gpu_indices: tuple[int, ...] = ()
    pids: tuple[int, ...] = ()


def _gpu_memory_of(members: set[int], on_gpu: Mapping[int, Mapping[int, int | None]],
                   nvml_ok: bool) -> tuple[int | None, set[int]]:
    """GPU memory held by a trial's processes and the GPUs they are on. NA (None) when NVML is
    down or any one process's amount is unknown: a partial sum would read as a smaller trial."""
    gpu_memory: int | None = 0 if nvml_ok else None
    used: set[int] = set()
    for index, table in on_gpu.items():
        for pid in members & table.keys():
            used.add(index)
            amount = table[pid]
            gpu_memory = None if amount is None or gpu_memory is None else gpu_memory + amount
    return gpu_memory, used


class ResourceMonitor:
    """Readings of this machine that never raise; one per engine, safe to share between threads.

    ``nvml`` defaults to the real :class:`~engine.machine.resources_nvml.PynvmlBackend`; tests pass a
    :class:`~engine.machine.resources_nvml.FakeNvml`. After NVML fails (at start or mid-run),
    :meth:`available` is False, :attr:`unavailable_reason` says why, :meth:`gpus` keeps
    returning the GPUs it knew with their live fields ``None``, and every ``retry_s``
    seconds the monitor tries NVML again.
    """

    def __init__(self, nvml: NvmlLike | None = None, *, cache_s: float = 2.0, retry_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml: NvmlLike = nvml if nvml is not None else default_backend()
        self._cache_s = cache_s
        self._retry_s = retry_s
        self._clock = clock
        self._ok = False
        self._initialised = False
        self._last_try = -math.inf
        self._last_error = ""
        self.unavailable_reason: str | None = None
        self._static: list[GpuReading] = []  # index, uuid, name, total memory: fixed while the driver runs
        self._gpus_cache: tuple[float, list[GpuReading]] | None = None
        self._procs_cache: tuple[float, dict[int, dict[int, int | None]]] | None = None
        self._processes: dict[int, psutil.Process] = {}  # kept between calls: cpu_percent needs a baseline
        self._cpu_before = _cpu_busy_total()
        self._cpu_percent: float | None = None
        self._lock = threading.RLock()  # the sampler thread and the study loop may both ask
        self._start()

    # --- NVML, through one wrapper -------------------------------------------------------

    def _query(self, fn: Callable[..., T], *args: object) -> T | None:
        """Call NVML; any error becomes ``None`` and is remembered for :attr:`unavailable_reason`."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - NVML raises many classes; none may stop the engine
            self._last_error = _describe(exc)
            return None

    def _start(self) -> None:
        """(Re)initialise NVML and learn the GPUs; on failure keep the GPUs known before."""
        self._last_try = self._clock()
        if self._initialised:
            self._query(self._nvml.shutdown)
            self._initialised = False
        try:
            self._nvml.init()
            self._initialised = True
            count = self._nvml.device_count()
        except Exception as exc:  # noqa: BLE001 - no driver, no library, no permission: all mean "no GPUs"
            self._lost(_describe(exc))
            return
        static = []
        for i in range(count):
            memory = self._query(self._nvml.memory, i)
            static.append(GpuReading(index=i, uuid=self._query(self._nvml.uuid, i), name=self._query(self._nvml.name, i),
                                     memory_total_bytes=None if memory is None else int(memory[1])))
        self._static = static
        self._ok = True
        self.unavailable_reason = None
        self._gpus_cache = self._procs_cache = None

    def _lost(self, reason: str) -> None:
        self._ok = False
        self.unavailable_reason = reason or "NVML stopped answering"
        self._last_try = self._clock()
        self._gpus_cache = self._procs_cache = None

    def _retry_if_due(self) -> None:
        if not self._ok and self._clock() - self._last_try >= self._retry_s:
            self._start()

    @_locked
    def available(self) -> bool:
        """True while NVML answers; False with no driver, no GPU library, or after a failure."""
        self._retry_if_due()
        return self._ok

    @_locked
    def gpus(self) -> list[GpuReading]:
        """Every GPU NVML knows, in index order; live fields ``None`` when unavailable.

        An empty list means NVML never worked on this machine (no GPU, no driver).
        """
        now = self._clock()
        if self._gpus_cache is not None and now - self._gpus_cache[0] < self._cache_s:
            return list(self._gpus_cache[1])
        self._retry_if_due()
        if not self._ok:
            return list(self._static)
        readings, answered = [], False
        for known in self._static:
            i = known.index
            util = self._query(self._nvml.utilization, i)
            memory = self._query(self._nvml.memory, i)
            temperature = self._query(self._nvml.temperature, i)
            power = self._query(self._nvml.power_w, i)
            answered = answered or any(v is not None for v in (util, memory, temperature, power))
            readings.append(replace(
                known,
                util_percent=None if util is None else float(util),
                memory_used_bytes=None if memory is None else int(memory[0]),
                memory_total_bytes=known.memory_total_bytes if memory is None else int(memory[1]),
                temperature_c=None if temperature is None else float(temperature),
                power_w=None if power is None else float(power),
            ))
        if self._static and not answered:  # not one GPU answered anything: NVML itself is gone
            self._lost(self._last_error)
            return list(self._static)
        self._gpus_cache = (now, readings)
        return list(readings)

    @_locked
    def gpu_processes(self) -> dict[int, dict[int, int | None]]:
        """GPU index -> {pid: device memory bytes or None}; GPUs whose list could not be read are absent."""
        now = self._clock()
        if self._procs_cache is not None and now - self._procs_cache[0] < self._cache_s:
            return self._procs_cache[1]
        self._retry_if_due()
        if not self._ok:
            return {}
        result: dict[int, dict[int, int | None]] = {}
        for known in self._static:
            procs = self._query(self._nvml.processes, known.index)
            if procs is not None:
                result[known.index] = dict(procs)
        self._procs_cache = (now, result)
        return result

    # --- host and trials (psutil) ----------------------------------------------------------

    @_locked
    def host(self) -> HostReading:
        """CPU % since the previous call (or since the monitor was made), RAM and load average."""
        busy_total = _cpu_busy_total()
        if busy_total is not None and self._cpu_before is not None:
            d_busy, d_total = busy_total[0] - self._cpu_before[0], busy_total[1] - self._cpu_before[1]
            if d_total > 0:  # two calls within one clock tick: keep the last figure
                self._cpu_percent = max(0.0, min(100.0, 100.0 * d_busy / d_total))
                self._cpu_before = busy_total
        elif busy_total is not None:
            self._cpu_before = busy_total
        memory = _safe(psutil.virtual_memory)
        load = _safe(os.getloadavg) if hasattr(os, "getloadavg") else None
        return HostReading(
            cpu_percent=self._cpu_percent,
            cpu_count=_safe(psutil.cpu_count),
            ram_used_bytes=None if memory is None else int(memory.total - memory.available),
            ram_total_bytes=None if memory is None else int(memory.total),
            load_1m=None if load is None else load[0],
            load_5m=None if load is None else load[1],
            load_15m=None if load is None else load[2],
        )

    @_locked
    def trial_usage(self, pids: Mapping[K, int],
                    gpus: Mapping[K, Sequence[int]] | None = None) -> dict[K, TrialUsage]:
        """Usage per trial from the pid the runner started (its process-group leader).

        A trial's processes are the root, its descendants, and every process still in the
        root's process group (dataloader workers re-parented to init stay counted). ``gpus``
        (trial -> placed GPU indices) adds the placed GPUs to those whose utilisation is
        reported, so a trial that has not yet touched its GPU shows that GPU's 0 %, not NA.
        """
        trees = process_trees(pids.values())
        nvml_ok = self.available()
        on_gpu = self.gpu_processes() if nvml_ok else {}
        utils = {g.index: g.util_percent for g in self.gpus()}
        seen: set[int] = set()
        result: dict[K, TrialUsage] = {}
        for trial, root in pids.items():
            members = trees.get(root, set())
            seen |= members
            cpu, rss = self._cpu_and_rss(members)
            gpu_memory, used = _gpu_memory_of(members, on_gpu, nvml_ok)
            indices = sorted(used | set((gpus or {}).get(trial, ())))
            known = [u for u in (utils.get(i) for i in indices) if u is not None]
            result[trial] = TrialUsage(
                cpu_percent=cpu, rss_bytes=rss, gpu_memory_bytes=gpu_memory,
                gpu_util_percent=sum(known) / len(known) if known else None,
                gpu_indices=tuple(sorted(used)), pids=tuple(sorted(members)),
            )
        self._forget_processes(seen)
        return result

    def _forget_processes(self, seen: set[int]) -> None:
        """Drop the cached psutil handles of processes no trial holds any more, so the cache does
        not grow with every process a long study ever started."""
        for pid in list(self._processes):
            if pid not in seen:
                del self._processes[pid]

    def _cpu_and_rss(self, members: set[int]) -> tuple[float | None, int | None]:
        cpu: float | None = None
        rss: int | None = None
        for pid in members:
            try:
                proc = self._processes.get(pid)
                fresh = proc is None or not proc.is_running()  # is_running also catches a reused pid
                if fresh:
                    proc = psutil.Process(pid)
                    self._processes[pid] = proc
                assert proc is not None
                with proc.oneshot():
                    percent = proc.cpu_percent(interval=None)  # first call only sets the baseline
                    resident = proc.memory_info().rss
            except psutil.Error:
                continue
            if not fresh:
                cpu = (cpu or 0.0) + percent
            rss = (rss or 0) + resident
        return cpu, rss

    @_locked
    def close(self) -> None:
        """Release NVML; the monitor reports no GPUs afterwards."""
        if self._initialised:
            self._query(self._nvml.shutdown)
            self._initialised = False
        self._ok = False
        self.unavailable_reason = "closed"
        self._last_try = math.inf


def process_trees(roots: Iterable[int]) -> dict[int, set[int]]:
    """Root pid -> the pids of its tree: itself, its descendants, and its process group's members.

    One pass over the process table for all roots (a ``children(recursive=True)`` per trial
    would scan it once per trial). A root that has exited and left nothing behind maps to
    an empty set.
    """
    roots = set(roots)
    children: dict[int, list[int]] = defaultdict(list)
    groups: dict[int, set[int]] = defaultdict(set)
    alive: set[int] = set()
    for proc in psutil.process_iter(["ppid"]):
        pid, ppid = proc.pid, proc.info.get("ppid")
        alive.add(pid)
        if ppid is not None:
            children[ppid].append(pid)
        if hasattr(os, "getpgid"):
            try:
                pgid = os.getpgid(pid)
            except OSError:
                continue
            if pgid in roots:
                groups[pgid].add(pid)
    result: dict[int, set[int]] = {}
    for root in roots:
        members: set[int] = set()
        stack = ([root] if root in alive else []) + list(groups.get(root, ()))
        while stack:
            pid = stack.pop()
            if pid not in members:
                members.add(pid)
                stack.extend(children.get(pid, ()))
        result[root] = members
    return result


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else exc.__class__.__name__


def _safe(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a reading we cannot take is NA, never a crash
        return None


def _cpu_busy_total() -> tuple[float, float] | None:
    """(busy, total) CPU seconds since boot; our own baseline, not psutil's module-wide one."""
    times = _safe(psutil.cpu_times)
    if times is None:
        return None
    fields = times._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)  # guest is inside user
    busy = total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)
    return busy, total


# --- hints: pure functions ------------------------------------------------------------------

LOW_UTIL_PERCENT = 30.0
LOW_UTIL_MINUTES = 5.0
LOW_UTIL_HINT = "input-bound? more dataloader workers"
IDLE_GPU_HINT = "is the model on the GPU?"
OOM_FLAG = "oom"
OOM_HINT = "CUDA out of memory: lower the batch size"

_OOM = re.compile("|".join((
    r"CUDA out of memory",                      # PyTorch caching allocator
    r"torch\.(?:cuda\.)?OutOfMemoryError",      # its exception class (torch >= 2.1 / older)
    r"CUDA error: out of memory",               # raw cudaMalloc outside the allocator, NCCL
    r"cudaErrorMemoryAllocation",
    r"\bCU[A-Z]*_(?:STATUS_)?ALLOC_FAILED",     # cuBLAS, cuDNN, cuSOLVER, cuSPARSE, cuFFT
    r"HIP out of memory",                       # PyTorch on ROCm
    r"MPS backend out of memory",               # PyTorch on Apple
    r"RESOURCE_EXHAUSTED: Out of memory",       # JAX / XLA
    r"OOM when allocating tensor",              # TensorFlow
)))


def is_cuda_oom(stderr_tail: str) -> bool:
    """True when a failed trial's last stderr lines show the GPU ran out of memory.

    The engine then records the trial as ``failed`` with flag :data:`OOM_FLAG` and shows
    :data:`OOM_HINT`: the fix is a smaller batch, not a retry.
    """
    return bool(_OOM.search(stderr_tail))


def low_utilisation_hint(samples: Sequence[tuple[float, float | None]], minutes: float = LOW_UTIL_MINUTES,
                         threshold: float = LOW_UTIL_PERCENT) -> str | None:
    """A hint when a trial's GPU stayed under ``threshold`` % for the last ``minutes``.

    ``samples`` are (time in seconds, GPU utilisation % or None) for one trial, any order.
    The history must reach back the whole window (a trial that just started, still
    loading data or compiling, gets no hint) and hold at least three known values in it;
    one sample at or above the threshold in the window clears the hint. All zeros means
    the GPU is not used at all, which is a different mistake with a different hint.
    """
    ordered = sorted((t, u) for t, u in samples)
    if not ordered:
        return None
    window_start = ordered[-1][0] - minutes * 60.0
    if ordered[0][0] > window_start:
        return None
    known = [u for t, u in ordered if t >= window_start and u is not None]
    if len(known) < 3 or max(known) >= threshold:
        return None
    span = f"{minutes:g} min"
    if max(known) == 0:
        return f"GPU at 0 % for {span}: {IDLE_GPU_HINT}"
    return f"GPU under {threshold:g} % for {span}: {LOW_UTIL_HINT}"


__all__ = [
    "GpuReading", "HostReading", "TrialUsage", "ResourceMonitor", "process_trees",
    "is_cuda_oom", "low_utilisation_hint", "LOW_UTIL_PERCENT", "LOW_UTIL_MINUTES", "LOW_UTIL_HINT",
    "IDLE_GPU_HINT", "OOM_FLAG", "OOM_HINT",
    "check_request", "claimed_fractions", "claims_for", "claims_from_rows", "cuda_visible_devices", "place_trial",
    "trial_gpu_env", "why_waiting",
]
