"""Which GPUs the next trial gets: pure functions over readings, settings and claims.

Why pure: placement is where a shared box goes wrong (two trials on one GPU, a colleague's
job squeezed out), so it must be testable exhaustively without hardware or processes.
The engine supplies three things it read elsewhere:

- ``readings``: :meth:`engine.machine.resources.ResourceMonitor.gpus` (index order, NA allowed);
- ``resources``: the space file's :class:`engine.space_file.space.Resources`;
- ``claims``: ``(gpu_index, fraction)`` for every GPU held by a running trial on this host,
  of *any* study or engine, read from the database. Claims, not readings, are what stop
  oversubscription: a trial that was just placed has not touched its GPU yet.

A whole-GPU trial (``gpus_per_trial`` 1, 2, ...) claims fraction 1.0 on each of its GPUs and
needs GPUs nobody claims. A fractional trial (0.5, 0.25, ...) goes where the claimed
fractions plus its own stay <= 1. A GPU that nobody in hpotui claims but that is loaded
anyway is a colleague's ("foreign-busy") and is skipped while ``avoid_busy`` is on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence, Union

from ..machine.gpu_reading import GpuLister, GpuReading
from .gpu_memory import gib

if TYPE_CHECKING:  # annotations only: engine.space_file.space is the parser, placement needs none of it at run time
    from ..space_file.space import Resources

EPS = 1e-9  # 3 x (1/3) must fit on one GPU


@dataclass(frozen=True)
class Claim:
    """One GPU held by one trial (of any study, engine or user).

    ``fraction`` is the share of the GPU (1.0: the whole GPU); a ``gpu_memory`` trial also has
    ``memory_bytes`` (what it asked for) and records ``fraction`` as that memory's share of the
    GPU, so that claims written by a fraction-only reader still add up. ``used_bytes`` is what
    the claiming trial holds on this GPU right now per NVML (None: unknown or not started):
    the difference is memory NVML still shows as free but that is promised.
    """

    gpu: int
    fraction: float = 1.0
    memory_bytes: int | None = None
    used_bytes: int | None = None
    owner: str = ""


ClaimLike = Union[Claim, "tuple[int, float]"]


def as_claims(claims: Iterable[ClaimLike]) -> list[Claim]:
    """Claims from :class:`Claim` objects or the older ``(gpu_index, fraction)`` pairs."""
    return [c if isinstance(c, Claim) else Claim(int(c[0]), float(c[1])) for c in claims]


def claimed_fractions(claims: Iterable[ClaimLike]) -> dict[int, float]:
    """GPU index -> the sum of fractions claimed on it."""
    total: dict[int, float] = defaultdict(float)
    for claim in as_claims(claims):
        total[claim.gpu] += claim.fraction
    return dict(total)


def reserved_bytes(claim: Claim, total: int | None) -> int | None:
    """Memory a claim holds on a GPU of ``total`` bytes: its request, or its fraction of the GPU."""
    if claim.memory_bytes is not None:
        return claim.memory_bytes
    return None if total is None else int(claim.fraction * total)


def available_bytes(reading: GpuReading, claims: Sequence[Claim]) -> int | None:
    """Memory a new trial may count on: the GPU's size minus what others hold and what claims promise.

    Committed memory is what processes outside the claims hold (NVML's used minus the claiming
    trials' own use) plus, for each claim, the larger of its promise and its use. That equals
    "NVML free minus promised-but-not-yet-used" when the readings agree, and stays on the safe
    side when the GPU reading and the per-process reading were taken a moment apart (a trial
    that loaded its memory in between is not counted as free twice). ``None`` when NVML does
    not say how much memory the GPU has.
    """
    total = reading.memory_total_bytes
    if total is None:
        return None
    claimed_use = sum(c.used_bytes or 0 for c in claims)
    outside = max(0, (reading.memory_used_bytes or 0) - claimed_use)
    committed = outside + sum(max(reserved_bytes(c, total) or 0, c.used_bytes or 0) for c in claims)
    by_fraction = total - int(sum(c.fraction for c in claims) * total)  # never promise more than the GPU has
    return max(0, min(total - committed, by_fraction))


def _per_gpu(claims: Iterable[ClaimLike]) -> dict[int, list[Claim]]:
    grouped: dict[int, list[Claim]] = defaultdict(list)
    for claim in as_claims(claims):
        grouped[claim.gpu].append(claim)
    return grouped


def claims_from_rows(rows: Iterable[tuple[str | None, float | None]]) -> list[tuple[int, float]]:
    """Claims from the database's running trials: ``("0,2", 1.0)`` is a claim of 1.0 on GPUs 0 and 2.

    The trials table stores a trial's GPUs as the ``CUDA_VISIBLE_DEVICES`` text and one
    fraction per GPU (:meth:`engine.database.store.Store.running_gpu_claims` returns these pairs);
    a missing fraction is a whole GPU.
    """
    claims = []
    for gpus, fraction in rows:
        for part in (gpus or "").split(","):
            if part.strip().isdigit():
                claims.append((int(part), 1.0 if fraction is None else float(fraction)))
    return claims


def claims_for(indices: Sequence[int], resources: Resources,
               readings: Sequence[GpuReading] = ()) -> list[tuple[int, float]]:
    """The claims to record for a trial placed on ``indices`` (what the next placement reads back).

    A ``gpu_memory`` trial records its memory's share of the GPU (``readings`` give the GPU's
    size; unknown size: the whole GPU, as it was placed).
    """
    memory = resources.gpu_memory
    if isinstance(memory, int):
        totals = {r.index: r.memory_total_bytes or 0 for r in readings}
        return [(int(i), min(1.0, memory / totals[i]) if totals.get(i) else 1.0) for i in indices]
    fraction = min(1.0, float(resources.gpus_per_trial))
    return [(int(i), fraction) for i in indices]


def foreign_busy(reading: GpuReading, resources: Resources, claimed: float) -> bool:
    """True when a GPU no hpotui trial claims is loaded beyond the busy thresholds.

    A GPU with claims is never foreign-busy: its load is assumed to be ours (otherwise a
    0.5 trial working hard would keep its partner off the GPU it was meant to share).
    Unknown readings (NA) are not busy: a broken NVML must not stop a study that the
    claims alone keep safe.
    """
    if not resources.avoid_busy or claimed > EPS:
        return False
    util, memory = reading.util_percent, reading.memory_percent
    return ((util is not None and util >= resources.busy_util_percent)
            or (memory is not None and memory >= resources.busy_memory_percent))


def _allowed(readings: Sequence[GpuReading], resources: Resources) -> list[GpuReading]:
    allowed = None if resources.gpus is None else set(resources.gpus)
    return [r for r in readings if allowed is None or r.index in allowed]


def _load(reading: GpuReading) -> tuple[float, float, int]:
    """Sort key, least loaded first; NA counts as idle and the index breaks ties."""
    return (reading.util_percent or 0.0, reading.memory_percent or 0.0, reading.index)


def place_trial(readings: Sequence[GpuReading], resources: Resources,
                claims: Iterable[ClaimLike]) -> tuple[int, ...] | None:
    """GPU indices for one new trial, ``()`` for a CPU trial, or ``None`` when it must wait.

    ``()`` is falsy like ``None``: test with ``is None``. Whole-GPU trials take the least
    loaded unclaimed GPUs. Fractional trials pack: they go to the GPU already most
    claimed that still has room (ties: least loaded), so that sharing happens as the user
    asked and whole GPUs stay free for whole-GPU trials of other studies. ``gpu_memory``
    trials (``resources.gpu_memory`` in bytes) go to the GPU with the least
    :func:`available_bytes` that still holds their request (best fit: big holes stay for
    big trials); a GPU whose size NVML does not tell takes one only while nobody claims it.
    """
    per_trial = float(resources.gpus_per_trial)
    if per_trial <= 0:
        return ()
    grouped = _per_gpu(claims)
    claimed = {gpu: sum(c.fraction for c in held) for gpu, held in grouped.items()}
    usable = [r for r in _allowed(readings, resources)
              if not foreign_busy(r, resources, claimed.get(r.index, 0.0))]
    if isinstance(resources.gpu_memory, int):
        return _place_by_memory(usable, resources.gpu_memory, grouped)
    if per_trial >= 1:
        return _place_whole(usable, int(round(per_trial)), claimed)
    return _place_fraction(usable, per_trial, claimed)


def _place_whole(usable: Sequence[GpuReading], needed: int, claimed: dict[int, float]) -> tuple[int, ...] | None:
    free = sorted((r for r in usable if claimed.get(r.index, 0.0) <= EPS), key=_load)
    if len(free) < needed:
        return None
    return tuple(sorted(r.index for r in free[:needed]))


def _place_fraction(usable: Sequence[GpuReading], per_trial: float,
                    claimed: dict[int, float]) -> tuple[int, ...] | None:
    fits = [r for r in usable if claimed.get(r.index, 0.0) + per_trial <= 1.0 + EPS]
    if not fits:
        return None
    best = min(fits, key=lambda r: (-claimed.get(r.index, 0.0), *_load(r)))
    return (best.index,)


def _place_by_memory(usable: Sequence[GpuReading], wanted: int,
                     grouped: dict[int, list[Claim]]) -> tuple[int, ...] | None:
    fits: list[tuple[int, tuple[float, float, int], GpuReading]] = []
    for r in usable:
        held = grouped.get(r.index, [])
        room = available_bytes(r, held)
        if room is None:
            if not held:
                fits.append((0, _load(r), r))
            continue
        if room >= wanted:
            fits.append((room - wanted, _load(r), r))
    if not fits:
        return None
    return (min(fits, key=lambda f: (f[0], f[1]))[2].index,)


def placement_reason(reading: GpuReading | None, index: int, claims: Iterable[ClaimLike]) -> str:
    """What a GPU holds after a placement, for events, ``status`` and the TUI.

    ``"GPU 1: 2 trials, 17.5 of 80 GiB claimed"``; fractions of a GPU whose size is unknown
    read ``"GPU 1: 2 trials, 1 of 1 GPU claimed"``.
    """
    held = _per_gpu(claims).get(index, [])
    count = f"{len(held)} trial" + ("s" if len(held) != 1 else "")
    total = reading.memory_total_bytes if reading is not None else None
    if total:
        reserved = sum(reserved_bytes(c, total) or 0 for c in held)
        return f"GPU {index}: {count}, {gib(reserved)} of {gib(total)} GiB claimed"
    return f"GPU {index}: {count}, {sum(c.fraction for c in held):g} of 1 GPU claimed"


def why_waiting(readings: Sequence[GpuReading], resources: Resources,
                claims: Iterable[ClaimLike]) -> str:
    """One line for the TUI and ``status`` saying why :func:`place_trial` returned ``None``."""
    grouped = _per_gpu(claims)
    memory = resources.gpu_memory if isinstance(resources.gpu_memory, int) else None
    parts = [part for r in _allowed(readings, resources)
             if (part := _gpu_state(r, resources, grouped.get(r.index, []), memory))]
    if memory is not None:
        need = f"{gib(memory)} GiB on one GPU"
    else:
        per_trial = float(resources.gpus_per_trial)
        need = f"{per_trial:g} GPU" + ("s" if per_trial > 1 else "")
    detail = "; ".join(parts) if parts else "no allowed GPU has room"
    hint = " (resources.avoid_busy: false would use busy GPUs)" if any("busy" in p for p in parts) else ""
    return f"waiting for {need}: {detail}{hint}"


def _gpu_state(r: GpuReading, resources: Resources, held: list[Claim], memory: int | None) -> str:
    """Why one GPU could not take the trial; "" for a GPU with nothing to say."""
    fraction = sum(c.fraction for c in held)
    if foreign_busy(r, resources, fraction):
        what = []
        if r.util_percent is not None and r.util_percent >= resources.busy_util_percent:
            what.append(f"{r.util_percent:.0f}% util")
        if r.memory_percent is not None and r.memory_percent >= resources.busy_memory_percent:
            what.append(f"{r.memory_percent:.0f}% memory")
        return f"GPU {r.index} busy with other jobs ({', '.join(what)})"
    if memory is not None:
        held_text = placement_reason(r, r.index, held).split(": ", 1)[1]
        return f"GPU {r.index} {gib(available_bytes(r, held))} GiB free ({held_text})"
    return f"GPU {r.index} {fraction:g} claimed by running trials" if fraction > EPS else ""


def check_request(resources: Resources, readings: Union[Sequence[GpuReading], GpuLister],
                  nvml_error: str | None = None) -> str | None:
    """An error line when the GPU request can never be met on this machine, else ``None``.

    The engine checks this before the first trial and stops with the message, instead of
    waiting forever for GPUs that do not exist. Busy or claimed GPUs are *not* an error:
    they free up. ``nvml_error`` is :attr:`ResourceMonitor.unavailable_reason`; pass the
    monitor itself as ``readings`` and both are taken from it.
    """
    if isinstance(readings, Sequence):
        listed: Sequence[GpuReading] = readings
    else:
        listed, nvml_error = readings.gpus(), readings.unavailable_reason
    per_trial = float(resources.gpus_per_trial)
    if per_trial <= 0:
        return None
    asked = _asked(per_trial)
    if not listed:
        why = f"NVML: {nvml_error}" if nvml_error else "NVML lists no devices"
        return (f"resources.gpus_per_trial: {asked} per trial asked but no NVIDIA GPU is visible ({why}); "
                f"set gpus_per_trial: 0 to run on CPU")
    problem = _absent_gpus(resources, listed) or _memory_too_big(resources, _allowed(listed, resources))
    if problem:
        return problem
    return _too_few_gpus(resources, listed, per_trial, asked)


def _too_few_gpus(resources: Resources, readings: Sequence[GpuReading], per_trial: float, asked: str) -> str | None:
    allowed = sorted(r.index for r in _allowed(readings, resources))
    if per_trial <= len(allowed):
        return None
    where = f"resources.gpus allows {len(allowed)}" if resources.gpus is not None else f"this machine has {len(allowed)}"
    return (f"resources.gpus_per_trial: {asked} per trial asked but {where} ({_indices(allowed)}); "
            f"lower gpus_per_trial" + (" or allow more GPUs in resources.gpus" if resources.gpus is not None else ""))


def _absent_gpus(resources: Resources, readings: Sequence[GpuReading]) -> str | None:
    """An error when ``resources.gpus`` names GPUs this machine does not have."""
    present = sorted(r.index for r in readings)
    absent = sorted(set(resources.gpus or ()) - set(present))
    if not absent:
        return None
    names = ", ".join(str(i) for i in absent)
    plural = "s" if len(absent) > 1 else ""
    return (f"resources.gpus: GPU{plural} {names} not on this machine (it has {_indices(present)}); "
            f"list only those or remove resources.gpus")


def _memory_too_big(resources: Resources, allowed: Sequence[GpuReading]) -> str | None:
    """An error when ``gpu_memory`` is more than every allowed GPU has (unknown sizes never are)."""
    memory = resources.gpu_memory
    sizes = [r.memory_total_bytes for r in allowed]
    if not isinstance(memory, int) or not sizes or any(s is None for s in sizes):
        return None
    largest = max(s for s in sizes if s is not None)
    if memory <= largest:
        return None
    return (f"resources.gpu_memory: {gib(memory)} GiB per trial asked but the largest allowed GPU has "
            f"{gib(largest)} GiB; lower gpu_memory (or use gpus_per_trial: 2 and no gpu_memory)")


def _asked(per_trial: float) -> str:
    if per_trial < 1:
        return f"{per_trial:g} of a GPU"
    return f"{per_trial:g} GPU" + ("s" if per_trial > 1 else "")


def _indices(indices: Sequence[int]) -> str:
    return ("GPU " if len(indices) == 1 else "GPUs ") + ", ".join(str(i) for i in indices)


def cuda_visible_devices(indices: Sequence[int]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value for placed GPUs; ``""`` hides every GPU (a CPU trial)."""
    return ",".join(str(int(i)) for i in indices)


def trial_gpu_env(indices: Sequence[int]) -> dict[str, str]:
    """Environment entries to add to a trial's environment.

    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` matters: CUDA's default order is "fastest first",
    NVML's is PCI bus order, and on a box with mixed GPUs index 0 would mean two
    different cards.
    """
    return {"CUDA_VISIBLE_DEVICES": cuda_visible_devices(indices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
