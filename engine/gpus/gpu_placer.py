"""The engine's GPU sharing: where the next trial goes, its host-wide claim, and what an OOM means.

Why one object beside the loop: placement needs the readings (NVML), every engine's claims (the
host-wide registry, or this database when the registry cannot be used), the study's own
measurements (``gpu_memory: auto``) and its OOM history (a packed trial that ran out of memory
runs again alone). Keeping all of that here leaves the loop three calls: :meth:`GpuPlacer.insert`
around recording a new trial, :meth:`GpuPlacer.started` / :meth:`GpuPlacer.ended` around its
life, and :meth:`GpuPlacer.oom_retry` when it failed.

The decisions themselves are pure functions in :mod:`engine.gpus.placement` and
:mod:`engine.gpus.gpu_memory`; this module only gathers their inputs and records their outcome.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import psutil

from ..database.records import EventKind, TrialStatus
from ..executors.base import Executor
from ..machine.resources import OOM_FLAG, OOM_HINT, GpuReading, is_cuda_oom
from .gpu_claims import ClaimedGpu, ClaimRecord, ClaimRegistry, RegistryBusy, RegistryUnusable, trial_key
from .gpu_memory import AUTO, estimate_memory
from .placement import EPS, Claim, claims_for, claims_from_rows, cuda_visible_devices, place_trial, \
    placement_reason, reserved_bytes, why_waiting

OOM_STORM_TRIALS = 3  # this many packed trials in a row out of memory: packing pauses
RETRY_S = 0.5  # waiting for room: look at every engine's claims at most this often (a local end: at once)
Picker = Callable[[list[tuple[str, float]]], "tuple[str, float] | None"]


@dataclass
class _Placement:
    """What the last successful placement decided, for the trial's claim and its started event."""

    indices: tuple[int, ...]
    fraction: float
    memory_bytes: int | None
    reason: str
    company: bool  # other claims were already on its GPU


@dataclass
class OomState:
    """Consecutive packed OOMs and the trials whose reruns must run alone."""

    packed_ooms: int = 0
    packing_paused: bool = False
    alone: set[int] = field(default_factory=set)  # trial ids whose rerun gets a whole GPU


class GpuPlacer:
    """Places one study's trials on this host's GPUs; see the module docstring."""

    def __init__(self, store: Any, study: Any, space: Any, monitor: Callable[[], Any],
                 say: Callable[[str], None], engine_pid: int | None = None,
                 engine_start: float | None = None) -> None:
        self.store, self.study, self.space, self._monitor, self._say = store, study, space, monitor, say
        self.resources = space.resources
        self.engine_pid = engine_pid or os.getpid()
        self.engine_start = engine_start if engine_start is not None else _start_time(self.engine_pid)
        self.oom = OomState()
        self.registry: ClaimRegistry | None = None
        self._registry_tried = False
        self._last: _Placement | None = None
        self._waiting_claims: list[Claim] = []
        self._waiting_resources = self.resources
        self._shared: set[int] = set()  # trials that had company on their GPU at some point
        self._gpu_of: dict[int, tuple[int, ...]] = {}  # live trials of this engine -> GPUs
        self._memory_of: dict[int, int] = {}  # gpu_memory trials of this engine -> bytes claimed
        self._retry_at = 0.0  # monotonic time before which a placement that found no room is not retried

    # -- the registry, opened on first use -----------------------------------------------------
    def _registry(self) -> ClaimRegistry | None:
        if not self._registry_tried:
            self._registry_tried = True
            try:
                self.registry = ClaimRegistry.open()
            except RegistryUnusable as exc:
                self._fall_back(str(exc))
        return self.registry

    def _fall_back(self, why: str) -> None:
        """Per-database claims from now on, said once in one line."""
        if self.registry is not None:
            self.registry.close()
        self.registry = None
        message = (f"host-wide GPU claims unavailable ({why}); placing by this database's claims only: "
                   "engines using other database files or users can oversubscribe these GPUs")
        self.store.add_event(self.study.id, None, EventKind.GPU_CLAIMS, message, level="warning")
        self._say(f"warning: {message}")

    # -- placement -------------------------------------------------------------------------------
    def uses_gpus(self, executor: Executor) -> bool:
        """Whether the engine places this study's GPUs (not when the executor places them itself, as Ray does)."""
        return self.resources.gpus_per_trial > 0 and not executor.places_gpus

    def effective_resources(self, params: dict[str, Any], rerun_of: int | None) -> Any:
        """The request for this trial: alone after an OOM or a storm, the learned size for ``auto``."""
        if rerun_of is not None and rerun_of in self.oom.alone:
            return replace(self.resources, gpus_per_trial=1, gpu_memory=None)
        if self.oom.packing_paused and (self.resources.gpus_per_trial < 1 or self.resources.gpu_memory is not None):
            return replace(self.resources, gpus_per_trial=1, gpu_memory=None)
        if self.resources.gpu_memory == AUTO:
            estimate = estimate_memory(params, self.store.measured_gpu_memory(self.study.id), self.space.params)
            if estimate is None:  # nothing measured yet: one trial per GPU
                return replace(self.resources, gpus_per_trial=1, gpu_memory=None)
            return replace(self.resources, gpu_memory=estimate)
        return self.resources

    def insert(self, add_trial: Callable[[Picker], Any], params: dict[str, Any], rerun_of: int | None) -> Any:
        """Record a new trial through ``add_trial(picker)`` if a GPU has room for it; None when it waits.

        With the registry, the host-wide lock is held from reading every engine's claims until
        this trial's claim is written, so no other engine (any database, any user) can place
        in between.
        """
        if time.monotonic() < self._retry_at:
            return None  # found no room a moment ago; reading every claim again each loop turn costs CPU
        resources = self.effective_resources(params, rerun_of)
        readings = self._monitor().gpus()
        registry = self._registry()
        if registry is None:
            return self._note_outcome(add_trial(self._picker(readings, resources, None)))
        try:
            with registry.locked():
                claims = self._host_claims(registry.claims(), readings)
                row = add_trial(self._picker(readings, resources, claims))
                if row is not None:
                    self._write_claim(row, readings)
                return self._note_outcome(row)
        except RegistryBusy as exc:
            self._waiting_claims, self._waiting_resources = [], resources
            self._last = None
            self._say(f"waiting: {exc}")
            return None
        except OSError as exc:  # the registry went bad mid-run (full /dev/shm, folder removed)
            self._fall_back(f"{registry.root}: {exc.strerror or exc}")
            return None

    def _note_outcome(self, row: Any) -> Any:
        self._retry_at = 0.0 if row is not None else time.monotonic() + RETRY_S
        return row

    def _picker(self, readings: Sequence[GpuReading], resources: Any, host_claims: list[Claim] | None) -> Picker:
        def pick(claim_rows: list[tuple[str, float]]) -> tuple[str, float] | None:
            claims = host_claims if host_claims is not None else [Claim(g, f) for g, f in claims_from_rows(claim_rows)]
            self._waiting_claims, self._waiting_resources = claims, resources
            indices = place_trial(readings, resources, claims)
            if indices is None:
                self._last = None
                return None
            recorded = claims_for(indices, resources, readings)
            memory = resources.gpu_memory if isinstance(resources.gpu_memory, int) else None
            after = claims + [Claim(i, f, memory) for i, f in recorded]
            by_index = {r.index: r for r in readings}
            reason = "; ".join(placement_reason(by_index.get(i), i, after) for i in indices)
            self._last = _Placement(indices, recorded[0][1], memory, reason,
                                    company=any(c.gpu in indices for c in claims))
            return cuda_visible_devices(indices), recorded[0][1]

        return pick

    def _host_claims(self, records: list[ClaimRecord], readings: Sequence[GpuReading]) -> list[Claim]:
        """Registry records as placement claims, GPUs matched by UUID, with each trial's current use."""
        by_uuid = {r.uuid: r.index for r in readings if r.uuid}
        used = self._used_by_group()
        claims = []
        for record in records:
            for gpu in record.gpus:
                index = by_uuid.get(gpu.uuid, gpu.index) if gpu.uuid else gpu.index
                amount = used.get((index, record.trial_pid)) if record.trial_pid else None
                claims.append(Claim(index, record.fraction, record.memory_bytes, amount,
                                    owner=record.label if record.uid == os.geteuid() else
                                    f"{record.user}: {record.label}"))
        return claims

    def _used_by_group(self) -> dict[tuple[int, int], int]:
        """(GPU index, process group) -> device bytes NVML attributes to that group's processes."""
        result: dict[tuple[int, int], int] = {}
        for index, table in self._monitor().gpu_processes().items():
            for pid, amount in table.items():
                try:
                    group = os.getpgid(pid)
                except OSError:
                    continue
                if amount is not None:
                    result[(index, group)] = result.get((index, group), 0) + amount
        return result

    def _write_claim(self, row: Any, readings: Sequence[GpuReading], trial_pid: int | None = None,
                     trial_start: float | None = None) -> None:
        assert self.registry is not None
        indices = _indices(row.gpus)
        if not indices:
            return
        uuids = {r.index: r.uuid for r in readings}
        if trial_pid is None and self._last is not None and self._last.memory_bytes is not None:
            self._memory_of[row.id] = self._last.memory_bytes
        memory = self._memory_of.get(row.id)  # None after resume: the fraction holds the same share
        fraction = row.gpu_fraction if row.gpu_fraction is not None else 1.0
        self.registry.write(ClaimRecord(
            key=trial_key(self.store.path, row.id), uid=self.registry.uid, user=self.registry.user,
            db=os.path.realpath(self.store.path), study=self.study.name, trial_id=row.id, trial_number=row.number,
            gpus=tuple(ClaimedGpu(i, uuids.get(i)) for i in indices),
            fraction=fraction, memory_bytes=memory,
            engine_pid=self.engine_pid, engine_start=self.engine_start or 0.0,
            trial_pid=trial_pid, trial_start=trial_start))

    def placed(self, row: Any) -> str:
        """After a trial was recorded: note its claim size and company; the placement reason for its event."""
        placement, self._last = self._last, None
        if placement is None:
            return ""
        if placement.memory_bytes is not None:
            self._memory_of[row.id] = placement.memory_bytes
            self.store.set_trial_gpu_memory(row.id, placement.memory_bytes)
        if placement.company:
            self._shared.add(row.id)
        for other, gpus in self._gpu_of.items():
            if set(gpus) & set(placement.indices):
                self._shared.add(other)
        self._gpu_of[row.id] = placement.indices
        return placement.reason

    def note_waiting(self) -> str:
        """Why the last placement found no room (one line for the waiting event)."""
        return why_waiting(self._monitor().gpus(), self._waiting_resources, self._waiting_claims)

    def sharing_columns(self, readings: Sequence[GpuReading]) -> dict[int, dict[str, int | None]]:
        """Per GPU, for the GPU panel: memory claimed by every hpotui trial on the host, their count,
        and memory held by processes that belong to no claim ("other": colleagues' jobs).

        Without the registry only this database's claims are known and "other" is left unknown.
        """
        registry = self._registry()
        if registry is not None:
            claims = self._host_claims(registry.claims(), readings)
        else:
            claims = [Claim(g, f) for g, f in claims_from_rows(self.store.running_gpu_claims())]
        return {r.index: _sharing(r, [c for c in claims if c.gpu == r.index], registry is not None)
                for r in readings}

    # -- the trial's life ------------------------------------------------------------------------
    def started(self, row: Any, pid: int, start: float | None) -> None:
        """The trial runs: its claim now also lives as long as its process (an engine may die first)."""
        if self.registry is None or not row.gpus:
            return
        try:
            self._write_claim(row, self._monitor().gpus(), trial_pid=pid, trial_start=start)
        except OSError as exc:
            self._fall_back(f"{self.registry.root}: {exc.strerror or exc}")

    def adopted(self, row: Any) -> None:
        """A trial re-adopted by ``resume``: its claim names this engine now."""
        if row.gpus:
            self._gpu_of[row.id] = _indices(row.gpus)
            registry = self._registry()
            if registry is not None and row.pid:
                self.started(row, row.pid, row.proc_create_time)

    def ended(self, row: Any, status: str) -> None:
        """The trial is over: drop its claim; a packed trial that completed ends an OOM streak."""
        self._retry_at = 0.0  # a GPU of ours may be free: place again at once
        self._gpu_of.pop(row.id, None)
        self._memory_of.pop(row.id, None)
        self._shared.discard(row.id)
        if status != TrialStatus.FAILED and _packed(row):
            self.oom.packed_ooms = 0
        if self.registry is not None:
            try:
                self.registry.remove(trial_key(self.store.path, row.id))
            except OSError:
                pass  # stale now anyway: its engine and trial are what keep a claim alive

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    # -- out of memory -------------------------------------------------------------------------------
    def oom_retry(self, row: Any, status: str, stderr_tail: str) -> bool:
        """True when a failed trial ran out of GPU memory while sharing and now runs again alone.

        Records the first attempt as failed with flag ``oom`` and says what happens next. A trial
        alone on its GPU (or a second attempt, or ``on_oom: fail``) is left to the usual failure
        path, which flags it ``oom`` with its hint.
        """
        if status != TrialStatus.FAILED or not row.gpus or not is_cuda_oom(stderr_tail) or not _packed(row):
            return False
        self._count_packed_oom()  # a packed trial out of memory, with company or not, feeds the storm count
        shared = row.id in self._shared or self._has_company(row)
        self._shared.discard(row.id)
        if not shared:
            return False
        if self.resources.on_oom != "retry_alone" or row.rerun_of in self.oom.alone:
            return False
        self.oom.alone.add(row.id)
        message = (f"{OOM_FLAG}: trial {row.number} ran out of GPU memory while sharing GPU {row.gpus}; "
                   f"it runs again alone on a whole GPU (resources.on_oom: retry_alone)")
        self.store.buffer_event(self.study.id, row.id, EventKind.FLAG, message, level="warning",
                                data={"flag": OOM_FLAG, "hint": OOM_HINT, "retry": "alone"})
        self.store.add_event(self.study.id, row.id, EventKind.OOM_RETRY, message, level="warning",
                             data={"gpus": row.gpus, "stderr_tail": stderr_tail[-2000:]})
        self._say(message)
        return True

    def _has_company(self, row: Any) -> bool:
        gpus = set((row.gpus or "").split(","))
        registry = self.registry
        if registry is None:
            rows = self.store.running_gpu_claims()
            return any(set((g or "").split(",")) & gpus for g, _ in rows)
        mine = trial_key(self.store.path, row.id)
        return any(r.key != mine and {str(g.index) for g in r.gpus} & gpus for r in registry.claims())

    def _count_packed_oom(self) -> None:
        self.oom.packed_ooms += 1
        if self.oom.packed_ooms >= OOM_STORM_TRIALS and not self.oom.packing_paused:
            self.oom.packing_paused = True
            message = (f"packing paused: the last {self.oom.packed_ooms} packed trials ran out of GPU memory; "
                       "new trials get a whole GPU each (the study goes on; lower gpu_memory's trials' batch "
                       "size or raise gpu_memory, then `hpotui resume` packs again)")
            self.store.add_event(self.study.id, None, EventKind.PACKING_PAUSED, message, level="error")
            self._say(message)

    def pending_reruns(self, trials: Sequence[Any], rerun_done: set[int]) -> list[Any]:
        """After ``resume``: first attempts whose alone-rerun was decided (oom_retry event) but never started."""
        decided = {e.trial_id for e in self.store.events(self.study.id, kinds=["oom_retry"])}
        self.oom.alone |= decided
        return [t for t in trials if t.id in decided and t.id not in rerun_done]


def _sharing(reading: GpuReading, held: list[Claim], every_engine: bool) -> dict[str, int | None]:
    """One GPU's sample columns; "other" (memory of no claim's process) only when every claim is known."""
    reserved = [reserved_bytes(c, reading.memory_total_bytes) for c in held]
    other = None
    if every_engine and reading.memory_used_bytes is not None:
        other = max(0, reading.memory_used_bytes - sum(c.used_bytes or 0 for c in held))
    claimed = None if None in reserved else sum(x or 0 for x in reserved)
    return {"claimed_memory": claimed, "claimed_trials": len(held), "other_memory": other}


def _indices(gpus: str | None) -> tuple[int, ...]:
    return tuple(int(g) for g in (gpus or "").split(",") if g.strip().isdigit())


def _packed(row: Any) -> bool:
    return row.gpu_fraction is not None and row.gpu_fraction < 1.0 - EPS


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - no start time: the claim lives by the trial's process only
        return None


def describe_claims(claims: Sequence[Claim], readings: Sequence[GpuReading]) -> dict[int, str]:
    """GPU index -> its placement reason for every GPU of ``readings`` (the status / panel line)."""
    return {r.index: placement_reason(r, r.index, claims) for r in readings}

