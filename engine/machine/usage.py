"""What the study's machines and trials use, sampled into the database every few seconds.

Kept out of the loop module because it is the one place that knows where readings come from:
this machine's NVML and psutil for local trials, each node's agent for trials on Ray. The TUI's
GPU panel and ``status`` read the bounded history this writes; each trial keeps its peak GPU
memory and mean utilisation, and a trial that starves its GPU gets the "input-bound?" hint once.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from ..database.records import EventKind, HealthFlag
from ..database.store import HOSTNAME, Store
from ..executors.base import Executor
from .resources import LOW_UTIL_HINT, ResourceMonitor, low_utilisation_hint

HISTORY_SAMPLES = 600  # per trial: 50 minutes at one sample every 5 s


class UsageSampler:
    def __init__(self, store: Store, study_id: int, executor: Executor, monitor: Any = None) -> None:
        self.store, self.study_id, self.executor = store, study_id, executor
        self._monitor: Any = monitor  # a ResourceMonitor (tests pass one over a FakeNvml)
        self.gpu_sharing: Any = None  # readings -> {gpu: claimed/other columns} (engine.gpus.gpu_placer.GpuPlacer)
        self._history: dict[int, list[tuple[float, float | None, int | None]]] = {}
        self._hinted: set[int] = set()
        self._gpu_available: bool | None = None

    @property
    def monitor(self) -> Any:
        """One NVML/psutil monitor per engine, made on first use."""
        if self._monitor is None:
            self._monitor = ResourceMonitor()
        return self._monitor

    @property
    def remote(self) -> bool:
        """Trials placed by a cluster (Ray): their processes and GPUs are not this machine's."""
        return self.executor.places_gpus

    def sample(self, trials: Mapping[int, tuple[int, int, str | None]]) -> None:
        """``trials``: trial id -> (trial number, leader pid, placed GPUs as "0,1") of the running trials."""
        monitor = self.monitor
        now = time.time()
        gpus = monitor.gpus()
        host = monitor.host()
        gpu_rows = self._gpu_rows(now, gpus)
        host_row = {"time": now, "host": HOSTNAME, "cpu_percent": host.cpu_percent, "ram_used": host.ram_used_bytes,
                    "ram_total": host.ram_total_bytes, "load1": host.load_1m}
        self.store.add_resource_samples(gpu_rows, host_row)
        self._note_availability(bool(gpus))
        if not gpus or not trials or self.remote:
            return
        self._sample_trials(now, gpus, trials)

    def _gpu_rows(self, now: float, gpus: list[Any]) -> list[dict[str, Any]]:
        """This host's GPUs (with the sharing columns), then every Ray node's, one row each."""
        gpu_rows = [_gpu_row(now, HOSTNAME, g) for g in gpus]
        _add_sharing(gpu_rows, self.gpu_sharing, gpus)
        if self.remote:
            for node, readings in self.executor.gpu_readings().items():
                gpu_rows.extend(_gpu_row(now, node, g) for g in readings)
        return gpu_rows

    def _note_availability(self, has_gpus: bool) -> None:
        """One event each time GPU readings come or go, so a silent NVML failure is never mistaken
        for an idle GPU."""
        monitor = self.monitor
        available = monitor.available()
        if has_gpus and available != self._gpu_available:
            text = "GPU readings available" if available else \
                f"GPU readings unavailable: {monitor.unavailable_reason or 'NVML stopped answering'}"
            self.store.buffer_event(self.study_id, None, EventKind.GPU_READINGS, text, level="info" if available else "warning")
            self._gpu_available = available

    def _sample_trials(self, now: float, gpus: list[Any],
                       trials: Mapping[int, tuple[int, int, str | None]]) -> None:
        """Each local trial's GPU use on its placed GPUs, kept as a bounded history for its peak,
        its mean and the low-utilisation hint."""
        monitor = self.monitor
        placed = {tid: tuple(int(x) for x in (g or "").split(",") if x.strip().isdigit())
                  for tid, (_, _, g) in trials.items()}
        usage = monitor.trial_usage({tid: pid for tid, (_, pid, _) in trials.items()}, gpus=placed)
        for trial_id, u in usage.items():
            history = self._history.setdefault(trial_id, [])
            history.append((now, u.gpu_util_percent, u.gpu_memory_bytes))
            del history[:-HISTORY_SAMPLES]
            if trial_id not in self._hinted:
                self._hint(trial_id, trials[trial_id][0], history)

    def _hint(self, trial_id: int, number: int, history: list[tuple[float, float | None, int | None]]) -> None:
        hint = low_utilisation_hint([(t, util) for t, util, _ in history])
        if hint:
            self._hinted.add(trial_id)
            self.store.buffer_event(self.study_id, trial_id, EventKind.FLAG, f"low_gpu_util: trial {number}: {hint}",
                                    level="warning", data=HealthFlag("low_gpu_util", hint=hint or LOW_UTIL_HINT).to_data())

    def trial_ended(self, trial_id: int) -> None:
        """Record the trial's peak GPU memory and mean utilisation, then forget it."""
        history = self._history.pop(trial_id, None)
        self._hinted.discard(trial_id)
        if not history:
            return
        memory = [m for _, _, m in history if m is not None]
        utils = [u for _, u, _ in history if u is not None]
        self.store.set_trial_usage(trial_id, max(memory) if memory else None,
                                   sum(utils) / len(utils) if utils else None)

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()


def _add_sharing(rows: list[dict[str, Any]], sharing: Any, gpus: list[Any]) -> None:
    """This host's rows get the claimed / other memory columns (GPU sharing, engine.gpus.gpu_placer)."""
    columns = sharing(gpus) if sharing is not None and gpus else {}
    for row in rows:
        row.update(columns.get(row["gpu"], {}))


def _gpu_row(now: float, host: str, g: Any) -> dict[str, Any]:
    return {"time": now, "host": host, "gpu": g.index, "name": g.name, "util": g.util_percent,
            "memory_used": g.memory_used_bytes, "memory_total": g.memory_total_bytes,
            "temperature": g.temperature_c, "power": g.power_w}

